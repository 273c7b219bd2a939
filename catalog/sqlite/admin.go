package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/floebroker/floe/catalog"
)

// AllocateProducerID returns a new producer id with epoch 0.
func (c *Catalog) AllocateProducerID(ctx context.Context) (int64, int16, error) {
	var id int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO producers (epoch, updated) VALUES (0, ?1) RETURNING producer_id`,
			micros(c.now())).Scan(&id)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("catalog: allocate producer id: %w", err)
	}
	return id, 0, nil
}

// BumpProducerEpoch fences epoch and returns the next one, by
// catalog.NextProducerEpoch's rule.
func (c *Catalog) BumpProducerEpoch(ctx context.Context, id int64, epoch int16) (int16, error) {
	var next int16
	err := c.write(ctx, func(tx *sql.Tx) error {
		var cur int16
		err := tx.QueryRowContext(ctx, `SELECT epoch FROM producers WHERE producer_id = ?1`, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return catalog.ErrUnknownProducerID
		}
		if err != nil {
			return err
		}
		next, err = catalog.NextProducerEpoch(cur, epoch)
		if err != nil || next == cur {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE producers SET epoch = ?2, updated = ?3 WHERE producer_id = ?1`, id, next, micros(c.now()))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: bump epoch of producer %d: %w", id, err)
	}
	return next, nil
}

// CommitOffsets upserts the group's offsets of existing partitions in
// one transaction (a later entry for the same partition wins) and
// returns the others. The catalog has one writer, so the check that a
// partition exists and the write are atomic with DeleteTopic.
func (c *Catalog) CommitOffsets(ctx context.Context, group string, offsets []catalog.GroupOffset) ([]catalog.GroupPartition, error) {
	if len(offsets) == 0 {
		return nil, nil
	}
	now := micros(c.now())
	stored := make(map[catalog.GroupPartition]bool, len(offsets))
	err := c.write(ctx, func(tx *sql.Tx) error {
		clear(stored)
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO group_offsets
    (group_id, topic, partition, committed_offset, leader_epoch, metadata, commit_time)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
WHERE EXISTS (SELECT 1 FROM topics WHERE name = ?2 AND ?3 >= 0 AND ?3 < partitions)
ON CONFLICT (group_id, topic, partition) DO UPDATE SET
    committed_offset = excluded.committed_offset, leader_epoch = excluded.leader_epoch,
    metadata = excluded.metadata, commit_time = excluded.commit_time`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, o := range offsets {
			ct := now
			if !o.CommitTime.IsZero() {
				ct = micros(o.CommitTime)
			}
			res, err := stmt.ExecContext(ctx, group, o.Topic, o.Partition, o.Offset, o.LeaderEpoch, o.Metadata, ct)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n > 0 {
				stored[catalog.GroupPartition{Topic: o.Topic, Partition: o.Partition}] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: commit offsets of group %q: %w", group, err)
	}
	return catalog.RefusedOffsets(offsets, stored), nil
}

// FetchOffsets returns the group's offsets for parts (all when nil), by
// topic and partition.
func (c *Catalog) FetchOffsets(ctx context.Context, group string, parts []catalog.GroupPartition) ([]catalog.GroupOffset, error) {
	const cols = `SELECT topic, partition, committed_offset, leader_epoch, metadata, commit_time FROM group_offsets `
	var out []catalog.GroupOffset
	scan := func(row scanner) error {
		var o catalog.GroupOffset
		var ct int64
		if err := row.Scan(&o.Topic, &o.Partition, &o.Offset, &o.LeaderEpoch, &o.Metadata, &ct); err != nil {
			return err
		}
		o.CommitTime = fromMicros(ct)
		out = append(out, o)
		return nil
	}
	err := c.read(ctx, func(tx *sql.Tx) error {
		if parts != nil {
			return eachRow(ctx, tx, cols+`WHERE group_id = ?1 AND topic = ?2 AND partition = ?3`, sortedParts(parts),
				func(p catalog.GroupPartition) []any { return []any{group, p.Topic, p.Partition} },
				func(_ catalog.GroupPartition, row scanner) error { return scan(row) })
		}
		rows, err := tx.QueryContext(ctx, cols+`WHERE group_id = ?1 ORDER BY topic, partition`, group)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: fetch offsets of group %q: %w", group, err)
	}
	return out, nil
}

// sortedParts returns parts deduplicated in (topic, partition) order.
func sortedParts(parts []catalog.GroupPartition) []catalog.GroupPartition {
	seen := make(map[catalog.GroupPartition]bool, len(parts))
	out := make([]catalog.GroupPartition, 0, len(parts))
	for _, p := range parts {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b catalog.GroupPartition) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return cmp.Compare(a.Partition, b.Partition)
	})
	return out
}

// DeleteOffsets removes the group's offsets for parts.
func (c *Catalog) DeleteOffsets(ctx context.Context, group string, parts []catalog.GroupPartition) error {
	err := c.write(ctx, func(tx *sql.Tx) error {
		return execEach(ctx, tx, `DELETE FROM group_offsets WHERE group_id = ?1 AND topic = ?2 AND partition = ?3`, parts,
			func(p catalog.GroupPartition) []any { return []any{group, p.Topic, p.Partition} })
	})
	if err != nil {
		return fmt.Errorf("catalog: delete offsets of group %q: %w", group, err)
	}
	return nil
}

// ExpireOffsets deletes the offsets of groups without members (no
// group_states row) whose latest commit, and the time they lost their last
// member (group_emptied), are older than before. Times older than before
// no longer matter and are deleted.
func (c *Catalog) ExpireOffsets(ctx context.Context, before time.Time) (int, error) {
	at := micros(before)
	// The groups are listed on a reader, outside the write lock, which
	// every produce's commit takes: a scan of every group's offsets held
	// it for as long as the scan took. Each group is then deleted under
	// the lock in small batches, checked again there, so an offset
	// committed (or a member joined) since the listing keeps its group.
	var groups []string
	err := c.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT o.group_id FROM group_offsets o
WHERE NOT EXISTS (SELECT 1 FROM group_states s WHERE s.group_id = o.group_id)
  AND NOT EXISTS (SELECT 1 FROM group_emptied m WHERE m.group_id = o.group_id AND m.since >= ?1)
GROUP BY o.group_id HAVING max(o.commit_time) < ?1`, at)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g string
			if err := rows.Scan(&g); err != nil {
				return err
			}
			groups = append(groups, g)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: expire offsets: list groups: %w", err)
	}
	n := 0
	for from := 0; from < len(groups); from += expireGroupsPerWrite {
		batch := groups[from:min(from+expireGroupsPerWrite, len(groups))]
		err := c.write(ctx, func(tx *sql.Tx) error {
			stmt, err := tx.PrepareContext(ctx, `DELETE FROM group_offsets WHERE group_id = ?1 AND commit_time < ?2
  AND NOT EXISTS (SELECT 1 FROM group_states s WHERE s.group_id = ?1)
  AND NOT EXISTS (SELECT 1 FROM group_emptied m WHERE m.group_id = ?1 AND m.since >= ?2)
  AND NOT EXISTS (SELECT 1 FROM group_offsets r WHERE r.group_id = ?1 AND r.commit_time >= ?2)`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for _, g := range batch {
				res, err := stmt.ExecContext(ctx, g, at)
				if err != nil {
					return err
				}
				if k, err := res.RowsAffected(); err == nil && k > 0 {
					n++
				}
			}
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("catalog: expire offsets of %d groups from %q: %w", len(batch), batch[0], err)
		}
	}
	err = c.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM group_emptied WHERE since < ?1`, at)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("catalog: expire offsets: %w", err)
	}
	return n, nil
}

// expireGroupsPerWrite is how many groups one write transaction of
// ExpireOffsets deletes: each holds the write lock, which produces wait
// for, for a few milliseconds at most.
const expireGroupsPerWrite = 500

// DeleteGroup removes every offset of the group and its coordinator state.
func (c *Catalog) DeleteGroup(ctx context.Context, group string) error {
	err := c.write(ctx, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM group_offsets WHERE group_id = ?1`,
			`DELETE FROM group_states WHERE group_id = ?1`,
			`DELETE FROM group_emptied WHERE group_id = ?1`,
		} {
			if _, err := tx.ExecContext(ctx, q, group); err != nil {
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
	err := c.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT group_id FROM group_offsets UNION SELECT group_id FROM group_states ORDER BY group_id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g string
			if err := rows.Scan(&g); err != nil {
				return err
			}
			groups = append(groups, g)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("catalog: list groups: %w", err)
	}
	return groups, nil
}

func bumpGeneration(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `UPDATE membership SET generation = generation + 1`)
	return err
}

// Agent heartbeats are stamped and compared with c.now, as every other
// time here: the processes sharing the file run on one host, so on one
// clock (catalog/postgres uses the server's clock instead of the agents').

// RegisterAgent registers a (an agent with a known ID keeps its node id,
// also the one agent_ids kept since it left) and bumps the membership
// generation.
func (c *Catalog) RegisterAgent(ctx context.Context, a catalog.Agent, ttl time.Duration) (catalog.Agent, error) {
	if a.ID == "" {
		return catalog.Agent{}, fmt.Errorf("catalog: register agent: empty id")
	}
	if ttl <= 0 {
		return catalog.Agent{}, fmt.Errorf("catalog: register agent %q: ttl %v is not positive", a.ID, ttl)
	}
	now := c.now().UTC().Truncate(time.Microsecond)
	if a.Started.IsZero() {
		a.Started = now
	}
	a.Started = a.Started.UTC().Truncate(time.Microsecond)
	a.Heartbeat = now
	err := c.write(ctx, func(tx *sql.Tx) error {
		// The upsert takes the row over only from the same incarnation or
		// a lapsed one; otherwise it returns nothing.
		// A NULL node_id is a new one (AUTOINCREMENT: never one used
		// before).
		err := tx.QueryRowContext(ctx, `INSERT INTO agents (node_id, id, addr, zone, started, heartbeat)
VALUES ((SELECT node_id FROM agent_ids WHERE id = ?1), ?1, ?2, ?3, ?4, ?5)
ON CONFLICT (id) DO UPDATE SET addr = excluded.addr, zone = excluded.zone,
    started = excluded.started, heartbeat = excluded.heartbeat
    WHERE agents.started = excluded.started OR agents.heartbeat <= ?6
RETURNING node_id`, a.ID, a.Addr, a.Zone, micros(a.Started), micros(now), micros(now.Add(-ttl))).Scan(&a.NodeID)
		if errors.Is(err, sql.ErrNoRows) {
			holder := catalog.Agent{ID: a.ID}
			var started, heartbeat int64
			if err := tx.QueryRowContext(ctx, `SELECT node_id, addr, started, heartbeat FROM agents WHERE id = ?1`, a.ID).
				Scan(&holder.NodeID, &holder.Addr, &started, &heartbeat); err != nil {
				return err
			}
			holder.Started, holder.Heartbeat = fromMicros(started), fromMicros(heartbeat)
			return catalog.AgentIDInUse(holder, now)
		}
		if err != nil {
			return err
		}
		return bumpGeneration(ctx, tx)
	})
	if err != nil {
		return catalog.Agent{}, fmt.Errorf("catalog: register agent %q: %w", a.ID, err)
	}
	return a, nil
}

// HeartbeatAgent refreshes the heartbeat of the agent's incarnation;
// ErrUnknownAgent if it is not registered or another incarnation took its
// ID over.
func (c *Catalog) HeartbeatAgent(ctx context.Context, nodeID int32, started time.Time) error {
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE agents SET heartbeat = ?2 WHERE node_id = ?1 AND started = ?3`,
			nodeID, micros(c.now()), micros(started))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errors.Join(err, catalog.ErrUnknownAgent)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: heartbeat agent %d: %w", nodeID, err)
	}
	return nil
}

// DeregisterAgent removes the agent's incarnation, keeping its ID's node id
// in agent_ids, and bumps the generation; removing an unregistered agent,
// or one whose ID another incarnation took over, succeeds and changes
// nothing.
func (c *Catalog) DeregisterAgent(ctx context.Context, nodeID int32, started time.Time) error {
	now := micros(c.now())
	err := c.write(ctx, func(tx *sql.Tx) error {
		if err := keepAgentIDs(ctx, tx, now, `node_id = ?2 AND started = ?3`, nodeID, micros(started)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM agents WHERE node_id = ?1 AND started = ?2`, nodeID, micros(started))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return bumpGeneration(ctx, tx)
		}
		return nil
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
	err := c.read(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT generation FROM membership`).Scan(&gen); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT node_id, id, addr, zone, started, heartbeat FROM agents
WHERE heartbeat > ?1 ORDER BY node_id`, micros(c.now().Add(-ttl)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a catalog.Agent
			var started, hb int64
			if err := rows.Scan(&a.NodeID, &a.ID, &a.Addr, &a.Zone, &started, &hb); err != nil {
				return err
			}
			a.Started, a.Heartbeat = fromMicros(started), fromMicros(hb)
			agents = append(agents, a)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: live agents: %w", err)
	}
	return agents, gen, nil
}

// keepAgentIDs records the node ids of the agents rows matching where
// (over ?2 and on, args) in agent_ids, departed at now, for their IDs'
// next registrations; the caller deletes the rows.
func keepAgentIDs(ctx context.Context, tx *sql.Tx, now int64, where string, args ...any) error {
	// where is never empty: without a WHERE, SQLite's parser would take
	// the ON of ON CONFLICT for a join's.
	_, err := tx.ExecContext(ctx, `INSERT INTO agent_ids (id, node_id, departed)
SELECT id, node_id, ?1 FROM agents WHERE `+where+`
ON CONFLICT (id) DO UPDATE SET node_id = excluded.node_id, departed = excluded.departed`, append([]any{now}, args...)...)
	return err
}

// ExpireAgents removes agents whose heartbeat is older than ttl, keeping
// their IDs' node ids in agent_ids, and bumps the generation if any went;
// it forgets the node ids of IDs that left more than
// catalog.AgentIDRetention ago.
func (c *Catalog) ExpireAgents(ctx context.Context, ttl time.Duration) (int, error) {
	var n int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		now := c.now()
		cutoff := micros(now.Add(-ttl))
		if _, err := tx.ExecContext(ctx, `DELETE FROM agent_ids WHERE departed <= ?1`, micros(now.Add(-catalog.AgentIDRetention))); err != nil {
			return err
		}
		if err := keepAgentIDs(ctx, tx, micros(now), `heartbeat <= ?2`, cutoff); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM agents WHERE heartbeat <= ?1`, cutoff)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return bumpGeneration(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: expire agents: %w", err)
	}
	return int(n), nil
}

// AcquireLease takes the lease if it is free, expired or already held by
// holder (which renews it).
func (c *Catalog) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := c.now()
	var got bool
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO leases (name, holder, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
WHERE leases.expires <= ?4 OR leases.holder = excluded.holder`, name, holder, micros(now.Add(ttl)), micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		got = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("catalog: acquire lease %q: %w", name, err)
	}
	return got, nil
}

// RenewLease extends a lease holder still holds; false if it expired or
// another holder has it.
func (c *Catalog) RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := c.now()
	var got bool
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE leases SET expires = ?3 WHERE name = ?1 AND holder = ?2 AND expires > ?4`,
			name, holder, micros(now.Add(ttl)), micros(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		got = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("catalog: renew lease %q: %w", name, err)
	}
	return got, nil
}

// ReleaseLease gives the lease up if holder holds it.
func (c *Catalog) ReleaseLease(ctx context.Context, name, holder string) error {
	err := c.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ?1 AND holder = ?2`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: release lease %q: %w", name, err)
	}
	return nil
}
