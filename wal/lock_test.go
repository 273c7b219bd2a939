package wal

import (
	"context"
	"errors"
	"testing"
)

func TestDirectoryLockedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir}, nopSink{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir}, nopSink{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(Config{Dir: dir}, nopSink{})
	if err != nil {
		t.Fatalf("Open after Run returned: %v", err)
	}
	if err := l2.Run(ctx); err != nil {
		t.Fatal(err)
	}
}
