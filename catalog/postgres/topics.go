package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
)

const topicCols = "id, name, partitions, configs, created, config_version"

// newTopicID returns a random (version 4) UUID.
func newTopicID() catalog.TopicID {
	var id catalog.TopicID
	rand.Read(id[:])
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id
}

func scanTopic(row pgx.Row) (catalog.Topic, error) {
	var t catalog.Topic
	var id [16]byte
	var configs map[string]string
	if err := row.Scan(&id, &t.Name, &t.Partitions, &configs, &t.Created, &t.ConfigVersion); err != nil {
		return catalog.Topic{}, err
	}
	t.ID = id
	t.Configs = configs
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	return t, nil
}

// storable reports whether a text column can hold s: PostgreSQL's text
// takes neither NUL nor invalid UTF-8, and a query passing such a
// parameter fails (SQLSTATE 22021) instead of matching nothing. A client
// can send any bytes as a name; one that cannot be stored names no topic.
func storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// CreateTopic creates the topic and its partition rows in one transaction.
func (c *Catalog) CreateTopic(ctx context.Context, spec catalog.TopicSpec) (catalog.Topic, error) {
	if err := catalog.ValidateTopicSpec(spec); err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: create topic %q: %w", spec.Name, err)
	}
	configs := spec.Configs
	if configs == nil {
		configs = map[string]string{}
	}
	created := c.now().UTC().Truncate(time.Microsecond)
	var t catalog.Topic
	err := c.tx(ctx, func(tx pgx.Tx) error {
		if err := checkCollision(ctx, tx, spec.Name); err != nil {
			return err
		}
		id := newTopicID()
		var err error
		t, err = scanTopic(tx.QueryRow(ctx,
			`INSERT INTO topics (id, name, partitions, configs, created) VALUES ($1, $2, $3, $4, $5)
			 ON CONFLICT (name) DO NOTHING RETURNING `+topicCols,
			[16]byte(id), spec.Name, spec.Partitions, configs, created))
		if errors.Is(err, pgx.ErrNoRows) {
			return catalog.ErrTopicExists
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO partitions (topic_id, partition) SELECT $1, generate_series(0, $2 - 1)`,
			[16]byte(id), spec.Partitions)
		return err
	})
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: create topic %q: %w", spec.Name, err)
	}
	c.learnTopic(t)
	return t, nil
}

// checkCollision fails with catalog.TopicCollisionError if name collides
// with an existing topic's (catalog.TopicCollisionName), and with
// ErrTopicExists if it is taken. Two creates of colliding names would
// not see each other's uncommitted rows, so each first takes a
// transaction-scoped advisory lock on the name they share: the second
// waits for the first to commit, and its query (in a new snapshot, as
// the transaction is READ COMMITTED) then finds the first's row. Creates
// are rare, so the scan of topics it costs is cheaper than an index that
// every schema would carry.
func checkCollision(ctx context.Context, tx pgx.Tx, name string) error {
	norm := catalog.TopicCollisionName(name)
	if norm == "" {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('floe.topic.' || current_schema() || '.' || $1))`, norm); err != nil {
		return err
	}
	var existing string
	err := tx.QueryRow(ctx, `SELECT name FROM topics WHERE replace(name, '.', '_') = $1 ORDER BY name = $2 DESC, name LIMIT 1`,
		norm, name).Scan(&existing)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return err
	case existing == name:
		return catalog.ErrTopicExists
	}
	return catalog.TopicCollisionError(name, existing)
}

// learnTopic records that t's partitions exist, as created or read: the
// first commit to the topic then need not ask (a commit verifies that
// they still exist under its locks, so a topic deleted meanwhile costs
// one conflict). A topic and its partition rows are written in one
// transaction, so a committed topic row implies its partitions.
func (c *Catalog) learnTopic(t catalog.Topic) {
	if t.Partitions > 0 {
		c.learnPartitions([]catalog.TopicPartition{{TopicID: t.ID, Partition: t.Partitions - 1}})
	}
}

// DeleteTopic removes the topic, its partitions, batch rows, producer
// state and the offsets groups committed for it (as Kafka does, so a topic
// created again under the name is not read from the old one's offsets). Its
// objects stay until garbage collection finds them unreferenced.
func (c *Catalog) DeleteTopic(ctx context.Context, name string, want catalog.TopicID) (catalog.TopicID, error) {
	if !storable(name) {
		return catalog.TopicID{}, fmt.Errorf("catalog: delete topic %q: %w", name, catalog.ErrUnknownTopic)
	}
	var id [16]byte
	err := c.tx(ctx, func(tx pgx.Tx) error {
		// The row lock also waits for offset commits that found the topic
		// (they lock its row FOR KEY SHARE, see CommitOffsets); later ones
		// will not find it.
		err := tx.QueryRow(ctx, `SELECT id FROM topics WHERE name = $1 FOR UPDATE`, name).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !want.IsZero() && catalog.TopicID(id) != want) {
			return catalog.ErrUnknownTopic
		}
		if err != nil {
			return err
		}
		// Lock the partitions in commit order first: the cascade would lock
		// them in an order of its own and could deadlock with a commit.
		// The objects whose last rows go are stamped unreferenced, as a
		// swap or trim does: an object other topics' rows had shared
		// (a flush spans topics) would otherwise be collected at once,
		// its age being its creation's, not GCGrace after its last row
		// went.
		var objs []int64
		b := &pgx.Batch{}
		b.Queue(`SELECT 1 FROM partitions WHERE topic_id = $1 ORDER BY partition FOR UPDATE`, id)
		b.Queue(`WITH d AS (DELETE FROM batches WHERE topic_id = $1 RETURNING object_id)
SELECT coalesce(array_agg(DISTINCT object_id), '{}') FROM d`, id).QueryRow(func(row pgx.Row) error {
			return row.Scan(&objs)
		})
		b.Queue(`DELETE FROM producer_state WHERE topic_id = $1`, id)
		b.Queue(`DELETE FROM topics WHERE id = $1`, id)
		// Offsets are locked in key order, as CommitOffsets takes them,
		// so a commit racing the delete cannot deadlock with it.
		b.Queue(`DELETE FROM group_offsets g USING (
    SELECT group_id, partition FROM group_offsets WHERE topic = $1
    ORDER BY group_id, partition FOR UPDATE) AS l
WHERE g.group_id = l.group_id AND g.topic = $1 AND g.partition = l.partition`, name)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		return markUnreferenced(ctx, tx, objs)
	})
	if err != nil {
		return catalog.TopicID{}, fmt.Errorf("catalog: delete topic %q: %w", name, err)
	}
	c.forgetPartitions([]catalog.TopicPartition{{TopicID: id}})
	return id, nil
}

// Topic returns the topic named name, or ErrUnknownTopic.
func (c *Catalog) Topic(ctx context.Context, name string) (catalog.Topic, error) {
	if !storable(name) {
		return catalog.Topic{}, fmt.Errorf("catalog: topic %q: %w", name, catalog.ErrUnknownTopic)
	}
	var t catalog.Topic
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		t, err = scanTopic(c.pool.QueryRow(ctx, `SELECT `+topicCols+` FROM topics WHERE name = $1`, name))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: topic %q: %w", name, err)
	}
	c.learnTopic(t)
	return t, nil
}

// TopicByID returns the topic with id, or ErrUnknownTopic.
func (c *Catalog) TopicByID(ctx context.Context, id catalog.TopicID) (catalog.Topic, error) {
	var t catalog.Topic
	err := c.retry(ctx, func(ctx context.Context) error {
		var err error
		t, err = scanTopic(c.pool.QueryRow(ctx, `SELECT `+topicCols+` FROM topics WHERE id = $1`, [16]byte(id)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		err = catalog.ErrUnknownTopic
	}
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: topic %x: %w", id[:], err)
	}
	c.learnTopic(t)
	return t, nil
}

// ListTopics returns every topic by name.
func (c *Catalog) ListTopics(ctx context.Context) ([]catalog.Topic, error) {
	var topics []catalog.Topic
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, `SELECT `+topicCols+` FROM topics ORDER BY name`)
		if err != nil {
			return err
		}
		topics, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Topic, error) { return scanTopic(r) })
		return err
	})
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
	if !storable(name) {
		return fmt.Errorf("catalog: create partitions %q: %w", name, catalog.ErrUnknownTopic)
	}
	err := c.tx(ctx, func(tx pgx.Tx) error {
		var id [16]byte
		var cur int32
		err := tx.QueryRow(ctx, `SELECT id, partitions FROM topics WHERE name = $1 FOR UPDATE`, name).Scan(&id, &cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return catalog.ErrUnknownTopic
		}
		if err != nil {
			return err
		}
		if total <= cur {
			return fmt.Errorf("%w: topic has %d partitions, cannot grow to %d", catalog.ErrInvalidPartitions, cur, total)
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE topics SET partitions = $2 WHERE id = $1`, id, total)
		b.Queue(`INSERT INTO partitions (topic_id, partition) SELECT $1, generate_series($2::int, $3 - 1)`, id, cur, total)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("catalog: create partitions %q: %w", name, err)
	}
	return nil
}

// AlterTopicConfigs applies ops in order under the topic's row lock.
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
	t, err := c.updateConfigs(ctx, name, func(map[string]string) (map[string]string, error) {
		out := make(map[string]string, len(configs))
		for k, v := range configs {
			out[k] = v
		}
		return out, nil
	})
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("catalog: replace configs of %q: %w", name, err)
	}
	return t, nil
}

func (c *Catalog) updateConfigs(ctx context.Context, name string, change func(map[string]string) (map[string]string, error)) (catalog.Topic, error) {
	if !storable(name) {
		return catalog.Topic{}, catalog.ErrUnknownTopic
	}
	var t catalog.Topic
	err := c.tx(ctx, func(tx pgx.Tx) error {
		cur, err := scanTopic(tx.QueryRow(ctx, `SELECT `+topicCols+` FROM topics WHERE name = $1 FOR UPDATE`, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return catalog.ErrUnknownTopic
		}
		if err != nil {
			return err
		}
		next, err := change(cur.Configs)
		if err != nil {
			return err
		}
		// The change takes the next number (config_seq's row lock orders
		// changes, so a snapshot holding one holds every earlier one) and
		// is announced at commit to every agent's listener
		// (WatchTopicConfigs).
		t, err = scanTopic(tx.QueryRow(ctx, `WITH s AS (UPDATE config_seq SET id = id + 1 RETURNING id)
UPDATE topics SET configs = $2, config_version = s.id FROM s WHERE topics.id = $1 RETURNING `+qualified("topics", topicCols),
			[16]byte(cur.ID), next))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2::bigint::text)`, c.configChannel, t.ConfigVersion)
		return err
	})
	return t, err
}

// qualified prefixes each of the comma-separated columns cols with table.
func qualified(table, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = table + "." + p
	}
	return strings.Join(parts, ", ")
}

// TopicConfigsSince returns the topics whose configs changed after change
// number after, and the largest number among them (after if none), read in
// one statement's snapshot. config_seq's row lock makes changes commit in
// the order of their numbers, so the snapshot holds every change up to that
// largest number: none is skipped by moving there.
func (c *Catalog) TopicConfigsSince(ctx context.Context, after int64) ([]catalog.Topic, int64, error) {
	var topics []catalog.Topic
	err := c.retry(ctx, func(ctx context.Context) error {
		rows, err := c.pool.Query(ctx, `SELECT `+topicCols+` FROM topics WHERE config_version > $1`, after)
		if err != nil {
			return err
		}
		topics, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (catalog.Topic, error) { return scanTopic(r) })
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: topic configs since %d: %w", after, err)
	}
	latest := after
	for _, t := range topics {
		latest = max(latest, t.ConfigVersion)
	}
	return topics, latest, nil
}
