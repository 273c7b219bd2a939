package wal

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A full disk (or no file descriptor left) while the open buffer's file
// is created or written fails that buffer's appends only: the buffer
// sealed before it, already fsynced and uploading, is committed and
// acknowledged, the WAL stays healthy, and once the disk has room a new
// buffer takes appends again.
func TestWriteErrorDiscardsOnlyTheOpenBuffer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		op      string
		errno   error
		earlier bool // an append already in the open buffer, failed with it
	}{
		{"write ENOSPC", "write", syscall.ENOSPC, true},
		{"create EMFILE", "open", syscall.EMFILE, false},
		{"header write ENOSPC", "write", syscall.ENOSPC, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := NewMemFS()
			sink := newFakeSink()
			uploading := make(chan struct{})
			release := make(chan struct{})
			var first sync.Once
			sink.onUpload = func(ctx context.Context, b *Sealed) (err error) {
				first.Do(func() {
					close(uploading)
					select {
					case <-release:
					case <-ctx.Done():
						err = ctx.Err()
					}
				})
				return err
			}
			cfg := testConfig(fs)
			cfg.FlushInterval = time.Hour // buffers seal at FlushBytes only
			cfg.FlushBytes = 100
			// Long enough that the append right after a failure is
			// still in the backoff.
			cfg.RetryBackoff = time.Second
			cfg.MaxRetryBackoff = 2 * time.Second
			l := start(t, cfg, sink)

			ackA := mustAppend(t, l.Log, entry(tp(1, 0), 100, 1))
			<-uploading
			eventually(t, "A sealed", func() bool {
				return strings.HasSuffix(strings.Join(walFiles(t, fs, "/wal"), " "), ".wal")
			})
			var earlier *Ack
			if tc.earlier {
				earlier = mustAppend(t, l.Log, entry(tp(2, 0), 10, 1))
			}
			var opens atomic.Int32
			fs.Inject(func(op, name string) error {
				if op == "open" {
					opens.Add(1)
				}
				if op == tc.op {
					return tc.errno
				}
				return nil
			})
			_, err := l.Append(context.Background(), []Entry{entry(tp(2, 0), 10, 1)})
			if !errors.Is(err, ErrWrite) || !errors.Is(err, tc.errno) || errors.Is(err, ErrFailed) {
				t.Fatalf("append: %v, want ErrWrite wrapping %v", err, tc.errno)
			}
			if earlier != nil {
				if _, err := earlier.Wait(context.Background()); !errors.Is(err, ErrWrite) {
					t.Fatalf("earlier append in the discarded buffer: %v", err)
				}
			}
			// Within the backoff no new file is tried.
			tried := opens.Load()
			if _, err := l.Append(context.Background(), []Entry{entry(tp(2, 0), 10, 1)}); !errors.Is(err, ErrWrite) || !errors.Is(err, tc.errno) {
				t.Fatalf("append in the backoff: %v", err)
			}
			if n := opens.Load(); n != tried {
				t.Fatalf("%d files opened in the backoff", n-tried)
			}
			if err := l.Healthy(); err != nil {
				t.Fatalf("Healthy: %v", err)
			}
			for _, n := range walFiles(t, fs, "/wal") {
				if strings.HasSuffix(n, ".tmp") {
					t.Fatalf("discarded buffer's file %s is left", n)
				}
			}
			if n := testutil.ToFloat64(l.m.writeErrors); n != 1 {
				t.Fatalf("write errors %v, want 1", n)
			}

			close(release)
			if r := wait(t, ackA); r[0].BaseOffset != 0 {
				t.Fatalf("A at offset %d", r[0].BaseOffset)
			}
			fs.Inject(nil)
			var ackC *Ack
			eventually(t, "append after the backoff", func() bool {
				ackC, err = l.Append(context.Background(), []Entry{entry(tp(2, 0), 100, 1)})
				if err != nil && !errors.Is(err, ErrWrite) {
					t.Fatalf("append after the disk has room: %v", err)
				}
				return err == nil
			})
			if r := wait(t, ackC); r[0].BaseOffset != 0 {
				t.Fatalf("C at offset %d: a discarded append was committed", r[0].BaseOffset)
			}
			if _, c := sink.counts(); c != 2 {
				t.Fatalf("%d commits, want A and C", c)
			}
			if err := l.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// An agent restarted with its disk still full: the first produce fails
// (retriably), and the replayed buffer is committed and deleted anyway,
// which is what frees the disk.
func TestWriteErrorKeepsReplayedBuffersFlushing(t *testing.T) {
	fs := NewMemFS()
	fs.MkdirAll("/wal", 0o755)
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("r", 16)))
	fs.WriteFile(fileName(3, id, "wal"), fileBytes(3, id, 3))
	fs.Inject(func(op, name string) error {
		if op == "write" {
			return syscall.ENOSPC
		}
		return nil
	})
	sink := newFakeSink()
	release := make(chan struct{})
	sink.onUpload = func(ctx context.Context, b *Sealed) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	l := start(t, testConfig(fs), sink)
	if _, err := l.Append(context.Background(), []Entry{entry(tp(1, 0), 10, 1)}); !errors.Is(err, ErrWrite) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append: %v", err)
	}
	close(release)
	eventually(t, "replayed buffer committed and deleted", func() bool {
		_, c := sink.counts()
		return c == 1 && len(walFiles(t, fs, "/wal")) == 0
	})
	if err := l.Healthy(); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	if err := l.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A discarded buffer's file must be gone for good before its appenders
// are told: if a crash could bring it back, replay would commit what they
// were told had failed, and they would send it again. When that cannot be
// made sure, the WAL fails.
func TestDiscardThatIsNotDurableIsFatal(t *testing.T) {
	for _, op := range []string{"remove", "syncdir"} {
		t.Run(op, func(t *testing.T) {
			fs := NewMemFS()
			boom := errors.New("EIO")
			l := start(t, testConfig(fs), newFakeSink())
			fs.Inject(func(o, name string) error {
				switch o {
				case "write":
					return syscall.ENOSPC
				case op:
					return boom
				}
				return nil
			})
			_, err := l.Append(context.Background(), []Entry{entry(tp(1, 0), 10, 1)})
			if !errors.Is(err, ErrFailed) || !errors.Is(err, boom) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append: %v", err)
			}
			if err := l.Healthy(); !errors.Is(err, ErrFailed) {
				t.Fatalf("Healthy: %v", err)
			}
			if err := l.stop(t); !errors.Is(err, ErrFailed) {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}
