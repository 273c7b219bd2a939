package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/floebroker/floe/catalog"
)

const topicCols = "id, name, partitions, configs, created, config_version"

type scanner interface{ Scan(dest ...any) error }

func scanTopic(row scanner) (catalog.Topic, error) {
	var t catalog.Topic
	var id []byte
	var configs string
	var created int64
	if err := row.Scan(&id, &t.Name, &t.Partitions, &configs, &created, &t.ConfigVersion); err != nil {
		return catalog.Topic{}, err
	}
	var err error
	if t.ID, err = topicID(id); err != nil {
		return catalog.Topic{}, err
	}
	t.Configs = map[string]string{}
	if err := json.Unmarshal([]byte(configs), &t.Configs); err != nil {
		return catalog.Topic{}, fmt.Errorf("stored configs of %q: %w", t.Name, err)
	}
	t.Created = fromMicros(created)
	return t, nil
}

func newTopicID() catalog.TopicID {
	var id catalog.TopicID
	rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

func configsJSON(m map[string]string) string {
	if m == nil {
		m = map[string]string{}
	}
	b, _ := json.Marshal(m) // a map[string]string always marshals
	return string(b)
}

// CreateTopic creates the topic and its partition rows in one transaction.
func (c *Catalog) CreateTopic(ctx context.Context, spec catalog.TopicSpec) (catalog.Topic, error) {
	if err := catalog.ValidateTopicSpec(spec); err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: create topic %q: %w", spec.Name, err)
	}
	var t catalog.Topic
	err := c.write(ctx, func(tx *sql.Tx) error {
		// Writes are serialized, so no create of a colliding name can
		// commit between this check and the insert.
		if norm := catalog.TopicCollisionName(spec.Name); norm != "" {
			var existing string
			err := tx.QueryRowContext(ctx, `SELECT name FROM topics WHERE replace(name, '.', '_') = ?1 ORDER BY name = ?2 DESC, name LIMIT 1`,
				norm, spec.Name).Scan(&existing)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			case existing == spec.Name:
				return catalog.ErrTopicExists
			default:
				return catalog.TopicCollisionError(spec.Name, existing)
			}
		}
		id := newTopicID()
		var err error
		t, err = scanTopic(tx.QueryRowContext(ctx, `INSERT INTO topics (id, name, partitions, configs, created)
VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING RETURNING `+topicCols,
			id[:], spec.Name, spec.Partitions, configsJSON(spec.Configs), micros(c.now())))
		if errors.Is(err, sql.ErrNoRows) {
			return catalog.ErrTopicExists
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `WITH RECURSIVE s(p) AS (SELECT 0 UNION ALL SELECT p + 1 FROM s WHERE p + 1 < ?2)
INSERT INTO partitions (topic_id, partition) SELECT ?1, p FROM s`, id[:], spec.Partitions)
		return err
	})
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: create topic %q: %w", spec.Name, err)
	}
	return t, nil
}

// DeleteTopic removes the topic, its partitions, batch rows, producer
// state and the offsets groups committed for it (as Kafka does, so a topic
// created again under the name is not read from the old one's offsets). Its
// objects stay until garbage collection finds them unreferenced.
func (c *Catalog) DeleteTopic(ctx context.Context, name string, want catalog.TopicID) (catalog.TopicID, error) {
	var deleted catalog.TopicID
	err := c.write(ctx, func(tx *sql.Tx) error {
		var id []byte
		err := tx.QueryRowContext(ctx, `SELECT id FROM topics WHERE name = ?1`, name).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return catalog.ErrUnknownTopic
		}
		if err != nil {
			return err
		}
		if len(id) != len(deleted) {
			return fmt.Errorf("topic id of %d bytes", len(id))
		}
		copy(deleted[:], id)
		if !want.IsZero() && deleted != want {
			return catalog.ErrUnknownTopic
		}
		// The objects whose last rows go are stamped unreferenced, as a
		// swap or trim does: one other topics' rows had shared would
		// otherwise be collected at once, its age being its creation's.
		objs, err := objectIDs(ctx, tx, `SELECT DISTINCT object_id FROM batches WHERE topic_id = ?1`, id)
		if err != nil {
			return err
		}
		for _, q := range []string{
			`DELETE FROM batches WHERE topic_id = ?1`,
			`DELETE FROM producer_state WHERE topic_id = ?1`,
			`DELETE FROM partitions WHERE topic_id = ?1`,
			`DELETE FROM topics WHERE id = ?1`,
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM group_offsets WHERE topic = ?1`, name); err != nil {
			return err
		}
		return markUnreferenced(ctx, tx, objs, micros(c.now()))
	})
	if err != nil {
		return catalog.TopicID{}, fmt.Errorf("catalog: delete topic %q: %w", name, err)
	}
	return deleted, nil
}

func (c *Catalog) topicWhere(ctx context.Context, op, where string, arg any) (catalog.Topic, error) {
	var t catalog.Topic
	err := c.read(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanTopic(tx.QueryRowContext(ctx, `SELECT `+topicCols+` FROM topics WHERE `+where, arg))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: topic %s: %w", op, err)
	}
	return t, nil
}

// Topic returns the topic named name, or ErrUnknownTopic.
func (c *Catalog) Topic(ctx context.Context, name string) (catalog.Topic, error) {
	return c.topicWhere(ctx, fmt.Sprintf("%q", name), `name = ?1`, name)
}

// TopicByID returns the topic with id, or ErrUnknownTopic.
func (c *Catalog) TopicByID(ctx context.Context, id catalog.TopicID) (catalog.Topic, error) {
	return c.topicWhere(ctx, fmt.Sprintf("%x", id[:]), `id = ?1`, id[:])
}

// ListTopics returns every topic by name.
func (c *Catalog) ListTopics(ctx context.Context) ([]catalog.Topic, error) {
	topics, err := c.queryTopics(ctx, `SELECT `+topicCols+` FROM topics ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("catalog: list topics: %w", err)
	}
	return topics, nil
}

// CreatePartitions grows the topic to total partitions.
func (c *Catalog) CreatePartitions(ctx context.Context, name string, total int32) error {
	if err := catalog.ValidatePartitionCount(total); err != nil {
		return fmt.Errorf("catalog: create partitions %q: %w", name, err)
	}
	err := c.write(ctx, func(tx *sql.Tx) error {
		var id []byte
		var cur int32
		err := tx.QueryRowContext(ctx, `SELECT id, partitions FROM topics WHERE name = ?1`, name).Scan(&id, &cur)
		if errors.Is(err, sql.ErrNoRows) {
			return catalog.ErrUnknownTopic
		}
		if err != nil {
			return err
		}
		if total <= cur {
			return fmt.Errorf("%w: topic has %d partitions, cannot grow to %d", catalog.ErrInvalidPartitions, cur, total)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE topics SET partitions = ?2 WHERE id = ?1`, id, total); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `WITH RECURSIVE s(p) AS (SELECT ?2 UNION ALL SELECT p + 1 FROM s WHERE p + 1 < ?3)
INSERT INTO partitions (topic_id, partition) SELECT ?1, p FROM s`, id, cur, total)
		return err
	})
	if err != nil {
		return fmt.Errorf("catalog: create partitions %q: %w", name, err)
	}
	return nil
}

// AlterTopicConfigs applies ops in order.
func (c *Catalog) AlterTopicConfigs(ctx context.Context, name string, ops []catalog.ConfigOp) (catalog.Topic, error) {
	t, err := c.updateConfigs(ctx, name, func(cur map[string]string) (map[string]string, error) {
		return catalog.ApplyConfigOps(cur, ops)
	})
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: alter configs of %q: %w", name, err)
	}
	return t, nil
}

// ReplaceTopicConfigs sets the explicit configs to exactly configs.
func (c *Catalog) ReplaceTopicConfigs(ctx context.Context, name string, configs map[string]string) (catalog.Topic, error) {
	if err := catalog.ValidateConfigs(configs); err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: replace configs of %q: %w", name, err)
	}
	t, err := c.updateConfigs(ctx, name, func(map[string]string) (map[string]string, error) { return configs, nil })
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: replace configs of %q: %w", name, err)
	}
	return t, nil
}

func (c *Catalog) updateConfigs(ctx context.Context, name string, change func(map[string]string) (map[string]string, error)) (catalog.Topic, error) {
	var t catalog.Topic
	err := c.write(ctx, func(tx *sql.Tx) error {
		cur, err := scanTopic(tx.QueryRowContext(ctx, `SELECT `+topicCols+` FROM topics WHERE name = ?1`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return catalog.ErrUnknownTopic
		}
		if err != nil {
			return err
		}
		next, err := change(cur.Configs)
		if err != nil {
			return err
		}
		// The change takes the next number, as in catalog/postgres.
		t, err = scanTopic(tx.QueryRowContext(ctx, `UPDATE topics SET configs = ?2,
config_version = (SELECT id + 1 FROM config_seq) WHERE id = ?1 RETURNING `+topicCols,
			cur.ID[:], configsJSON(next)))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE config_seq SET id = ?1`, t.ConfigVersion)
		return err
	})
	if err == nil {
		c.configHub.Publish(t.ConfigVersion)
	}
	return t, err
}

// TopicConfigsSince returns the topics whose configs changed after change
// number after, and the largest number among them (after if none), in one
// snapshot. Writes are serialized, so changes commit in the order of their
// numbers.
func (c *Catalog) TopicConfigsSince(ctx context.Context, after int64) ([]catalog.Topic, int64, error) {
	topics, err := c.queryTopics(ctx, `SELECT `+topicCols+` FROM topics WHERE config_version > ?1`, after)
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: topic configs since %d: %w", after, err)
	}
	latest := after
	for _, t := range topics {
		latest = max(latest, t.ConfigVersion)
	}
	return topics, latest, nil
}

// WatchTopicConfigs delivers the numbers of the topic config changes made
// through this Catalog.
func (c *Catalog) WatchTopicConfigs(ctx context.Context) (<-chan int64, error) {
	if err := c.checkOpen(); err != nil {
		return nil, fmt.Errorf("catalog: watch topic configs: %w", err)
	}
	ch, ok := c.configHub.Subscribe(ctx)
	if !ok {
		return nil, fmt.Errorf("catalog: watch topic configs: %w", catalog.ErrClosed)
	}
	return ch, nil
}

// objectIDs runs query, which selects object ids, with args.
func objectIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// queryTopics reads the topics a query of topicCols selects.
func (c *Catalog) queryTopics(ctx context.Context, query string, args ...any) ([]catalog.Topic, error) {
	var topics []catalog.Topic
	err := c.read(ctx, func(tx *sql.Tx) error {
		topics = nil // a retried read starts over
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanTopic(rows)
			if err != nil {
				return err
			}
			topics = append(topics, t)
		}
		return rows.Err()
	})
	return topics, err
}
