package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// AllocateProducerID returns a new producer id with epoch 0.
func (c *Catalog) AllocateProducerID(ctx context.Context) (int64, int16, error) {
	var id int64
	var epoch int16
	err := c.retry(ctx, func(ctx context.Context) error {
		return c.pool.QueryRow(ctx, `INSERT INTO producers (producer_id, epoch, updated)
VALUES (nextval('producer_ids'), 0, $1) RETURNING producer_id, epoch`, c.now().UTC()).Scan(&id, &epoch)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("catalog: allocate producer id: %w", err)
	}
	// A new id has no producer state: its first commit need not read any.
	c.states.NewProducer(id, epoch)
	return id, epoch, nil
}

// BumpProducerEpoch fences epoch and returns the next one. epoch may be
// ahead of the stored one (clients bump locally, KIP-360); a retry of a
// bump whose answer was lost (epoch one below the stored one) returns the
// stored epoch. Older epochs are fenced (ErrInvalidProducerEpoch), unknown
// ids are ErrUnknownProducerID, and an exhausted epoch space is
// ErrInvalidProducerEpoch: allocate a new id then.
func (c *Catalog) BumpProducerEpoch(ctx context.Context, id int64, epoch int16) (int16, error) {
	var next int16
	err := c.tx(ctx, func(tx pgx.Tx) error {
		var cur int16
		err := tx.QueryRow(ctx, `SELECT epoch FROM producers WHERE producer_id = $1 FOR UPDATE`, id).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return catalog.ErrUnknownProducerID
		}
		if err != nil {
			return err
		}
		next, err = catalog.NextProducerEpoch(cur, epoch)
		if err != nil || next == cur {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE producers SET epoch = $2, updated = $3 WHERE producer_id = $1`, id, next, c.now().UTC())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: bump epoch of producer %d: %w", id, err)
	}
	return next, nil
}

// CommitOffsets upserts the group's offsets of existing partitions in
// one statement and returns the others. The statement locks the rows of
// the named topics FOR KEY SHARE before it joins them: DeleteTopic locks
// its topic's row FOR UPDATE, so a delete either waits for the commit to
// end (and then removes the offsets it stored) or the commit waits for
// the delete, finds the row gone (READ COMMITTED re-reads a locked row)
// and stores nothing for the topic. Commits do not block one another on
// these locks. (A transaction-scoped advisory lock writes no tuple but
// needs a second statement to see the delete: it measured slower.)
func (c *Catalog) CommitOffsets(ctx context.Context, group string, offsets []catalog.GroupOffset) ([]catalog.GroupPartition, error) {
	if len(offsets) == 0 {
		return nil, nil
	}
	n := len(offsets)
	topics, parts, offs, epochs := make([]string, 0, n), make([]int32, 0, n), make([]int64, 0, n), make([]int32, 0, n)
	metas, times := make([]string, 0, n), make([]time.Time, 0, n)
	now := c.now().UTC()
	// A later entry for the same partition wins, as if applied in order;
	// one INSERT … ON CONFLICT cannot touch a row twice.
	last := make(map[catalog.GroupPartition]int, n)
	for i, o := range offsets {
		last[catalog.GroupPartition{Topic: o.Topic, Partition: o.Partition}] = i
	}
	for i, o := range offsets {
		if last[catalog.GroupPartition{Topic: o.Topic, Partition: o.Partition}] != i || !storable(o.Topic) {
			continue // a name PostgreSQL cannot hold is no topic's: refused below
		}
		ct := o.CommitTime.UTC()
		if o.CommitTime.IsZero() {
			ct = now
		}
		topics, parts, offs = append(topics, o.Topic), append(parts, o.Partition), append(offs, o.Offset)
		epochs, metas, times = append(epochs, o.LeaderEpoch), append(metas, o.Metadata), append(times, ct)
	}
	stored := make(map[catalog.GroupPartition]bool, len(topics))
	err := c.retry(ctx, func(ctx context.Context) error {
		clear(stored)
		rows, err := c.pool.Query(ctx, `WITH t AS (
    SELECT name, partitions FROM topics WHERE name = ANY($2::text[]) ORDER BY name FOR KEY SHARE)
INSERT INTO group_offsets
    (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_time)
SELECT $1, u.t, u.p, u.o, u.e, u.m, u.ct
FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int4[], $6::text[], $7::timestamptz[]) AS u(t, p, o, e, m, ct)
JOIN t ON t.name = u.t AND u.p >= 0 AND u.p < t.partitions
ON CONFLICT (group_id, topic, partition) DO UPDATE SET
    committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
    metadata = excluded.metadata, commit_time = excluded.commit_time
RETURNING topic, partition`,
			group, topics, parts, offs, epochs, metas, times)
		if err != nil {
			return err
		}
		var gp catalog.GroupPartition
		_, err = pgx.ForEachRow(rows, []any{&gp.Topic, &gp.Partition}, func() error {
			stored[gp] = true
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: commit offsets of group %q: %w", group, err)
	}
	return catalog.RefusedOffsets(offsets, stored), nil
}

func groupParts(parts []catalog.GroupPartition) ([]string, []int32) {
	topics, ps := make([]string, len(parts)), make([]int32, len(parts))
	for i, p := range parts {
		topics[i], ps[i] = p.Topic, p.Partition
	}
	return topics, ps
}

// FetchOffsets returns the group's offsets for parts (all when nil), by
// topic and partition.
func (c *Catalog) FetchOffsets(ctx context.Context, group string, parts []catalog.GroupPartition) ([]catalog.GroupOffset, error) {
	const cols = `SELECT g.topic, g.partition, g.committed_offset, g.leader_epoch, g.metadata, g.commit_time FROM group_offsets g `
	var out []catalog.GroupOffset
	err := c.retry(ctx, func(ctx context.Context) error {
		var rows pgx.Rows
		var err error
		if parts == nil {
			rows, err = c.pool.Query(ctx, cols+`WHERE g.group_id = $1 ORDER BY g.topic, g.partition`, group)
		} else {
			topics, ps := groupParts(parts)
			rows, err = c.pool.Query(ctx, cols+`JOIN unnest($2::text[], $3::int4[]) AS u(t, p) ON g.topic = u.t AND g.partition = u.p
WHERE g.group_id = $1 ORDER BY g.topic, g.partition`, group, topics, ps)
		}
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.GroupOffset, error) {
			var o catalog.GroupOffset
			err := r.Scan(&o.Topic, &o.Partition, &o.Offset, &o.LeaderEpoch, &o.Metadata, &o.CommitTime)
			return o, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: fetch offsets of group %q: %w", group, err)
	}
	return out, nil
}

// ExpireOffsets deletes the offsets of groups without members (no
// group_states row) whose latest commit, and the time they lost their last
// member (group_emptied), are older than before.
//
// A backlog (a fleet that ran without retention, or whose checks failed
// for a while) can hold millions of expired offsets, more than one
// statement deletes within the statement timeout: a check deleting them
// all at once would fail every time, and the backlog would only grow. So
// one statement lists the groups to expire (sqlExpireCandidates, at most
// expireCandidates of them, the next ones in a further round) and others
// delete them about expireBatchRows offsets at a time (sqlExpireGroups).
// Each delete re-checks its groups in a snapshot of its own, so a group
// that got members, lost them or committed since the listing keeps its
// offsets, and re-checks each row's commit time after any row lock it
// waited for, so a commit racing the delete keeps its offset. Times groups
// lost their members before before no longer matter and are deleted last
// (a group that loses its members meanwhile keeps its newer time: the
// delete re-checks it too).
func (c *Catalog) ExpireOffsets(ctx context.Context, before time.Time) (int, error) {
	before = before.UTC()
	expired := 0
	for {
		var groups []string
		var rows []int64
		err := c.retry(ctx, func(ctx context.Context) error {
			groups, rows = groups[:0], rows[:0]
			r, err := c.pool.Query(ctx, sqlExpireCandidates, before, expireCandidates)
			if err != nil {
				return err
			}
			var g string
			var n int64
			_, err = pgx.ForEachRow(r, []any{&g, &n}, func() error {
				groups, rows = append(groups, g), append(rows, n)
				return nil
			})
			return err
		})
		if err != nil {
			return expired, fmt.Errorf("catalog: expire offsets: list groups: %w", err)
		}
		round := 0
		for from := 0; from < len(groups); {
			to, n := from+1, rows[from]
			for to < len(groups) && n+rows[to] <= expireBatchRows {
				n += rows[to]
				to++
			}
			var deleted int
			err := c.retry(ctx, func(ctx context.Context) error {
				return c.pool.QueryRow(ctx, sqlExpireGroups, before, groups[from:to]).Scan(&deleted)
			})
			if err != nil {
				return expired, fmt.Errorf("catalog: expire offsets of %d groups from %q: %w", to-from, groups[from], err)
			}
			round += deleted
			from = to
		}
		expired += round
		if len(groups) < expireCandidates || round == 0 {
			break
		}
	}
	err := c.retry(ctx, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, `DELETE FROM group_emptied WHERE since < $1`, before)
		return err
	})
	if err != nil {
		return expired, fmt.Errorf("catalog: expire offsets: %w", err)
	}
	return expired, nil
}

// ExpireOffsets' bounds: groups listed per round, and offsets per delete
// (a group's offsets are deleted together, however many).
const (
	expireCandidates = 100_000
	expireBatchRows  = 5_000
)

// sqlExpireCandidates lists the groups ExpireOffsets deletes, with how many
// offsets each has: $1 is the cut-off, $2 the most to list.
const sqlExpireCandidates = `SELECT o.group_id, count(*) FROM group_offsets o
WHERE NOT EXISTS (SELECT 1 FROM group_states s WHERE s.group_id = o.group_id)
  AND NOT EXISTS (SELECT 1 FROM group_emptied m WHERE m.group_id = o.group_id AND m.since >= $1)
GROUP BY o.group_id HAVING max(o.commit_time) < $1
LIMIT $2`

// sqlExpireGroups deletes the offsets of the groups $2 that still qualify
// (see sqlExpireCandidates) for the cut-off $1, and returns how many groups
// it deleted offsets of.
const sqlExpireGroups = `WITH e AS (
    SELECT u.group_id FROM unnest($2::text[]) AS u(group_id)
    WHERE NOT EXISTS (SELECT 1 FROM group_states s WHERE s.group_id = u.group_id)
      AND NOT EXISTS (SELECT 1 FROM group_emptied m WHERE m.group_id = u.group_id AND m.since >= $1)
      AND NOT EXISTS (SELECT 1 FROM group_offsets r WHERE r.group_id = u.group_id AND r.commit_time >= $1)
), d AS (
    DELETE FROM group_offsets g USING e
    WHERE g.group_id = e.group_id AND g.commit_time < $1
    RETURNING g.group_id
)
SELECT count(DISTINCT group_id) FROM d`

// DeleteOffsets removes the group's offsets for parts.
func (c *Catalog) DeleteOffsets(ctx context.Context, group string, parts []catalog.GroupPartition) error {
	topics, ps := groupParts(parts)
	err := c.retry(ctx, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, `DELETE FROM group_offsets g USING unnest($2::text[], $3::int4[]) AS u(t, p)
WHERE g.group_id = $1 AND g.topic = u.t AND g.partition = u.p`, group, topics, ps)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: delete offsets of group %q: %w", group, err)
	}
	return nil
}

// DeleteGroup removes every offset of the group and its coordinator state.
func (c *Catalog) DeleteGroup(ctx context.Context, group string) error {
	err := c.tx(ctx, func(tx pgx.Tx) error {
		for _, q := range []string{
			`DELETE FROM group_offsets WHERE group_id = $1`,
			`DELETE FROM group_states WHERE group_id = $1`,
			`DELETE FROM group_emptied WHERE group_id = $1`,
		} {
			if _, err := tx.Exec(ctx, q, group); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: delete group %q: %w", group, err)
	}
	return nil
}

// ListGroups returns the groups with committed offsets or stored
// coordinator state, sorted.
func (c *Catalog) ListGroups(ctx context.Context) ([]string, error) {
	var groups []string
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, `SELECT group_id FROM group_offsets UNION SELECT group_id FROM group_states ORDER BY group_id`)
		if err != nil {
			return err
		}
		groups, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: list groups: %w", err)
	}
	return groups, nil
}

// Agent heartbeats are stamped and compared with the server's clock,
// now() (the start of the statement's transaction, after the call
// started), never with the agents' (Options.Now). Stamped and compared
// with the agents' own clocks, one clock off by more than a heartbeat
// interval hurt the whole fleet: 20 s fast, its agent expired every other
// agent each round; an hour fast, its agent stayed live for an hour after
// it crashed.

// RegisterAgent registers a (or re-registers an agent with the same ID,
// keeping its node id, or the one agent_ids kept since it left) and bumps
// the membership generation.
func (c *Catalog) RegisterAgent(ctx context.Context, a catalog.Agent, ttl time.Duration) (catalog.Agent, error) {
	if a.ID == "" {
		return catalog.Agent{}, fmt.Errorf("catalog: register agent: empty id")
	}
	if ttl <= 0 {
		return catalog.Agent{}, fmt.Errorf("catalog: register agent %q: ttl %v is not positive", a.ID, ttl)
	}
	if a.Started.IsZero() {
		a.Started = c.now() // it only tells incarnations apart
	}
	a.Started = a.Started.UTC().Truncate(time.Microsecond)
	var holder catalog.Agent
	err := c.retry(ctx, func(ctx context.Context) error {
		// The upsert takes the row over only from the same incarnation or
		// a lapsed one; otherwise it returns nothing, and a second query
		// names the holder for the error message.
		err := c.pool.QueryRow(ctx, `WITH a AS (
    INSERT INTO agents (node_id, id, addr, zone, started, heartbeat)
    VALUES (coalesce((SELECT node_id FROM agent_ids WHERE id = $1), nextval(pg_get_serial_sequence('agents', 'node_id'))),
        $1, $2, $3, $4, now())
    ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, zone = excluded.zone,
        started = excluded.started, heartbeat = excluded.heartbeat
    WHERE agents.started = excluded.started OR agents.heartbeat <= now() - $5::interval
    RETURNING node_id, started, heartbeat
), g AS (
    UPDATE membership SET generation = generation + 1 WHERE EXISTS (SELECT 1 FROM a)
)
SELECT node_id, started, heartbeat FROM a`, a.ID, a.Addr, a.Zone, a.Started, ttl).Scan(&a.NodeID, &a.Started, &a.Heartbeat)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		holder = catalog.Agent{ID: a.ID}
		var now time.Time
		err = c.pool.QueryRow(ctx, `SELECT node_id, addr, started, heartbeat, now() FROM agents WHERE id = $1`, a.ID).
			Scan(&holder.NodeID, &holder.Addr, &holder.Started, &holder.Heartbeat, &now)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // it left meanwhile
			return fmt.Errorf("%w: its holder just left; try again", catalog.ErrAgentIDInUse)
		case err != nil:
			return err
		}
		return catalog.AgentIDInUse(holder, now)
	})
	if err != nil {
		return catalog.Agent{}, fmt.Errorf("catalog: register agent %q: %w", a.ID, err)
	}
	return a, nil
}

// HeartbeatAgent refreshes the heartbeat of the agent's incarnation;
// ErrUnknownAgent if it is not registered (expired agents must register
// again) or another incarnation took its ID over.
func (c *Catalog) HeartbeatAgent(ctx context.Context, nodeID int32, started time.Time) error {
	var n int64
	err := c.retry(ctx, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, `UPDATE agents SET heartbeat = now() WHERE node_id = $1 AND started = $2`,
			nodeID, started.UTC().Truncate(time.Microsecond))
		n = tag.RowsAffected()
		return err
	})
	if err == nil && n == 0 {
		err = catalog.ErrUnknownAgent
	}
	if err != nil {
		return fmt.Errorf("catalog: heartbeat agent %d: %w", nodeID, err)
	}
	return nil
}

// DeregisterAgent removes the agent's incarnation, keeping its ID's node id
// in agent_ids, and bumps the generation. Removing an agent that is not
// registered, or whose ID another incarnation took over, succeeds and
// changes nothing.
func (c *Catalog) DeregisterAgent(ctx context.Context, nodeID int32, started time.Time) error {
	err := c.retry(ctx, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, `WITH d AS (DELETE FROM agents WHERE node_id = $1 AND started = $2 RETURNING id, node_id),
k AS (`+keepAgentIDsSQL+`)
UPDATE membership SET generation = generation + 1 WHERE EXISTS (SELECT 1 FROM d)`, nodeID, started.UTC().Truncate(time.Microsecond))
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: deregister agent %d: %w", nodeID, err)
	}
	return nil
}

// LiveAgents returns agents with a heartbeat younger than ttl, by node id,
// and the generation, in one snapshot.
func (c *Catalog) LiveAgents(ctx context.Context, ttl time.Duration) ([]catalog.Agent, int64, error) {
	var agents []catalog.Agent
	var gen int64
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, `SELECT m.generation, a.node_id, a.id, a.addr, a.zone, a.started, a.heartbeat
FROM membership m LEFT JOIN agents a ON a.heartbeat > now() - $1::interval
ORDER BY a.node_id`, ttl)
		if err != nil {
			return err
		}
		defer rows.Close()
		agents = agents[:0]
		for rows.Next() {
			var nodeID *int32
			var id, addr, zone *string
			var started, hb *time.Time
			if err := rows.Scan(&gen, &nodeID, &id, &addr, &zone, &started, &hb); err != nil {
				return err
			}
			if nodeID != nil {
				agents = append(agents, catalog.Agent{NodeID: *nodeID, ID: *id, Addr: *addr, Zone: *zone, Started: *started, Heartbeat: *hb})
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: live agents: %w", err)
	}
	return agents, gen, nil
}

// keepAgentIDsSQL records the node ids of the agents rows a statement
// deletes (d: id, node_id) in agent_ids, departed now, for their IDs' next
// registrations.
const keepAgentIDsSQL = `INSERT INTO agent_ids (id, node_id, departed) SELECT id, node_id, now() FROM d
    ON CONFLICT (id) DO UPDATE SET node_id = excluded.node_id, departed = excluded.departed`

// ExpireAgents removes agents whose heartbeat is older than ttl, keeping
// their IDs' node ids in agent_ids, and bumps the generation if any went;
// it forgets the node ids of IDs that left more than
// catalog.AgentIDRetention ago.
func (c *Catalog) ExpireAgents(ctx context.Context, ttl time.Duration) (int, error) {
	var n int
	err := c.retry(ctx, func(ctx context.Context) error {
		// f leaves out the IDs k records: a statement's parts must not
		// modify one row twice.
		return c.pool.QueryRow(ctx, `WITH d AS (DELETE FROM agents WHERE heartbeat <= now() - $1::interval RETURNING id, node_id),
k AS (`+keepAgentIDsSQL+`),
f AS (DELETE FROM agent_ids WHERE departed <= now() - $2::interval AND id NOT IN (SELECT id FROM d)),
g AS (UPDATE membership SET generation = generation + 1 WHERE EXISTS (SELECT 1 FROM d))
SELECT count(*) FROM d`, ttl, catalog.AgentIDRetention).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: expire agents: %w", err)
	}
	return n, nil
}

// AcquireLease takes the lease if it is free, expired or already held by
// holder (which renews it).
func (c *Catalog) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := c.now().UTC()
	var got bool
	err := c.retry(ctx, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, `INSERT INTO leases (name, holder, expires) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
WHERE leases.expires <= $4 OR leases.holder = excluded.holder`, name, holder, now.Add(ttl), now)
		got = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("catalog: acquire lease %q: %w", name, err)
	}
	return got, nil
}

// RenewLease extends a lease holder still holds; false if it expired or
// another holder has it (the holder must stop the work then).
func (c *Catalog) RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := c.now().UTC()
	var got bool
	err := c.retry(ctx, func(ctx context.Context) error {
		tag, err := c.pool.Exec(ctx, `UPDATE leases SET expires = $3 WHERE name = $1 AND holder = $2 AND expires > $4`,
			name, holder, now.Add(ttl), now)
		got = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("catalog: renew lease %q: %w", name, err)
	}
	return got, nil
}

// ReleaseLease gives the lease up if holder holds it.
func (c *Catalog) ReleaseLease(ctx context.Context, name, holder string) error {
	err := c.retry(ctx, func(ctx context.Context) error {
		_, err := c.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: release lease %q: %w", name, err)
	}
	return nil
}
