// Package file is an objstore.Bucket in a local directory: the embedded
// default bucket of `floe dev`, and the file:// URL.
//
// A key maps to a path under the root directory, each '/' separating a
// subdirectory. Keys must be relative and clean: no leading or trailing
// '/', no empty, "." or ".." segments, no NUL bytes, so no key can escape
// the root. One key cannot be both an object and the directory of another
// ("a" and "a/b"); Floe's key layout never does that.
//
// Guarantees, on a POSIX file system:
//   - Put is atomic and durable: the body is written to a temporary file
//     in <root>/.floe-tmp, fsynced, renamed into place and the directory
//     fsynced (and the parents of any directory it created), so a reader
//     or a crash sees no object or the whole object.
//   - Readers are never blocked and never see a partial object; a reader
//     that opened an object keeps reading it even if it is deleted.
//   - List walks the tree in ascending key order, lazily, one directory at
//     a time.
//
// Directories emptied by Delete are removed, racing safely with Puts that
// recreate them.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/floebroker/floe/objstore"
)

// tmpDir holds Puts in flight. No key can name it: keys may not start with
// a "." segment of this name.
const tmpDir = ".floe-tmp"

// staleTemp is how old a temporary file must be before New deletes it as
// the leftover of a crashed Put rather than a Put in flight in another
// process sharing the directory.
const staleTemp = time.Hour

// Bucket is a bucket in a local directory.
type Bucket struct {
	root string
}

var _ objstore.Bucket = (*Bucket)(nil)

// New opens the bucket rooted at dir, creating dir if it is missing, and
// removes temporary files that crashed Puts left behind.
func New(dir string) (*Bucket, error) {
	if dir == "" {
		return nil, errors.New("file: empty root directory")
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("file: open %q: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Join(root, tmpDir), 0o700); err != nil {
		return nil, fmt.Errorf("file: open %q: %w", dir, err)
	}
	b := &Bucket{root: root}
	b.removeStaleTemps()
	return b, nil
}

// CheckBucket checks the root directory is still there (Puts go through
// its temporary directory): a Stat finds a missing key either way.
func (b *Bucket) CheckBucket(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(b.root, tmpDir)); err != nil {
		return fmt.Errorf("file: check bucket %q: %w", b.root, err)
	}
	return nil
}

// Root returns the bucket's absolute root directory.
func (b *Bucket) Root() string { return b.root }

func (b *Bucket) removeStaleTemps() {
	entries, err := os.ReadDir(filepath.Join(b.root, tmpDir))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(b.root, tmpDir, e.Name()))
		}
	}
}

// ErrInvalidKey reports a key that is not a clean relative path.
var ErrInvalidKey = errors.New("file: invalid key")

func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("%w %q", ErrInvalidKey, key)
	}
	for i, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || (i == 0 && seg == tmpDir) {
			return fmt.Errorf("%w %q", ErrInvalidKey, key)
		}
	}
	return nil
}

func (b *Bucket) path(key string) string {
	return filepath.Join(b.root, filepath.FromSlash(key))
}

// notExist reports whether err means the object is missing: no such file,
// a parent that is a file, or a path that is a directory.
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR)
}

func (b *Bucket) open(ctx context.Context, op, key string) (*os.File, os.FileInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, nil, fmt.Errorf("file: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("file: %s %q: %w", op, key, err)
	}
	f, err := os.Open(b.path(key))
	if err != nil {
		if notExist(err) {
			return nil, nil, fmt.Errorf("file: %s %q: %w", op, key, objstore.ErrNotExist)
		}
		return nil, nil, fmt.Errorf("file: %s %q: %w", op, key, err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = objstore.ErrNotExist
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("file: %s %q: %w", op, key, err)
	}
	return f, info, nil
}

// Get returns the whole object.
func (b *Bucket) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	f, _, err := b.open(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// GetRange returns length bytes at off, per objstore.BucketReader.
func (b *Bucket) GetRange(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	f, info, err := b.open(ctx, "get range", key)
	if err != nil {
		return nil, err
	}
	n, err := objstore.ClampRange(info.Size(), off, length)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("file: get range %q: %w", key, err)
	}
	return &sectionCloser{SectionReader: io.NewSectionReader(f, off, n), f: f}, nil
}

type sectionCloser struct {
	*io.SectionReader
	f *os.File
}

func (s *sectionCloser) Close() error { return s.f.Close() }

// Stat returns the object's size and modification time.
func (b *Bucket) Stat(ctx context.Context, key string) (objstore.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("file: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return objstore.ObjectInfo{}, fmt.Errorf("file: stat %q: %w", key, err)
	}
	info, err := os.Stat(b.path(key))
	if err == nil && !info.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		if notExist(err) {
			return objstore.ObjectInfo{}, fmt.Errorf("file: stat %q: %w", key, objstore.ErrNotExist)
		}
		return objstore.ObjectInfo{}, fmt.Errorf("file: stat %q: %w", key, err)
	}
	return objstore.ObjectInfo{Key: key, Size: info.Size(), LastModified: info.ModTime()}, nil
}

// Delete removes key and then any directories the removal left empty.
// A missing key is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("file: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file: delete %q: %w", key, err)
	}
	p := b.path(key)
	if info, err := os.Lstat(p); err == nil && info.IsDir() {
		return nil // "a" when only "a/b" exists: there is no object "a"
	}
	if err := os.Remove(p); err != nil {
		if notExist(err) {
			return nil
		}
		return fmt.Errorf("file: delete %q: %w", key, err)
	}
	// Best effort: a directory a concurrent Put just filled is not empty
	// and stays; one it is about to fill is recreated by the Put.
	for dir := filepath.Dir(p); dir != b.root && strings.HasPrefix(dir, b.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// List yields the objects under prefix in ascending key order, reading one
// directory at a time as the caller iterates. Objects created or deleted
// during the walk may or may not be seen.
func (b *Bucket) List(ctx context.Context, prefix string) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		dirKey := prefix[:strings.LastIndex(prefix, "/")+1]
		if dirKey != "" && checkKey(strings.TrimSuffix(dirKey, "/")) != nil {
			return // no valid key starts with an invalid directory
		}
		b.walk(ctx, dirKey, prefix, yield)
	}
}

type entry struct {
	key string // object key; directories end in '/'
	de  fs.DirEntry
}

// walk yields the objects under dirKey that start with prefix. Sorting a
// directory's entries with a '/' after each subdirectory's name puts them
// in key order: every key inside "a/" sorts after "a-b" and before "a0".
func (b *Bucket) walk(ctx context.Context, dirKey, prefix string, yield func(objstore.ObjectInfo, error) bool) bool {
	if err := ctx.Err(); err != nil {
		yield(objstore.ObjectInfo{}, fmt.Errorf("file: list %q: %w", prefix, err))
		return false
	}
	des, err := os.ReadDir(b.path(dirKey))
	if err != nil {
		if notExist(err) {
			return true
		}
		yield(objstore.ObjectInfo{}, fmt.Errorf("file: list %q: %w", prefix, err))
		return false
	}
	entries := make([]entry, 0, len(des))
	for _, de := range des {
		if dirKey == "" && de.Name() == tmpDir {
			continue
		}
		key := dirKey + de.Name()
		switch {
		case de.IsDir():
			key += "/"
			if !strings.HasPrefix(key, prefix) && !strings.HasPrefix(prefix, key) {
				continue
			}
		case de.Type().IsRegular():
			if !strings.HasPrefix(key, prefix) {
				continue
			}
		default:
			continue // symlinks, sockets: not objects
		}
		entries = append(entries, entry{key: key, de: de})
	}
	slices.SortFunc(entries, func(x, y entry) int { return strings.Compare(x.key, y.key) })
	for _, e := range entries {
		if e.de.IsDir() {
			if !b.walk(ctx, e.key, prefix, yield) {
				return false
			}
			continue
		}
		info, err := e.de.Info()
		if err != nil {
			if notExist(err) {
				continue // deleted since ReadDir
			}
			yield(objstore.ObjectInfo{}, fmt.Errorf("file: list %q: %w", prefix, err))
			return false
		}
		if !yield(objstore.ObjectInfo{Key: e.key, Size: info.Size(), LastModified: info.ModTime()}, nil) {
			return false
		}
	}
	return true
}

// Close does nothing; the directory stays.
func (b *Bucket) Close() error { return nil }
