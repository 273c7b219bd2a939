package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"
)

// corruptSuffix is added to the name of a file replay moves aside (see
// setAside).
const corruptSuffix = ".corrupt"

// bufferFile is a buffer file found in the directory.
type bufferFile struct {
	seq    uint64
	id     ulid.ULID
	path   string
	sealed bool
}

// replay loads the buffers left in the directory, in seal order, into the
// pipeline ahead of anything new. An unsealed (".tmp") buffer is cut at its
// first damaged record and sealed now, an empty one removed, and the
// buffers after it are dropped; a damaged file is moved aside with the
// buffers after it. So what is replayed is always a prefix of what was
// sealed, in seal order.
func (l *Log) replay() error {
	names, err := l.fs.ReadDir(l.cfg.Dir)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", l.cfg.Dir, err)
	}
	var files []bufferFile
	for _, name := range names {
		path := filepath.Join(l.cfg.Dir, name)
		seq, id, sealed, ok := parseName(name)
		switch {
		case ok:
			files = append(files, bufferFile{seq, id, path, sealed})
		case name == "LOCK":
		case strings.HasSuffix(name, corruptSuffix):
			l.log.Warn("wal: ignoring a file an earlier start moved aside; it may be deleted", "file", path)
		default:
			l.log.Warn("wal: ignoring unknown file", "dir", l.cfg.Dir, "file", name)
		}
	}
	// Names sort by seq (fixed-width hex), so files is in seal order; a seq
	// present twice (a crash between rename and the directory fsync cannot
	// do that, but a copy by hand can) is corruption.
	for i := 1; i < len(files); i++ {
		if files[i-1].seq == files[i].seq {
			return &CorruptionError{File: files[i].path, Reason: fmt.Sprintf("sequence %d used by two files", files[i].seq)}
		}
	}
	if len(files) > 0 {
		l.mu.nextSeq = files[len(files)-1].seq + 1
	}
	dirty := false
	for i, f := range files {
		c, err := l.readBuffer(f)
		var ce *CorruptionError
		if errors.As(err, &ce) {
			if err := l.setAside(files[i:], ce); err != nil {
				return err
			}
			dirty = true
			break
		}
		if err != nil {
			return err
		}
		if !f.sealed && i+1 < len(files) {
			if err := l.dropAfterUnsealed(f, files[i+1:]); err != nil {
				return err
			}
		}
		b, changed, err := l.replayBuffer(f, c)
		if err != nil {
			return err
		}
		dirty = dirty || changed
		if b != nil {
			l.mu.sealed = append(l.mu.sealed, b)
			l.mu.buffered += b.sealed.Bytes
			l.m.replayed.Inc()
			l.log.Info("wal: replaying buffer", "file", f.path, "entries", len(b.sealed.Entries), "bytes", b.sealed.Bytes)
		}
		if !f.sealed {
			break // the last file now
		}
	}
	if dirty {
		if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
			return fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err)
		}
	}
	l.m.buffered.Set(float64(l.mu.buffered))
	return nil
}

// dropAfterUnsealed removes, durably, the buffer files after the unsealed
// one u (in seal order).
//
// u was never renamed to its sealed name, so it was never committed: its
// commit waits for its upload, which ends only after its fsync, rename and
// directory fsync (a failure there fails the WAL, and the committer stops).
// Commits go in seal order, so none of the buffers after it was committed
// either, and none of their appends was acknowledged. They can be on disk
// all the same: buffers are fsynced and renamed concurrently, so a small
// one sealed after u can be fsynced and published while u's fsync still
// runs, and the open buffer's pages can be written back at any time. After
// a power loss u may have lost any part of its records: a torn tail or a
// damaged record shows, but a file whose size was cut back to a record
// boundary looks whole. Replaying a later buffer after what is left of u could
// commit a producer's batch ahead of an earlier one of u it retries
// (OUT_OF_ORDER_SEQUENCE_NUMBER for the retry, a duplicate for the retry of
// the later one): recovery may only cut the end of the log.
//
// They go before u is sealed (and the directory is fsynced in between),
// so a crash in the middle never leaves a sealed u with buffers after it.
func (l *Log) dropAfterUnsealed(u bufferFile, later []bufferFile) error {
	paths, bytes, err := l.sizes(later)
	if err != nil {
		return err
	}
	l.log.Error("wal: dropping the buffers after an unsealed buffer file: replaying them without all of it could reorder a producer's batches; none was committed or acknowledged",
		"unsealed", u.path, "dropped_buffers", len(later), "dropped_bytes", bytes, "files", paths)
	// The last first: a crash in the middle leaves a run that still
	// starts at u.
	for _, f := range slices.Backward(later) {
		if err := l.fs.Remove(f.path); err != nil {
			return fmt.Errorf("wal: remove %s: %w", f.path, err)
		}
	}
	if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
		return fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err)
	}
	l.m.replayCut.Add(float64(bytes))
	return nil
}

// setAside moves the damaged file files[0] (which ce describes) and every
// buffer file after it aside, renaming each to its name with corruptSuffix:
// kept for a look, never replayed. Refusing to start instead would keep
// the agent down (restarted and failing again) for nothing that was
// promised to anyone.
//
// A buffer's file is removed once it is committed, and an append is
// acknowledged only once its buffer is committed: so every file found
// holds either a buffer never committed, none of whose appends was
// acknowledged, or a committed one whose removal was not durable yet,
// whose records are in the catalog. Commits go in seal order. If the
// damaged buffer was committed, each one after it was committed too (in
// the catalog already) or was not (never acknowledged). If it was not
// committed, none after it was. Either way dropping them all loses
// nothing acknowledged; replaying the ones after it could, if it was not
// committed, commit a producer's later batches ahead of its earlier ones
// (see dropAfterUnsealed). The buffers before it are replayed.
func (l *Log) setAside(files []bufferFile, ce *CorruptionError) error {
	paths, bytes, err := l.sizes(files)
	if err != nil {
		return err
	}
	l.log.Error("wal: moving a damaged buffer file aside with the buffers after it; they held nothing acknowledged that is not committed",
		"file", ce.File, "offset", ce.Offset, "reason", ce.Reason, "moved_buffers", len(files), "moved_bytes", bytes, "files", paths, "suffix", corruptSuffix)
	// The later ones first, made durable before the damaged one goes: a
	// crash in the middle never leaves them without it.
	for i, f := range slices.Backward(files) {
		if i == 0 && len(files) > 1 {
			if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
				return fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err)
			}
		}
		if err := l.fs.Rename(f.path, f.path+corruptSuffix); err != nil {
			return fmt.Errorf("wal: move aside %s: %w", f.path, err)
		}
	}
	l.m.replayCut.Add(float64(bytes))
	return nil
}

// sizes returns the paths of files and the sum of their sizes.
func (l *Log) sizes(files []bufferFile) (paths []string, bytes int64, err error) {
	for _, f := range files {
		fh, err := l.fs.OpenFile(f.path, os.O_RDONLY, 0)
		if err != nil {
			return nil, 0, fmt.Errorf("wal: replay %s: %w", f.path, err)
		}
		n, err := fh.Size()
		fh.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("wal: replay %s: %w", f.path, err)
		}
		paths = append(paths, f.path)
		bytes += n
	}
	return paths, bytes, nil
}

// parseName splits "<16 hex seq>-<ulid>.wal|.tmp".
func parseName(name string) (seq uint64, id ulid.ULID, sealed, ok bool) {
	base, ext, _ := strings.Cut(name, ".")
	switch ext {
	case "wal":
		sealed = true
	case "tmp":
	default:
		return 0, id, false, false
	}
	s, u, found := strings.Cut(base, "-")
	if !found || len(s) != 16 {
		return 0, id, false, false
	}
	seq, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, id, false, false
	}
	id, err = ulid.ParseStrict(u)
	if err != nil {
		return 0, id, false, false
	}
	return seq, id, sealed, true
}

// contents is what readBuffer found in a buffer file.
type contents struct {
	h       fileHeader
	entries []Entry // alias the file's bytes
	size    int64
	// valid is the length of the intact prefix: the whole file if it is
	// sealed, 0 for an unsealed file whose header never reached the disk.
	valid int64
	// damaged is the damaged record an unsealed file is cut at (nil for
	// a torn tail).
	damaged *CorruptionError
}

// readBuffer reads and checks one buffer file, changing nothing. Damage
// that is not a crash's (any in a sealed file, which was fsynced whole; a
// file header that is not all zeros) is a *CorruptionError naming the
// file.
func (l *Log) readBuffer(f bufferFile) (contents, error) {
	data, err := l.readFile(f.path)
	if err != nil {
		return contents{}, err
	}
	h, entries, valid, err := decodeFile(data, f.sealed)
	c := contents{h: h, entries: entries, size: int64(len(data)), valid: valid}
	var ce *CorruptionError
	if !f.sealed && errors.As(err, &ce) && ce.Offset >= fileHeaderSize {
		// A damaged record with intact ones after it. Writeback does not
		// keep the order of writes, so a crash can persist a later page
		// of an unsynced file and lose an earlier one; and nothing in an
		// unsealed file was acknowledged. Refusing to start would keep
		// the agent down for records nobody was promised: keep the
		// intact prefix, and say loudly what is dropped.
		c.damaged = ce
		return c, nil
	}
	if err != nil {
		if !errors.As(err, &ce) {
			return contents{}, fmt.Errorf("wal: replay %s: %w", f.path, err)
		}
		if !f.sealed && ce.Offset <= fileHeaderSize && (len(data) < fileHeaderSize || allZero(data[:fileHeaderSize])) {
			// Created, then the crash came before the header reached the
			// disk: nothing in it was ever fsynced, so nothing was acked.
			c.valid = 0
			return c, nil
		}
		cp := *ce
		cp.File = f.path
		return contents{}, &cp
	}
	if h.seq != f.seq || h.id != f.id {
		return contents{}, &CorruptionError{File: f.path, Reason: fmt.Sprintf("header names buffer %016x-%s", h.seq, h.id)}
	}
	return c, nil
}

// replayBuffer turns what readBuffer found in f into a buffer to flush, or
// nil for one with nothing to flush (removing its file); an unsealed file
// is cut after its intact prefix and sealed. It reports whether it changed
// the directory.
func (l *Log) replayBuffer(f bufferFile, c contents) (*buffer, bool, error) {
	if !f.sealed && c.valid == 0 {
		l.log.Warn("wal: removing buffer file with a torn header", "file", f.path, "size", c.size)
		if err := l.fs.Remove(f.path); err != nil {
			return nil, false, fmt.Errorf("wal: remove %s: %w", f.path, err)
		}
		return nil, true, nil
	}
	if c.damaged != nil {
		l.log.Error("wal: cutting unsealed buffer file at a damaged record; the rest was never acknowledged",
			"file", f.path, "offset", c.damaged.Offset, "reason", c.damaged.Reason, "kept_entries", len(c.entries), "dropped_bytes", c.size-c.valid)
	}
	if !f.sealed && c.valid < c.size {
		l.m.replayCut.Add(float64(c.size - c.valid))
	}
	if len(c.entries) == 0 {
		if err := l.fs.Remove(f.path); err != nil {
			return nil, false, fmt.Errorf("wal: remove empty buffer %s: %w", f.path, err)
		}
		return nil, true, nil
	}
	b := newBuffer(l.cfg.Dir, c.h)
	b.sealed.Replayed = true
	b.sealed.Entries = c.entries
	for _, e := range c.entries {
		b.sealed.Bytes += int64(len(e.Batch))
	}
	if f.sealed {
		return b, false, nil
	}
	// Seal it now: cut it after the intact prefix, fsync, rename.
	fh, err := l.fs.OpenFile(f.path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("wal: repair %s: %w", f.path, err)
	}
	if c.valid < c.size {
		if c.damaged == nil {
			l.log.Warn("wal: truncating torn tail", "file", f.path, "from", c.size, "to", c.valid, "dropped_bytes", c.size-c.valid)
		}
		if err := fh.Truncate(c.valid); err != nil {
			fh.Close()
			return nil, false, fmt.Errorf("wal: truncate %s: %w", f.path, err)
		}
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return nil, false, fmt.Errorf("wal: fsync %s: %w", f.path, err)
	}
	if err := fh.Close(); err != nil {
		return nil, false, fmt.Errorf("wal: close %s: %w", f.path, err)
	}
	if err := l.fs.Rename(b.tmpPath(), b.walPath()); err != nil {
		return nil, false, fmt.Errorf("wal: seal %s: %w", b.walPath(), err)
	}
	return b, true, nil
}

func (l *Log) readFile(path string) ([]byte, error) {
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: replay %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, fmt.Errorf("wal: replay %s: %w", path, err)
	}
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
		return nil, fmt.Errorf("wal: replay %s: %w", path, err)
	}
	return data, nil
}
