package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/floebroker/floe/objstore"
)

// Put writes size bytes of r to key: temporary file, fsync, rename, fsync
// of the directory. When it returns nil the object survives a crash; when
// it fails nothing is left under key (an existing object is unchanged).
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("file: put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("file: put %q: negative size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	tmp, err := b.writeTemp(ctx, r, size)
	if err != nil {
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	if err := b.publish(tmp, key); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("file: put %q: %w", key, err)
	}
	return nil
}

// writeTemp writes the body to a fsynced temporary file and returns its
// path.
func (b *Bucket) writeTemp(ctx context.Context, r io.Reader, size int64) (path string, err error) {
	f, err := os.CreateTemp(filepath.Join(b.root, tmpDir), "put-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	n, err := io.Copy(f, objstore.ExactReader(ctxReader{ctx: ctx, r: r}, size))
	if err != nil {
		return "", fmt.Errorf("write body: %w", err)
	}
	if n != size {
		return "", fmt.Errorf("%w: got %d of %d bytes", objstore.ErrSizeMismatch, n, size)
	}
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("fsync: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	// A Put whose caller gave up must not appear after it was told it
	// failed.
	if err := ctx.Err(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// publish renames tmp to key's path and makes the rename durable. A
// concurrent Delete may remove the (empty) target directory between
// creating it and renaming into it, so that is retried a few times.
func (b *Bucket) publish(tmp, key string) error {
	dst := b.path(key)
	dir := filepath.Dir(dst)
	var err error
	for range 5 {
		if err = b.mkdirs(dir); err != nil {
			return err
		}
		err = os.Rename(tmp, dst)
		if !errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err != nil {
		if info, serr := os.Lstat(dst); serr == nil && info.IsDir() {
			return fmt.Errorf("key is the directory of other objects: %w", err)
		}
		return err
	}
	return syncDir(dir)
}

// mkdirs creates dir and its missing parents below the root, fsyncing the
// parent of each one it creates so the new entry survives a crash.
func (b *Bucket) mkdirs(dir string) error {
	if info, err := os.Stat(dir); err == nil {
		if !info.IsDir() {
			return fmt.Errorf("%s is an object, not a directory", dir)
		}
		return nil
	}
	rel, err := filepath.Rel(b.root, dir)
	if err != nil || rel == "." {
		return err
	}
	cur := b.root
	for seg := range strings.SplitSeq(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, seg)
		switch err := os.Mkdir(next, 0o700); {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			// Created by a concurrent Put, or already there.
		default:
			return err
		}
		cur = next
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return d.Close()
}

// ctxReader stops a Put's copy once its context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
