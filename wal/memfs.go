package wal

import (
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// MemFS is an in-memory FS that models what survives a power loss: a file's
// bytes are durable only up to its last Sync, and a directory's entries
// (creations, renames, removals) only as of its last SyncDir. Crash returns
// the file system as it would be found after a power loss. Inject fails
// chosen operations. Directories made by MkdirAll are durable at once.
//
// It exists for tests (of this package and of its users) and is safe for
// concurrent use.
type MemFS struct {
	mu     sync.Mutex
	dirs   map[string]*memDir
	inject func(op, name string) error
}

var _ FS = (*MemFS)(nil)

type memDir struct {
	cur    map[string]*inode
	synced map[string]*inode
}

type inode struct {
	data   []byte
	synced []byte
}

// NewMemFS returns an empty MemFS.
func NewMemFS() *MemFS { return &MemFS{dirs: make(map[string]*memDir)} }

// Inject sets a hook called before every operation with its name ("open",
// "write", "read", "sync", "truncate", "close", "rename", "remove", "readdir",
// "syncdir") and the path; a non-nil result fails the operation with it. nil
// removes the hook.
func (m *MemFS) Inject(f func(op, name string) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inject = f
}

func (m *MemFS) check(op, name string) error {
	if m.inject == nil {
		return nil
	}
	if err := m.inject(op, name); err != nil {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

// Crash returns a new MemFS holding only what was durable in m.
func (m *MemFS) Crash() *MemFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := NewMemFS()
	copied := make(map[*inode]*inode)
	for path, d := range m.dirs {
		nd := &memDir{cur: make(map[string]*inode), synced: make(map[string]*inode)}
		for name, ino := range d.synced {
			c, ok := copied[ino]
			if !ok {
				c = &inode{data: slices.Clone(ino.synced), synced: slices.Clone(ino.synced)}
				copied[ino] = c
			}
			nd.cur[name] = c
			nd.synced[name] = c
		}
		out.dirs[path] = nd
	}
	return out
}

// ReadFile returns the current contents of name.
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ino, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	return slices.Clone(ino.data), nil
}

// WriteFile replaces name's contents (creating it), durably: the file and
// its directory entry survive a Crash.
func (m *MemFS) WriteFile(name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, base, err := m.dir(name)
	if err != nil {
		return err
	}
	ino := &inode{data: slices.Clone(data), synced: slices.Clone(data)}
	d.cur[base] = ino
	d.synced[base] = ino
	return nil
}

func (m *MemFS) dir(name string) (*memDir, string, error) {
	d, ok := m.dirs[filepath.Dir(name)]
	if !ok {
		return nil, "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return d, filepath.Base(name), nil
}

func (m *MemFS) lookup(name string) (*inode, error) {
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	ino, ok := d.cur[base]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return ino, nil
}

func (m *MemFS) OpenFile(name string, flag int, _ os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("open", name); err != nil {
		return nil, err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return nil, err
	}
	ino, ok := d.cur[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	case !ok:
		ino = &inode{}
		d.cur[base] = ino
	}
	if flag&os.O_TRUNC != 0 {
		ino.data = nil
	}
	return &memFile{fs: m, ino: ino, name: name, append: flag&os.O_APPEND != 0}, nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("rename", oldname); err != nil {
		return err
	}
	od, obase, err := m.dir(oldname)
	if err != nil {
		return err
	}
	nd, nbase, err := m.dir(newname)
	if err != nil {
		return err
	}
	ino, ok := od.cur[obase]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: fs.ErrNotExist}
	}
	delete(od.cur, obase)
	nd.cur[nbase] = ino
	return nil
}

func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("remove", name); err != nil {
		return err
	}
	d, base, err := m.dir(name)
	if err != nil {
		return err
	}
	if _, ok := d.cur[base]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(d.cur, base)
	return nil
}

func (m *MemFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("readdir", dir); err != nil {
		return nil, err
	}
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	return slices.Sorted(maps.Keys(d.cur)), nil
}

func (m *MemFS) MkdirAll(dir string, _ os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir = filepath.Clean(dir)
	if _, ok := m.dirs[dir]; !ok {
		m.dirs[dir] = &memDir{cur: make(map[string]*inode), synced: make(map[string]*inode)}
	}
	return nil
}

func (m *MemFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check("syncdir", dir); err != nil {
		return err
	}
	d, ok := m.dirs[filepath.Clean(dir)]
	if !ok {
		return &fs.PathError{Op: "syncdir", Path: dir, Err: fs.ErrNotExist}
	}
	d.synced = maps.Clone(d.cur)
	return nil
}

type memFile struct {
	fs     *MemFS
	ino    *inode
	name   string
	pos    int64
	append bool
	closed bool
}

var errClosed = errors.New("file already closed")

func (f *memFile) op(op string) error {
	if f.closed {
		return &fs.PathError{Op: op, Path: f.name, Err: errClosed}
	}
	return f.fs.check(op, f.name)
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("write"); err != nil {
		return 0, err
	}
	if f.append {
		f.pos = int64(len(f.ino.data))
	}
	if end := f.pos + int64(len(p)); end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[f.pos:], p)
	f.pos += int64(len(p))
	return len(p), nil
}

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("read"); err != nil {
		return 0, err
	}
	if f.pos >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[f.pos:])
	f.pos += int64(n)
	return n, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("read"); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("sync"); err != nil {
		return err
	}
	f.ino.synced = slices.Clone(f.ino.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("truncate"); err != nil {
		return err
	}
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *memFile) Size() (int64, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.closed {
		return 0, &fs.PathError{Op: "stat", Path: f.name, Err: errClosed}
	}
	return int64(len(f.ino.data)), nil
}

func (f *memFile) Close() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.op("close"); err != nil {
		f.closed = true
		return err
	}
	f.closed = true
	return nil
}
