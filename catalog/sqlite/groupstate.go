package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/floebroker/floe/catalog"
)

// LoadGroupState returns group's coordinator state and its version (nil, 0
// when none is stored).
func (c *Catalog) LoadGroupState(ctx context.Context, group string) ([]byte, int64, error) {
	var (
		state   []byte
		version int64
	)
	err := c.read(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT state, version FROM group_states WHERE group_id = ?1`, group).Scan(&state, &version)
		if errors.Is(err, sql.ErrNoRows) {
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

// storedVersion is group's stored state version, 0 when none is stored.
func storedVersion(ctx context.Context, tx *sql.Tx, group string) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM group_states WHERE group_id = ?1`, group).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

// SaveGroupState stores group's state if the stored version is expect.
// Writes are serialized, so reading the version and writing in one
// transaction is a compare-and-set.
func (c *Catalog) SaveGroupState(ctx context.Context, group string, expect int64, state []byte) (int64, error) {
	if len(state) > catalog.MaxGroupStateBytes {
		return 0, fmt.Errorf("catalog: save group state %q: %d bytes: %w", group, len(state), catalog.ErrGroupStateTooLarge)
	}
	if state == nil {
		state = []byte{} // NOT NULL
	}
	var version int64
	err := c.write(ctx, func(tx *sql.Tx) error {
		cur, err := storedVersion(ctx, tx, group)
		if err != nil {
			return err
		}
		if cur != expect {
			return catalog.ErrGroupStateConflict
		}
		if err := tx.QueryRowContext(ctx, `UPDATE group_state_versions SET last = last + 1 RETURNING last`).Scan(&version); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO group_states (group_id, version, state, updated) VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (group_id) DO UPDATE SET version = excluded.version, state = excluded.state, updated = excluded.updated`,
			group, version, state, micros(c.now()))
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
	err := c.write(ctx, func(tx *sql.Tx) error {
		cur, err := storedVersion(ctx, tx, group)
		if err != nil {
			return err
		}
		if cur != expect {
			return catalog.ErrGroupStateConflict
		}
		if cur == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM group_states WHERE group_id = ?1`, group); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO group_emptied (group_id, since) VALUES (?1, ?2)
ON CONFLICT (group_id) DO UPDATE SET since = max(since, excluded.since)`, group, micros(c.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: delete group state %q (version %d): %w", group, expect, err)
	}
	return nil
}
