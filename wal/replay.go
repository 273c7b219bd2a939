package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"
)

// replay loads the buffers left in the directory, in seal order, into the
// pipeline ahead of anything new. Unsealed (".tmp") buffers are cut at
// their first damaged record and sealed now; empty ones are removed.
func (l *Log) replay() error {
	names, err := l.fs.ReadDir(l.cfg.Dir)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", l.cfg.Dir, err)
	}
	type found struct {
		seq    uint64
		id     ulid.ULID
		name   string
		sealed bool
	}
	var files []found
	for _, name := range names {
		seq, id, sealed, ok := parseName(name)
		if !ok && name == "LOCK" {
			continue
		}
		if !ok {
			l.log.Warn("wal: ignoring unknown file", "dir", l.cfg.Dir, "file", name)
			continue
		}
		files = append(files, found{seq, id, name, sealed})
	}
	// Names sort by seq (fixed-width hex), so files is in seal order; a seq
	// present twice (a crash between rename and the directory fsync cannot
	// do that, but a copy by hand can) is corruption.
	dirty := false
	for i, f := range files {
		if i > 0 && files[i-1].seq == f.seq {
			return &CorruptionError{File: filepath.Join(l.cfg.Dir, f.name), Reason: fmt.Sprintf("sequence %d used by two files", f.seq)}
		}
		path := filepath.Join(l.cfg.Dir, f.name)
		b, changed, err := l.replayFile(path, f.seq, f.id, f.sealed)
		if err != nil {
			return err
		}
		dirty = dirty || changed
		l.mu.nextSeq = f.seq + 1
		if b == nil {
			continue
		}
		l.mu.sealed = append(l.mu.sealed, b)
		l.mu.buffered += b.sealed.Bytes
		l.m.replayed.Inc()
		l.log.Info("wal: replaying buffer", "file", path, "entries", len(b.sealed.Entries), "bytes", b.sealed.Bytes)
	}
	if dirty {
		if err := l.fs.SyncDir(l.cfg.Dir); err != nil {
			return fmt.Errorf("wal: fsync dir %s: %w", l.cfg.Dir, err)
		}
	}
	l.m.buffered.Set(float64(l.mu.buffered))
	return nil
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

// replayFile reads one buffer file. It returns nil for a buffer with nothing
// to flush (removing its file), and whether it changed the directory.
func (l *Log) replayFile(path string, seq uint64, id ulid.ULID, sealed bool) (*buffer, bool, error) {
	data, err := l.readFile(path)
	if err != nil {
		return nil, false, err
	}
	h, entries, valid, err := decodeFile(data, sealed)
	var ce *CorruptionError
	damaged := !sealed && errors.As(err, &ce) && ce.Offset >= fileHeaderSize
	if damaged {
		// A damaged record with intact ones after it. Writeback does not
		// keep the order of writes, so a crash can persist a later page
		// of an unsynced file and lose an earlier one; and nothing in an
		// unsealed file was acknowledged. Refusing to start would keep
		// the agent down for records nobody was promised: keep the
		// intact prefix, and say loudly what is dropped.
		l.log.Error("wal: cutting unsealed buffer file at a damaged record; the rest was never acknowledged",
			"file", path, "offset", ce.Offset, "reason", ce.Reason, "kept_entries", len(entries), "dropped_bytes", int64(len(data))-valid)
		err = nil
	}
	if err != nil {
		if !errors.As(err, &ce) {
			return nil, false, fmt.Errorf("wal: replay %s: %w", path, err)
		}
		if !sealed && ce.Offset <= fileHeaderSize && (len(data) < fileHeaderSize || allZero(data[:fileHeaderSize])) {
			// Created, then the crash came before the header reached the
			// disk: nothing in it was ever fsynced, so nothing was acked.
			l.log.Warn("wal: removing buffer file with a torn header", "file", path, "size", len(data))
			if err := l.fs.Remove(path); err != nil {
				return nil, false, fmt.Errorf("wal: remove %s: %w", path, err)
			}
			return nil, true, nil
		}
		c := *ce
		c.File = path
		return nil, false, &c
	}
	if h.seq != seq || h.id != id {
		return nil, false, &CorruptionError{File: path, Reason: fmt.Sprintf("header names buffer %016x-%s", h.seq, h.id)}
	}
	if !sealed && valid < int64(len(data)) {
		l.m.replayCut.Add(float64(int64(len(data)) - valid))
	}
	if len(entries) == 0 {
		if err := l.fs.Remove(path); err != nil {
			return nil, false, fmt.Errorf("wal: remove empty buffer %s: %w", path, err)
		}
		return nil, true, nil
	}
	b := newBuffer(l.cfg.Dir, h)
	b.sealed.Replayed = true
	b.sealed.Entries = entries
	for _, e := range entries {
		b.sealed.Bytes += int64(len(e.Batch))
	}
	if sealed {
		return b, false, nil
	}
	// Seal it now: cut it after the intact prefix, fsync, rename.
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, false, fmt.Errorf("wal: repair %s: %w", path, err)
	}
	if valid < int64(len(data)) {
		if !damaged {
			l.log.Warn("wal: truncating torn tail", "file", path, "from", len(data), "to", valid, "dropped_bytes", int64(len(data))-valid)
		}
		if err := f.Truncate(valid); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("wal: truncate %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("wal: fsync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("wal: close %s: %w", path, err)
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
