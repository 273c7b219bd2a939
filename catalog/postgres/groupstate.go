package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

// LoadGroupState returns group's coordinator state and its version (nil, 0
// when none is stored).
func (c *Catalog) LoadGroupState(ctx context.Context, group string) ([]byte, int64, error) {
	var (
		state   []byte
		version int64
	)
	err := c.retry(ctx, func(ctx context.Context) error {
		err := c.pool.QueryRow(ctx, `SELECT state, version FROM group_states WHERE group_id = $1`, group).Scan(&state, &version)
		if errors.Is(err, pgx.ErrNoRows) {
			state, version = nil, 0
			return nil
		}
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: load group state %q: %w", group, err)
	}
	return state, version, nil
}

// SaveGroupState stores group's state if the stored version is expect. One
// statement either way, so a retry after a failure that sent nothing is
// safe (pgconn.SafeToRetry); a lost answer to a write that happened comes
// back as a conflict, which makes the coordinator drop and reload the
// group — the safe side.
func (c *Catalog) SaveGroupState(ctx context.Context, group string, expect int64, state []byte) (int64, error) {
	if len(state) > catalog.MaxGroupStateBytes {
		return 0, fmt.Errorf("catalog: save group state %q: %d bytes: %w", group, len(state), catalog.ErrGroupStateTooLarge)
	}
	if state == nil {
		state = []byte{} // NOT NULL
	}
	var version int64
	err := c.retry(ctx, func(ctx context.Context) error {
		var row pgx.Row
		if expect == 0 {
			row = c.pool.QueryRow(ctx, `INSERT INTO group_states (group_id, version, state, updated)
VALUES ($1, nextval('group_state_versions'), $2, now())
ON CONFLICT (group_id) DO NOTHING RETURNING version`, group, state)
		} else {
			row = c.pool.QueryRow(ctx, `UPDATE group_states SET version = nextval('group_state_versions'), state = $3, updated = now()
WHERE group_id = $1 AND version = $2 RETURNING version`, group, expect, state)
		}
		err := row.Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return catalog.ErrGroupStateConflict
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("catalog: save group state %q (version %d): %w", group, expect, err)
	}
	return version, nil
}

// DeleteGroupState removes group's state if its version is expect, and
// notes when (group_emptied): the group's offsets age from then on.
func (c *Catalog) DeleteGroupState(ctx context.Context, group string, expect int64) error {
	now := c.now().UTC()
	err := c.retry(ctx, func(ctx context.Context) error {
		// The subquery reads the snapshot before the delete: it sees the
		// row whether or not this statement removes it.
		var deleted int64
		var stored *int64
		err := c.pool.QueryRow(ctx, `WITH d AS (DELETE FROM group_states WHERE group_id = $1 AND version = $2 RETURNING 1),
e AS (
    INSERT INTO group_emptied (group_id, since) SELECT $1, $3 WHERE EXISTS (SELECT 1 FROM d)
    ON CONFLICT (group_id) DO UPDATE SET since = greatest(group_emptied.since, excluded.since)
)
SELECT (SELECT count(*) FROM d), (SELECT version FROM group_states WHERE group_id = $1)`, group, expect, now).Scan(&deleted, &stored)
		if err != nil {
			return err
		}
		if deleted == 0 && (stored != nil || expect != 0) {
			return catalog.ErrGroupStateConflict
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("catalog: delete group state %q (version %d): %w", group, expect, err)
	}
	return nil
}
