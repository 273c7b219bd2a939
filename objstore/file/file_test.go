package file_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/objstore/objstoretest"
)

func newBucket(t testing.TB) *file.Bucket {
	b, err := file.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptance(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket { return newBucket(t) })
}

func TestInvalidKeys(t *testing.T) {
	b := newBucket(t)
	ctx := t.Context()
	for _, key := range []string{"", "/abs", "a/../../etc/passwd", "..", "a/..", "./a", "a/./b", "a//b", "a/", ".floe-tmp/x", "nul\x00byte"} {
		if err := b.Put(ctx, key, strings.NewReader("x"), 1); !errors.Is(err, file.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := b.Get(ctx, key); !errors.Is(err, file.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, file.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	// Keys that look odd but are clean are fine.
	for _, key := range []string{"...", "a/.b", ".floe-tmpx", "x/.floe-tmp"} {
		if err := b.Put(ctx, key, strings.NewReader("x"), 1); err != nil {
			t.Errorf("Put(%q) = %v", key, err)
		}
	}
}

func FuzzKeyStaysInRoot(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/../../b", "/etc/passwd", "a\\..\\b", ".floe-tmp/x", "a//b", "..."} {
		f.Add(s)
	}
	root := f.TempDir()
	b, err := file.New(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if err := b.Put(t.Context(), key, strings.NewReader("x"), 1); err != nil {
			return
		}
		defer b.Delete(t.Context(), key)
		p := filepath.Join(root, filepath.FromSlash(key))
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") || rel == ".floe-tmp" || strings.HasPrefix(rel, ".floe-tmp/") {
			t.Fatalf("key %q was stored at %s, outside the root's object space", key, p)
		}
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("key %q not at %s: %v", key, p, err)
		}
	})
}

func TestNoTempFilesLeft(t *testing.T) {
	b := newBucket(t)
	ctx := t.Context()
	if err := b.Put(ctx, "ok", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "short", strings.NewReader("abc"), 5); err == nil {
		t.Fatal("short Put succeeded")
	}
	tmp, err := os.ReadDir(filepath.Join(b.Root(), ".floe-tmp"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}

func TestStaleTempRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	b, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(b.Root(), ".floe-tmp", "put-stale")
	fresh := filepath.Join(b.Root(), ".floe-tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale temp file survived: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file (a Put in flight elsewhere) removed: %v", err)
	}
}

func TestDeleteRemovesEmptyDirs(t *testing.T) {
	b := newBucket(t)
	ctx := t.Context()
	for _, k := range []string{"v1/ab/c/1", "v1/ab/d/2"} {
		if err := b.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(ctx, "v1/ab/c/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.Root(), "v1/ab/c")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b.Root(), "v1/ab/d/2")); err != nil {
		t.Errorf("sibling lost: %v", err)
	}
	if err := b.Delete(ctx, "v1/ab/d/2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(b.Root(), "v1")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty tree kept: %v", err)
	}
	if _, err := os.Stat(b.Root()); err != nil {
		t.Errorf("root removed: %v", err)
	}
}

func TestKeyDirectoryConflict(t *testing.T) {
	b := newBucket(t)
	ctx := t.Context()
	if err := b.Put(ctx, "a/b", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(ctx, "a", strings.NewReader("x"), 1); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("Put over a directory = %v", err)
	}
	if err := b.Put(ctx, "a/b/c", strings.NewReader("x"), 1); err == nil {
		t.Error("Put under an object succeeded")
	}
	if err := b.Delete(ctx, "a"); err != nil {
		t.Errorf("Delete of a directory name = %v, want nil (no such object)", err)
	}
	if _, err := b.Stat(ctx, "a/b"); err != nil {
		t.Errorf("a/b lost: %v", err)
	}
}

// TestConcurrentReadersSeeWholeObjects races readers against writers that
// replace and delete the same keys: a reader sees a whole object or none.
func TestConcurrentReadersSeeWholeObjects(t *testing.T) {
	b := newBucket(t)
	ctx := t.Context()
	versions := [][]byte{bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 64<<10)}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("d/k%d", i%3)
				if i%5 == 4 {
					_ = b.Delete(ctx, key)
					continue
				}
				v := versions[(i+w)%2]
				if err := b.Put(ctx, key, bytes.NewReader(v), int64(len(v))); err != nil {
					t.Errorf("Put: %v", err)
					return
				}
			}
		})
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	reads := 0
	for time.Now().Before(deadline) {
		key := fmt.Sprintf("d/k%d", reads%3)
		rc, err := b.Get(ctx, key)
		if errors.Is(err, objstore.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, versions[0]) && !bytes.Equal(data, versions[1]) {
			t.Fatalf("read a torn object of %d bytes", len(data))
		}
		reads++
	}
	close(stop)
	wg.Wait()
	if reads == 0 {
		t.Error("no successful reads")
	}
}

func BenchmarkPutGet(b *testing.B) {
	objstoretest.BenchmarkPutGet(b, newBucket(b))
}
