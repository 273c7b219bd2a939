package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// TestAgentIDForgottenAfterRetention: an agent ID that left keeps its node
// id for catalog.AgentIDRetention, and the next ExpireAgents after that
// forgets it, so that random agent ids do not pile up; the ID then
// registers under a new node id.
func TestAgentIDForgottenAfterRetention(t *testing.T) {
	c := openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	ctx := context.Background()
	nodes := map[string]int32{}
	for _, id := range []string{"old", "recent"} {
		a, err := c.RegisterAgent(ctx, catalog.Agent{ID: id, Addr: "h:1"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.DeregisterAgent(ctx, a.NodeID, a.Started); err != nil {
			t.Fatal(err)
		}
		nodes[id] = a.NodeID
	}
	if _, err := c.w.ExecContext(ctx, `UPDATE agent_ids SET departed = departed - CASE id WHEN 'old' THEN ?1 ELSE ?2 END`,
		(catalog.AgentIDRetention + time.Minute).Microseconds(), (catalog.AgentIDRetention - time.Hour).Microseconds()); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ExpireAgents(ctx, time.Minute); err != nil || n != 0 {
		t.Fatalf("ExpireAgents = %d, %v; want no agent expired", n, err)
	}
	var rows int
	if err := c.w.QueryRowContext(ctx, `SELECT count(*) FROM agent_ids`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 1 {
		t.Fatalf("%d agent ids kept after the expiry, want 1 (the recent one's)", rows)
	}
	for id, forgotten := range map[string]bool{"old": true, "recent": false} {
		a, err := c.RegisterAgent(ctx, catalog.Agent{ID: id, Addr: "h:2"}, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if kept := a.NodeID == nodes[id]; kept == forgotten {
			t.Errorf("%s registered again as node %d, had %d (forgotten: %v)", id, a.NodeID, nodes[id], forgotten)
		}
	}
}
