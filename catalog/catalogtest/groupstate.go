package catalogtest

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/floebroker/floe/catalog"
)

// testGroupStateCAS: a group's coordinator state is stored and replaced
// only by a writer that names the stored version; a stale writer gets
// ErrGroupStateConflict and changes nothing; versions never repeat, even
// after a delete; DeleteGroup removes the state.
func testGroupStateCAS(t *testing.T, c catalog.Catalog) {
	load := func(group string) ([]byte, int64) {
		t.Helper()
		s, v, err := c.LoadGroupState(ctx(t), group)
		noErr(t, err, "LoadGroupState")
		return s, v
	}
	if s, v := load("g"); s != nil || v != 0 {
		t.Fatalf("LoadGroupState of a group without state = %q, %d; want nil, 0", s, v)
	}
	v1, err := c.SaveGroupState(ctx(t), "g", 0, []byte("one"))
	noErr(t, err, "SaveGroupState new")
	if v1 <= 0 {
		t.Fatalf("first version %d, want > 0", v1)
	}
	_, err = c.SaveGroupState(ctx(t), "g", 0, []byte("other"))
	wantErr(t, err, catalog.ErrGroupStateConflict, "SaveGroupState expecting none over a stored state")
	v2, err := c.SaveGroupState(ctx(t), "g", v1, []byte("two"))
	noErr(t, err, "SaveGroupState replace")
	if v2 <= v1 {
		t.Fatalf("version after replace %d, want > %d", v2, v1)
	}
	_, err = c.SaveGroupState(ctx(t), "g", v1, []byte("stale"))
	wantErr(t, err, catalog.ErrGroupStateConflict, "SaveGroupState with a stale version")
	if s, v := load("g"); string(s) != "two" || v != v2 {
		t.Fatalf("after a conflict: %q, %d; want two, %d", s, v, v2)
	}
	wantErr(t, c.DeleteGroupState(ctx(t), "g", v1), catalog.ErrGroupStateConflict, "DeleteGroupState with a stale version")
	wantErr(t, c.DeleteGroupState(ctx(t), "g", 0), catalog.ErrGroupStateConflict, "DeleteGroupState expecting none")
	noErr(t, c.DeleteGroupState(ctx(t), "g", v2), "DeleteGroupState")
	if s, v := load("g"); s != nil || v != 0 {
		t.Fatalf("after delete: %q, %d", s, v)
	}
	noErr(t, c.DeleteGroupState(ctx(t), "g", 0), "DeleteGroupState of none expecting none")
	wantErr(t, c.DeleteGroupState(ctx(t), "g", v2), catalog.ErrGroupStateConflict, "DeleteGroupState of none expecting a version")
	_, err = c.SaveGroupState(ctx(t), "g", v2, []byte("zombie"))
	wantErr(t, err, catalog.ErrGroupStateConflict, "SaveGroupState naming a deleted version")
	v3, err := c.SaveGroupState(ctx(t), "g", 0, []byte("three"))
	noErr(t, err, "SaveGroupState after delete")
	if v3 <= v2 {
		t.Fatalf("version after delete and save %d, want > %d (versions never repeat)", v3, v2)
	}
	// An empty state is a state.
	v4, err := c.SaveGroupState(ctx(t), "g", v3, nil)
	noErr(t, err, "SaveGroupState empty")
	if s, v := load("g"); len(s) != 0 || v != v4 {
		t.Fatalf("empty state read back as %q, %d", s, v)
	}

	// Groups are independent; DeleteGroup removes offsets and state.
	_, err = c.SaveGroupState(ctx(t), "h", 0, []byte("h"))
	noErr(t, err, "SaveGroupState h")
	createTopic(t, c, "a", 1, nil)
	commitOffsets(t, c, "g", []catalog.GroupOffset{{Topic: "a", Partition: 0, Offset: 1}})
	noErr(t, c.DeleteGroup(ctx(t), "g"), "DeleteGroup")
	if s, v := load("g"); s != nil || v != 0 {
		t.Fatalf("after DeleteGroup: %q, %d", s, v)
	}
	if s, _ := load("h"); string(s) != "h" {
		t.Fatalf("another group's state after DeleteGroup: %q", s)
	}
}

// testGroupStateSize: states up to MaxGroupStateBytes are stored byte for
// byte; a larger one is refused with ErrGroupStateTooLarge and changes
// nothing.
func testGroupStateSize(t *testing.T, c catalog.Catalog) {
	big := bytes.Repeat([]byte{0, 1, 0xff, 'x'}, catalog.MaxGroupStateBytes/4)
	v, err := c.SaveGroupState(ctx(t), "g", 0, big)
	noErr(t, err, "SaveGroupState at the bound")
	s, got, err := c.LoadGroupState(ctx(t), "g")
	noErr(t, err, "LoadGroupState")
	if got != v || !bytes.Equal(s, big) {
		t.Fatalf("state at the bound read back as %d bytes version %d, want %d bytes version %d", len(s), got, len(big), v)
	}
	_, err = c.SaveGroupState(ctx(t), "g", v, append(big, 0))
	wantErr(t, err, catalog.ErrGroupStateTooLarge, "SaveGroupState above the bound")
	if _, got, _ := c.LoadGroupState(ctx(t), "g"); got != v {
		t.Fatalf("a refused save changed the version: %d, want %d", got, v)
	}
}

// testGroupStateRace: of several writers expecting the same version,
// exactly one wins.
func testGroupStateRace(t *testing.T, c catalog.Catalog) {
	v, err := c.SaveGroupState(ctx(t), "g", 0, []byte("base"))
	noErr(t, err, "SaveGroupState")
	const writers = 6
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won      int
		failures []error
	)
	for i := range writers {
		wg.Go(func() {
			_, err := c.SaveGroupState(ctx(t), "g", v, []byte{byte(i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, catalog.ErrGroupStateConflict):
				failures = append(failures, err)
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 || won != 1 {
		t.Fatalf("%d writers won (want 1), unexpected errors %v", won, failures)
	}
}
