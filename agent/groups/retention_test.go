package groups

import (
	"context"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// hangingLoads is a fake catalog whose LoadGroupState hangs until its ctx
// ends, as a call to a catalog that stopped answering does, after telling
// entered.
type hangingLoads struct {
	*fakeCatalog
	entered chan string
}

func (h hangingLoads) LoadGroupState(ctx context.Context, group string) ([]byte, int64, error) {
	select {
	case h.entered <- group:
	default:
	}
	<-ctx.Done()
	return nil, 0, ctx.Err()
}

// TestStopDuringAdoption: a coordinator stopped while a retention check
// loads a group (adoptGroups) from a catalog that does not answer returns
// at once, as it does when no check runs. Before, Run waited for the
// check, whose load only its own timeout (stateTimeout, 15 s) ended:
// meanwhile the coordinator still took requests, with no timers, and
// waiting joins were not released, and the agent's shutdown waited too.
func TestStopDuringAdoption(t *testing.T) {
	cat := hangingLoads{fakeCatalog: newFakeCatalog(), entered: make(chan string, 1)}
	cat.addTopic("t", 1)
	if _, err := cat.CommitOffsets(context.Background(), "orphan", []catalog.GroupOffset{{Topic: "t", Offset: 1}}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.OffsetsRetention = 2 * time.Second // a check every second
	c := New(cfg, cat, &fakePlacement{}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { <-done })

	select {
	case g := <-cat.entered:
		if g != "orphan" {
			t.Fatalf("loaded group %q, want orphan", g)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no retention check loaded the group")
	}
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(stateTimeout / 2):
		t.Fatalf("Run still running %v after it was stopped, behind the adoption's load", time.Since(stopped))
	}
}
