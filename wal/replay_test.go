package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReplayAfterCrash: buffer A committed before the crash is not
// committed again; buffer B, sealed and uploaded but not committed, is
// handed to the sink again with the same ID, Created and entries, before
// anything appended after the restart.
func TestReplayAfterCrash(t *testing.T) {
	fs := NewMemFS()
	sink := newFakeSink()
	blocked := make(chan *Sealed, 1)
	sink.onCommit = func(ctx context.Context, b *Sealed) error {
		if len(b.Entries) == 2 { // buffer B
			blocked <- b
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}
	cfg := testConfig(fs)
	cfg.DrainTimeout = 10 * time.Millisecond
	l1 := start(t, cfg, sink)
	wait(t, mustAppend(t, l1.Log, entry(tp(1, 0), 10, 1)))
	eventually(t, "A deleted", func() bool { return len(walFiles(t, fs, "/wal")) == 0 })
	mustAppend(t, l1.Log, entry(tp(1, 0), 10, 1), entry(tp(2, 0), 20, 3))
	b := <-blocked // B is fsynced, renamed and uploaded; its commit hangs
	disk := fs.Crash()
	l1.stop(t)

	sink2 := newFakeSink()
	sink2.next = sink.next // the catalog survived; A's offsets are taken
	l2, err := Open(testConfig(disk), sink2)
	if err != nil {
		t.Fatal(err)
	}
	// Appended before Run: still committed after the replayed buffer.
	late, err := l2.Append(context.Background(), []Entry{entry(tp(1, 0), 10, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l2.Run(ctx) }()
	res := wait(t, late)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	order := sink2.commitOrder()
	if len(order) != 2 || order[0] != b.ID {
		t.Fatalf("commits after restart %v, want B (%s) first then the new buffer", order, b.ID)
	}
	got := sink2.sealed[b.ID]
	if !got.Replayed || !got.Created.Equal(b.Created) || got.Bytes != b.Bytes || len(got.Entries) != 2 {
		t.Fatalf("replayed %+v, original %+v", got, b)
	}
	for i := range got.Entries {
		if !entriesEqual(got.Entries[i], b.Entries[i]) {
			t.Fatalf("entry %d differs after replay", i)
		}
	}
	// tp(1,0): A took 0, B took 1, the late append 2.
	if res[0].BaseOffset != 2 {
		t.Fatalf("late append offset %d", res[0].BaseOffset)
	}
	if n := len(walFiles(t, disk, "/wal")); n != 0 {
		t.Fatalf("%d files left", n)
	}
}

func entriesEqual(a, b Entry) bool { return reflect.DeepEqual(a, b) }

// A crash after the commit but before the file's removal is durable makes
// replay commit the buffer again; the sink's idempotence per ID returns the
// first results and assigns nothing new.
func TestReplayOfCommittedBufferIsIdempotent(t *testing.T) {
	fs := NewMemFS()
	sink := newFakeSink()
	var disk *MemFS
	sink.afterCmt = func(*Sealed) {
		if disk == nil {
			disk = fs.Crash()
		}
	}
	l1 := start(t, testConfig(fs), sink)
	first := wait(t, mustAppend(t, l1.Log, entry(tp(1, 0), 10, 4)))
	l1.stop(t)
	if len(walFiles(t, disk, "/wal")) != 1 {
		t.Fatal("the crash image should still hold the committed buffer")
	}
	l2 := start(t, testConfig(disk), sink) // same catalog
	eventually(t, "replayed buffer flushed", func() bool { return len(walFiles(t, disk, "/wal")) == 0 })
	r := wait(t, mustAppend(t, l2.Log, entry(tp(1, 0), 10, 1)))
	if r[0].BaseOffset != 4 || first[0].BaseOffset != 0 {
		t.Fatalf("offsets %v then %v: the replay must not take offsets", first, r)
	}
	if _, cm := sink.counts(); cm != 2 {
		t.Fatalf("%d effective commits", cm)
	}
}

// fileBytes builds a buffer file with n entries.
func fileBytes(seq uint64, id ulid.ULID, n int) []byte {
	b := appendFileHeader(nil, fileHeader{seq: seq, created: 1700000000e9, id: id})
	for i := range n {
		e := entry(tp(1, int32(i)), 10+i, 1)
		b = appendEntry(b, &e)
	}
	return b
}

// zeroFrom returns data with its bytes from off on zeroed and extra zero
// bytes appended: what a crash leaves when the writes from off on never
// reached the disk but the file's size did.
func zeroFrom(data []byte, off, extra int) []byte {
	d := slices.Clone(data)
	clear(d[off:])
	return append(d, make([]byte, extra)...)
}

func fileName(seq uint64, id ulid.ULID, ext string) string {
	return fmt.Sprintf("/wal/%016x-%s.%s", seq, id, ext)
}

func TestReplayRepairsTornTail(t *testing.T) {
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("x", 16)))
	full := fileBytes(3, id, 3)
	twoRecords := len(fileBytes(3, id, 2))
	for _, tc := range []struct {
		name string
		data []byte
		want int // entries replayed
	}{
		{"complete", full, 3},
		{"last record cut", full[:len(full)-4], 2},
		{"last record header cut", full[:twoRecords+5], 2},
		{"bad CRC in last record", func() []byte { d := slices.Clone(full); d[len(d)-1] ^= 1; return d }(), 2},
		{"zero-filled tail", append(slices.Clone(full[:twoRecords]), make([]byte, 100)...), 2},
		// The unwritten part of a crashed file reads as zeros and starts
		// at a page boundary, not a record's: inside the last record's
		// payload, or inside its length field.
		{"zero-filled tail from inside the last record", zeroFrom(full, len(full)-5, 100), 2},
		{"zero-filled tail from inside the last length", zeroFrom(full, twoRecords+1, 100), 2},
		{"zero-filled tail leaving a short length", func() []byte {
			// A payload of 266 bytes: with only its low byte written the
			// length reads 10, below the smallest record.
			e := entry(tp(1, 9), 266-entryFixed, 1)
			return zeroFrom(appendEntry(slices.Clone(full[:twoRecords]), &e), twoRecords+1, 300)
		}(), 2},
		{"header only", full[:fileHeaderSize], 0},
		{"torn header", full[:20], 0},
		{"zero header", make([]byte, 200), 0},
		{"empty file", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := NewMemFS()
			fs.MkdirAll("/wal", 0o755)
			fs.WriteFile(fileName(3, id, "tmp"), tc.data)
			sink := newFakeSink()
			l := start(t, testConfig(fs), sink)
			if tc.want == 0 {
				if n := len(walFiles(t, fs, "/wal")); n != 0 {
					t.Fatalf("%d files left after open", n)
				}
				if up, _ := sink.counts(); up != 0 {
					t.Fatal("uploaded an empty buffer")
				}
				// The next buffer's seq continues after the file found.
				if l.mu.nextSeq != 4 {
					t.Fatalf("next seq %d", l.mu.nextSeq)
				}
				return
			}
			eventually(t, "commit", func() bool { _, c := sink.counts(); return c == 1 })
			got := sink.sealed[id.String()]
			if len(got.Entries) != tc.want || !got.Replayed || got.Created.UnixNano() != 1700000000e9 {
				t.Fatalf("replayed %d entries (%+v)", len(got.Entries), got)
			}
			eventually(t, "file deleted", func() bool { return len(walFiles(t, fs, "/wal")) == 0 })
		})
	}
}

// holeAt returns data with bytes [from, to) zeroed: a page that a crash
// lost while a later one of the same unsynced file reached the disk.
func holeAt(data []byte, from, to int) []byte {
	d := slices.Clone(data)
	clear(d[from:to])
	return d
}

// An unsealed file was never fsynced, so nothing in it was acknowledged:
// damage before its end (a hole left by out-of-order writeback, a flipped
// bit) cuts it at the first bad record, as a torn tail does, instead of
// keeping the agent from starting. (Damage to a sealed file moves it
// aside: TestReplayMovesDamagedFileAside.)
func TestReplayCutsUnsealedFileAtDamage(t *testing.T) {
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("h", 16)))
	full := fileBytes(3, id, 3)
	one, two := len(fileBytes(3, id, 1)), len(fileBytes(3, id, 2))
	for _, tc := range []struct {
		name string
		data []byte
		want int // entries replayed
	}{
		{"hole in the second record", holeAt(full, one, two), 1},
		{"hole across the first two records", holeAt(full, fileHeaderSize+10, two-3), 0},
		{"hole from inside the second record into the third", holeAt(full, one+20, two+10), 1},
		{"bad CRC in the first record", func() []byte { d := slices.Clone(full); d[fileHeaderSize+frameHeader+5] ^= 1; return d }(), 0},
		{"bad length in the second record", func() []byte { d := slices.Clone(full); le.PutUint32(d[one:], 3); return d }(), 1},
		{"unknown record type in the second record", func() []byte {
			d := slices.Clone(full)
			d[one+frameHeader] = 9
			le.PutUint32(d[one+4:], crc32Of(d[one+frameHeader:two]))
			return d
		}(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := NewMemFS()
			fs.MkdirAll("/wal", 0o755)
			fs.WriteFile(fileName(3, id, "tmp"), tc.data)
			sink := newFakeSink()
			l := start(t, testConfig(fs), sink)
			if n := testutil.ToFloat64(l.m.replayCut); n != float64(len(tc.data)-len(fileBytes(3, id, tc.want))) {
				t.Fatalf("dropped bytes %v", n)
			}
			if tc.want == 0 {
				if n := len(walFiles(t, fs, "/wal")); n != 0 {
					t.Fatalf("%d files left after open", n)
				}
				return
			}
			// Cut and sealed: a crash now finds the intact prefix, durable.
			if got, _ := fs.Crash().ReadFile(fileName(3, id, "wal")); !slices.Equal(got, fileBytes(3, id, tc.want)) {
				t.Fatalf("sealed file of %d bytes, want the %d-entry prefix", len(got), tc.want)
			}
			eventually(t, "commit", func() bool { _, c := sink.counts(); return c == 1 })
			got := sink.sealed[id.String()]
			if len(got.Entries) != tc.want || !slices.Equal(got.Entries[0].Batch, full[fileHeaderSize+frameHeader+entryFixed:one]) {
				t.Fatalf("replayed %d entries (%+v)", len(got.Entries), got)
			}
			eventually(t, "file deleted", func() bool { return len(walFiles(t, fs, "/wal")) == 0 })
		})
	}
}

// Damage that is not a crash's (any in a sealed file, which was fsynced
// whole; a file header that is not all zeros) moves the file aside, with
// every buffer after it, instead of failing Open (which had the agent
// restarted and failing again for good): none of them holds anything
// acknowledged that is not committed. The buffers before it are replayed;
// the files moved aside are kept, durably, and left alone by later starts.
func TestReplayMovesDamagedFileAside(t *testing.T) {
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("y", 16)))
	full := fileBytes(1, id, 3)
	midCRC := slices.Clone(full)
	midCRC[fileHeaderSize+frameHeader+5] ^= 1 // inside the first record's payload
	badLen := slices.Clone(full)
	le.PutUint32(badLen[fileHeaderSize:], 3)
	before := ulid.MustNew(1, strings.NewReader(strings.Repeat("b", 16)))
	after := ulid.MustNew(1, strings.NewReader(strings.Repeat("a", 16)))
	for _, tc := range []struct {
		name    string
		file    string
		data    []byte
		wantOff int64
	}{
		{"bad CRC mid-file", fileName(1, id, "wal"), midCRC, fileHeaderSize},
		{"bad length mid-file", fileName(1, id, "wal"), badLen, fileHeaderSize},
		{"hole mid-file", fileName(1, id, "wal"), holeAt(full, len(fileBytes(1, id, 1)), len(fileBytes(1, id, 2))), int64(len(fileBytes(1, id, 1)))},
		{"bad header CRC (unsealed)", fileName(1, id, "tmp"), func() []byte { d := slices.Clone(full); d[30] ^= 1; return d }(), 44},
		{"torn tail in a sealed file", fileName(1, id, "wal"), full[:len(full)-3], int64(len(fileBytes(1, id, 2)))},
		{"bad header CRC", fileName(1, id, "wal"), func() []byte { d := slices.Clone(full); d[30] ^= 1; return d }(), 44},
		{"header names another buffer", fileName(2, id, "wal"), full, 0},
		{"unknown record type", fileName(1, id, "wal"), func() []byte {
			d := fileBytes(1, id, 0)
			e := entry(tp(1, 0), 3, 1)
			d = appendEntry(d, &e)
			d[fileHeaderSize+frameHeader] = 9
			le.PutUint32(d[fileHeaderSize+4:], crc32Of(d[fileHeaderSize+frameHeader:]))
			return d
		}(), fileHeaderSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := NewMemFS()
			fs.MkdirAll("/wal", 0o755)
			fs.WriteFile(fileName(0, before, "wal"), fileBytes(0, before, 1))
			fs.WriteFile(tc.file, tc.data)
			later := map[string][]byte{ // a sealed buffer and the open one
				fileName(9, after, "wal"):  fileBytes(9, after, 2),
				fileName(10, after, "tmp"): fileBytes(10, after, 1),
			}
			for name, data := range later {
				fs.WriteFile(name, data)
			}
			var logs strings.Builder
			cfg := testConfig(fs)
			cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			l, err := Open(cfg, newFakeSink())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if len(l.mu.sealed) != 1 || l.mu.sealed[0].sealed.ID != before.String() {
				t.Fatalf("replayed %d buffers, want only the one before the damaged file", len(l.mu.sealed))
			}
			if l.mu.nextSeq != 11 {
				t.Fatalf("next seq %d", l.mu.nextSeq)
			}
			for _, want := range []string{"level=ERROR", "file=" + tc.file, fmt.Sprintf("offset=%d", tc.wantOff), "moved_buffers=3"} {
				if !strings.Contains(logs.String(), want) {
					t.Fatalf("log without %q:\n%s", want, logs.String())
				}
			}
			// Moved aside for good, unchanged.
			disk := fs.Crash()
			want := []string{filepath.Base(fileName(0, before, "wal"))}
			later[tc.file] = tc.data
			bytes := 0
			for name, data := range later {
				want = append(want, filepath.Base(name)+".corrupt")
				if got, _ := disk.ReadFile(name + ".corrupt"); !slices.Equal(got, data) {
					t.Fatalf("%s.corrupt holds %d bytes, want the %d of %s", name, len(got), len(data), name)
				}
				bytes += len(data)
			}
			slices.Sort(want)
			if names := walFiles(t, disk, "/wal"); !slices.Equal(names, want) {
				t.Fatalf("left %v, want %v", names, want)
			}
			if n := testutil.ToFloat64(l.m.replayCut); n != float64(bytes) {
				t.Fatalf("dropped bytes %v, want %d", n, bytes)
			}
			// The next start replays the buffer before and nothing else.
			sink := newFakeSink()
			l2 := start(t, testConfig(disk), sink)
			eventually(t, "commit", func() bool { _, c := sink.counts(); return c == 1 })
			l2.stop(t)
			if names := walFiles(t, disk, "/wal"); !slices.Equal(names, want[1:]) {
				t.Fatalf("left %v, want %v", names, want[1:])
			}
		})
	}
}

func TestReplayIgnoresUnknownFilesAndOrdersBySeq(t *testing.T) {
	fs := NewMemFS()
	fs.MkdirAll("/wal", 0o755)
	var ids []ulid.ULID
	for seq := range uint64(3) {
		id := ulid.MustNew(100-seq, strings.NewReader(strings.Repeat("z", 16))) // ULIDs descending
		ids = append(ids, id)
		fs.WriteFile(fileName(seq+10, id, "wal"), fileBytes(seq+10, id, 1))
	}
	fs.WriteFile("/wal/README", []byte("hi"))
	sink := newFakeSink()
	l := start(t, testConfig(fs), sink)
	eventually(t, "commits", func() bool { _, c := sink.counts(); return c == 3 })
	got := sink.commitOrder()
	for i, id := range ids {
		if got[i] != id.String() {
			t.Fatalf("commit order %v", got)
		}
	}
	l.stop(t)
	if names := walFiles(t, fs, "/wal"); !slices.Equal(names, []string{"README"}) {
		t.Fatalf("left %v", names)
	}
}

// The same flows on the real file system.
func TestOSFS(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(nil)
	cfg.Dir = dir
	cfg.DrainTimeout = 10 * time.Millisecond
	sink := newFakeSink()
	l := start(t, cfg, sink)
	if r := wait(t, mustAppend(t, l.Log, entry(tp(1, 0), 100, 2))); r[0].BaseOffset != 0 {
		t.Fatal(r)
	}
	// Leave two buffers behind: X sealed (its upload hangs until the drain
	// gives up), Y still open (no upload slot is free).
	cfg.MaxInflight = 1
	l.stop(t)
	hung := make(chan struct{}, 1)
	sink.onUpload = func(ctx context.Context, _ *Sealed) error {
		hung <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	l = start(t, cfg, sink)
	mustAppend(t, l.Log, entry(tp(1, 0), 100, 2))
	<-hung
	mustAppend(t, l.Log, entry(tp(1, 0), 100, 2))
	if err := l.stop(t); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run: %v", err)
	}
	all, _ := os.ReadDir(dir)
	var ents []os.DirEntry
	for _, e := range all {
		if e.Name() != "LOCK" {
			ents = append(ents, e)
		}
	}
	if len(ents) != 2 || !strings.HasSuffix(ents[0].Name(), ".wal") || !strings.HasSuffix(ents[1].Name(), ".tmp") {
		t.Fatalf("left %v, want one sealed and one open buffer", ents)
	}
	// Tear the open buffer's tail as a crash could.
	path := filepath.Join(dir, ents[1].Name())
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{1, 2, 3})
	f.Close()

	sink.onUpload = nil
	l2 := start(t, cfg, sink)
	eventually(t, "replayed commits", func() bool { _, c := sink.counts(); return c == 3 })
	if r := wait(t, mustAppend(t, l2.Log, entry(tp(1, 0), 100, 2))); r[0].BaseOffset != 6 {
		t.Fatal(r)
	}
	l2.stop(t)
	// Only the lock file stays.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "LOCK" {
		t.Fatalf("left %v, want only LOCK", ents)
	}
}
