package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// TestAgentIDForgottenAfterRetention: an agent ID that left keeps its node
// id for catalog.AgentIDRetention, and the next ExpireAgents after that
// forgets it, so that random agent ids do not pile up; the ID then
// registers under a new node id.
func TestAgentIDForgottenAfterRetention(t *testing.T) {
	c := openTest(t, freshSchema(t), catalog.Options{})
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
	if _, err := c.pool.Exec(ctx, `UPDATE agent_ids SET departed = departed - CASE id WHEN 'old' THEN $1::interval ELSE $2::interval END`,
		catalog.AgentIDRetention+time.Minute, catalog.AgentIDRetention-time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, err := c.ExpireAgents(ctx, time.Minute); err != nil || n != 0 {
		t.Fatalf("ExpireAgents = %d, %v; want no agent expired", n, err)
	}
	var rows int
	if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM agent_ids`).Scan(&rows); err != nil {
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

// TestAgentIDsMigrationKeepsRegistered: the migration that brings
// agent_ids records the agents registered when it runs, because agents of
// the previous version, still running during the roll, delete their rows
// without recording them: the replacement of each gets its node id back.
func TestAgentIDsMigrationKeepsRegistered(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	version := 0
	for i, m := range migrations {
		if strings.Contains(m.Name, "_agent_ids") {
			version = i
		}
	}
	// The schema before agent_ids, as the previous version left it.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, versionTableSQL); err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:version] {
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_version (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
			t.Fatal(err)
		}
	}
	var node int32
	if err := conn.QueryRow(ctx, `INSERT INTO agents (id, addr, zone, started, heartbeat) VALUES ('pod-0', 'h:1', '', now(), now())
RETURNING node_id`).Scan(&node); err != nil {
		t.Fatal(err)
	}

	c := openTest(t, url, catalog.Options{}) // migrates
	// The previous version's agent leaves as it did: its row deleted.
	if _, err := conn.Exec(ctx, `DELETE FROM agents WHERE id = 'pod-0'`); err != nil {
		t.Fatal(err)
	}
	a, err := c.RegisterAgent(ctx, catalog.Agent{ID: "pod-0", Addr: "h:2"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeID != node {
		t.Fatalf("the replacement of an agent registered before the migration has node id %d, had %d", a.NodeID, node)
	}
}

// TestAgentHeartbeatsOnServerClock: agent heartbeats are stamped and
// compared with PostgreSQL's clock, not the agents' (Options.Now). An
// agent whose clock is 20 s fast expires no agent that heartbeats on time,
// and one an hour fast that stops heartbeating is dead a TTL later, not an
// hour later.
func TestAgentHeartbeatsOnServerClock(t *testing.T) {
	url := freshSchema(t)
	ctx := context.Background()
	fast := func(d time.Duration) catalog.Options {
		return catalog.Options{Now: func() time.Time { return time.Now().Add(d) }}
	}
	right := openTest(t, url, catalog.Options{})
	secondsFast := openTest(t, url, fast(20*time.Second))
	hourFast := openTest(t, url, fast(time.Hour))
	const ttl = 2 * time.Second

	crashed, err := hourFast.RegisterAgent(ctx, catalog.Agent{ID: "hour-fast", Addr: "h:1"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := hourFast.HeartbeatAgent(ctx, crashed.NodeID, crashed.Started); err != nil {
		t.Fatal(err)
	}
	ok, err := right.RegisterAgent(ctx, catalog.Agent{ID: "on-time", Addr: "h:2"}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := secondsFast.ExpireAgents(ctx, ttl); err != nil || n != 0 {
		t.Fatalf("an agent 20 s fast expired %d agents (%v) that heartbeat on time", n, err)
	}
	if live, _, err := secondsFast.LiveAgents(ctx, ttl); err != nil || len(live) != 2 {
		t.Fatalf("an agent 20 s fast sees live %+v (%v), want both", live, err)
	}

	// The hour-fast agent crashed; the other heartbeats on.
	time.Sleep(ttl + 500*time.Millisecond)
	if err := right.HeartbeatAgent(ctx, ok.NodeID, ok.Started); err != nil {
		t.Fatal(err)
	}
	live, _, err := right.LiveAgents(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 1 || live[0].NodeID != ok.NodeID {
		t.Fatalf("live agents a TTL after the hour-fast one stopped: %+v, want only node %d", live, ok.NodeID)
	}
	if n, err := right.ExpireAgents(ctx, ttl); err != nil || n != 1 {
		t.Fatalf("ExpireAgents = %d, %v; want the hour-fast agent expired", n, err)
	}
	if err := hourFast.HeartbeatAgent(ctx, crashed.NodeID, crashed.Started); !errors.Is(err, catalog.ErrUnknownAgent) {
		t.Fatalf("heartbeat of the expired agent: %v, want ErrUnknownAgent", err)
	}
}
