package wal

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// holdSyncFS holds the fsync of the files hold picks until release is
// closed, outside MemFS's lock so that other files' fsyncs, renames and
// directory fsyncs go on meanwhile (a slow fsync of a large buffer).
type holdSyncFS struct {
	*MemFS
	hold    func(name string) bool
	syncing chan struct{} // receives one value per held fsync
	release chan struct{}
}

func (h *holdSyncFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := h.MemFS.OpenFile(name, flag, perm)
	if err != nil || !h.hold(name) {
		return f, err
	}
	return &heldFile{File: f, fs: h}, nil
}

type heldFile struct {
	File
	fs *holdSyncFS
}

func (f *heldFile) Sync() error {
	f.fs.syncing <- struct{}{}
	<-f.fs.release
	return f.File.Sync()
}

// Buffers are fsynced and renamed concurrently: a small buffer sealed
// after a large one can be fsynced, renamed and published by a directory
// fsync while the large one's fsync still runs. Neither is committed (the
// commits wait for seal order), but after a power loss the first is torn
// (here: nothing of it reached the disk) and the second is whole.
// Replaying the second alone would commit a producer's later batch ahead
// of the earlier one it retries: replay drops every buffer after an
// unsealed one, durably.
func TestCrashDuringEarlierFsyncDropsLaterBuffers(t *testing.T) {
	mem := NewMemFS()
	fs := &holdSyncFS{
		MemFS:   mem,
		hold:    func(name string) bool { return strings.HasPrefix(filepath.Base(name), "0000000000000000-") },
		syncing: make(chan struct{}, 1),
		release: make(chan struct{}),
	}
	sink := newFakeSink()
	l1 := start(t, testConfig(fs), sink)
	mustAppend(t, l1.Log, entry(tp(1, 0), 1000, 5)) // buffer 0: its fsync is held
	<-fs.syncing
	mustAppend(t, l1.Log, entry(tp(1, 0), 10, 5)) // buffer 1: fsynced, renamed, published
	eventually(t, "buffer 1 durably sealed", func() bool {
		return slices.ContainsFunc(walFiles(t, mem.Crash(), "/wal"), func(n string) bool { return strings.HasSuffix(n, ".wal") })
	})
	disk := mem.Crash()
	if _, c := sink.counts(); c != 0 {
		t.Fatalf("%d commits before the crash", c)
	}
	close(fs.release)
	l1.stop(t)

	// The client, acknowledged for neither, sends both again in order.
	sink2 := newFakeSink()
	l2 := start(t, testConfig(disk), sink2)
	if n := testutil.ToFloat64(l2.m.replayed); n != 0 {
		t.Fatalf("replay queued %v buffers: buffer 1 without buffer 0 before it", n)
	}
	if got, want := testutil.ToFloat64(l2.m.replayCut), float64(len(fileBytes(1, ulid.ULID{}, 0))+frameHeader+entryFixed+10); got != want {
		t.Fatalf("dropped bytes %v, want %v (buffer 1's file)", got, want)
	}
	if names := walFiles(t, disk.Crash(), "/wal"); len(names) != 0 {
		t.Fatalf("left %v after open, durably", names)
	}
	r1 := wait(t, mustAppend(t, l2.Log, entry(tp(1, 0), 1000, 5)))
	r2 := wait(t, mustAppend(t, l2.Log, entry(tp(1, 0), 10, 5)))
	if r1[0].BaseOffset != 0 || r2[0].BaseOffset != 5 {
		t.Fatalf("offsets %d and %d after the retries, want 0 and 5", r1[0].BaseOffset, r2[0].BaseOffset)
	}
}

// Whatever is left of an unsealed buffer file (nothing, a torn tail, a
// prefix cut at a damaged record, or what looks whole: a crash can cut the
// file's size back to a record boundary), the buffers after it are
// dropped, durably, before it is sealed; the buffers before it and its
// intact prefix are replayed, in seal order.
func TestReplayDropsBuffersAfterUnsealed(t *testing.T) {
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("u", 16)))
	before := ulid.MustNew(1, strings.NewReader(strings.Repeat("b", 16)))
	after := ulid.MustNew(1, strings.NewReader(strings.Repeat("a", 16)))
	full := fileBytes(3, id, 3)
	one, two := len(fileBytes(3, id, 1)), len(fileBytes(3, id, 2))
	for _, tc := range []struct {
		name string
		data []byte
		want int // entries of the unsealed buffer replayed
	}{
		{"torn header", nil, 0},
		{"header only", full[:fileHeaderSize], 0},
		{"torn tail", full[:len(full)-4], 2},
		{"hole in the second record", holeAt(full, one, two), 1},
		{"whole", full, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := NewMemFS()
			fs.MkdirAll("/wal", 0o755)
			fs.WriteFile(fileName(2, before, "wal"), fileBytes(2, before, 1))
			fs.WriteFile(fileName(3, id, "tmp"), tc.data)
			dropped := 0
			for seq, ext := range map[uint64]string{4: "wal", 5: "wal", 6: "tmp"} {
				data := fileBytes(seq, after, 2)
				fs.WriteFile(fileName(seq, after, ext), data)
				dropped += len(data)
			}
			if tc.want < 3 && len(tc.data) > 0 {
				dropped += len(tc.data) - len(fileBytes(3, id, tc.want))
			}
			l, err := Open(testConfig(fs), newFakeSink())
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, b := range l.mu.sealed {
				got = append(got, len(b.sealed.Entries))
			}
			want := []int{1}
			if tc.want > 0 {
				want = append(want, tc.want)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("replayed buffers of %v entries, want %v", got, want)
			}
			if n := testutil.ToFloat64(l.m.replayCut); n != float64(dropped) {
				t.Fatalf("dropped bytes %v, want %d", n, dropped)
			}
			if l.mu.nextSeq != 7 {
				t.Fatalf("next seq %d", l.mu.nextSeq)
			}
			wantFiles := []string{filepath.Base(fileName(2, before, "wal"))}
			if tc.want > 0 {
				wantFiles = append(wantFiles, filepath.Base(fileName(3, id, "wal")))
			}
			if names := walFiles(t, fs.Crash(), "/wal"); !slices.Equal(names, wantFiles) {
				t.Fatalf("left %v durably, want %v", names, wantFiles)
			}
		})
	}
}

// The buffers after an unsealed one are gone for good before it is sealed
// under its final name: a crash in between must not leave it sealed with
// them after it, which the next start would replay whole.
func TestDropAfterUnsealedIsDurableBeforeSeal(t *testing.T) {
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("u", 16)))
	after := ulid.MustNew(1, strings.NewReader(strings.Repeat("a", 16)))
	fs := NewMemFS()
	fs.MkdirAll("/wal", 0o755)
	full := fileBytes(3, id, 2)
	fs.WriteFile(fileName(3, id, "tmp"), full[:len(full)-4])
	fs.WriteFile(fileName(4, after, "wal"), fileBytes(4, after, 1))
	crashing := &crashAtRename{MemFS: fs}
	if _, err := Open(testConfig(crashing), newFakeSink()); err != nil {
		t.Fatal(err)
	}
	disk := crashing.disk
	if names := walFiles(t, disk, "/wal"); !slices.Equal(names, []string{filepath.Base(fileName(3, id, "tmp"))}) {
		t.Fatalf("crash before the seal left %v", names)
	}
}

// crashAtRename keeps, in disk, what a power loss right before the first
// rename would have left.
type crashAtRename struct {
	*MemFS
	disk *MemFS
}

func (c *crashAtRename) Rename(oldname, newname string) error {
	if c.disk == nil {
		c.disk = c.MemFS.Crash()
	}
	return c.MemFS.Rename(oldname, newname)
}
