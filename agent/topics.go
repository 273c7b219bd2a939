package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/floebroker/floe/catalog"
)

// topicCache keeps recently read topics so that produce and fetch do not
// read the catalog for every request. An entry older than the TTL is still
// served while a background read refreshes it, so requests at steady state
// never wait for the catalog; a miss, an unknown topic or a partition past
// the cached count always reads the catalog at once, so a topic created or
// grown on another agent is seen at once. A deleted topic may be served
// for up to the TTL and one catalog read: its produces then fail in the
// commit (the catalog rejects unknown partitions) and its fetches find no
// rows.
type topicCache struct {
	ttl time.Duration
	now func() time.Time

	mu struct {
		sync.Mutex
		byName map[string]cachedTopic
		byID   map[catalog.TopicID]cachedTopic
		// refreshing holds the names and ids being re-read.
		refreshing map[any]bool
	}
}

type cachedTopic struct {
	t  catalog.Topic
	at time.Time
}

func newTopicCache(ttl time.Duration, now func() time.Time) *topicCache {
	c := &topicCache{ttl: ttl, now: now}
	c.mu.byName = make(map[string]cachedTopic)
	c.mu.byID = make(map[catalog.TopicID]cachedTopic)
	c.mu.refreshing = make(map[any]bool)
	return c
}

// getName returns the cached topic and whether it is younger than the TTL.
func (c *topicCache) getName(name string) (t catalog.Topic, found, fresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.byName[name]
	return e.t, ok, ok && c.now().Sub(e.at) <= c.ttl
}

func (c *topicCache) getID(id catalog.TopicID) (t catalog.Topic, found, fresh bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.byID[id]
	return e.t, ok, ok && c.now().Sub(e.at) <= c.ttl
}

// startRefresh marks a background read of key (a name or an id) as
// running, unless one already is.
func (c *topicCache) startRefresh(key any) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.refreshing[key] {
		return false
	}
	c.mu.refreshing[key] = true
	return true
}

func (c *topicCache) endRefresh(key any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mu.refreshing, key)
}

func (c *topicCache) put(t catalog.Topic) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.mu.byName[t.Name]; ok && old.t.ID != t.ID {
		delete(c.mu.byID, old.t.ID)
	}
	e := cachedTopic{t: t, at: c.now()}
	c.mu.byName[t.Name] = e
	c.mu.byID[t.ID] = e
	if len(c.mu.byName) > 100_000 {
		// A client cycling through topic names must not grow this
		// forever; dropping everything is simple and rare.
		clear(c.mu.byName)
		clear(c.mu.byID)
	}
}

func (c *topicCache) forgetID(id catalog.TopicID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.mu.byID[id]; ok {
		delete(c.mu.byName, e.t.Name)
		delete(c.mu.byID, id)
	}
}

func (c *topicCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.mu.byName[name]; ok {
		delete(c.mu.byID, e.t.ID)
		delete(c.mu.byName, name)
	}
}

// topic returns the named topic, from the cache when fresh. When
// minPartitions exceeds the cached count the catalog is read again.
func (a *Agent) topic(ctx context.Context, name string, minPartitions int32) (catalog.Topic, error) {
	if t, found, fresh := a.topics.getName(name); found && t.Partitions >= minPartitions {
		if !fresh {
			a.refreshTopic(name, func(ctx context.Context) error { _, err := a.readTopic(ctx, name); return err })
		}
		return t, nil
	}
	return a.readTopic(ctx, name)
}

// readTopic reads a topic from the catalog into the cache.
func (a *Agent) readTopic(ctx context.Context, name string) (catalog.Topic, error) {
	t, err := a.cat.Topic(ctx, name)
	if err != nil {
		if errors.Is(err, catalog.ErrUnknownTopic) {
			if old, found, _ := a.topics.getName(name); found {
				a.tail.forgetTopic(old.ID)
			}
			a.topics.forget(name)
		}
		return catalog.Topic{}, err
	}
	a.topics.put(t)
	return t, nil
}

// topicByID is topic by id.
func (a *Agent) topicByID(ctx context.Context, id catalog.TopicID, minPartitions int32) (catalog.Topic, error) {
	if t, found, fresh := a.topics.getID(id); found && t.Partitions >= minPartitions {
		if !fresh {
			a.refreshTopic(id, func(ctx context.Context) error { _, err := a.readTopicByID(ctx, id); return err })
		}
		return t, nil
	}
	return a.readTopicByID(ctx, id)
}

func (a *Agent) readTopicByID(ctx context.Context, id catalog.TopicID) (catalog.Topic, error) {
	t, err := a.cat.TopicByID(ctx, id)
	if err != nil {
		if errors.Is(err, catalog.ErrUnknownTopic) {
			a.tail.forgetTopic(id)
			a.topics.forgetID(id)
		}
		return catalog.Topic{}, err
	}
	a.topics.put(t)
	return t, nil
}

// refreshTopic runs read in the background, once per key at a time.
func (a *Agent) refreshTopic(key any, read func(context.Context) error) {
	if !a.topics.startRefresh(key) {
		return
	}
	go func() {
		defer a.topics.endRefresh(key)
		ctx, cancel := context.WithTimeout(context.Background(), offsetsRefreshTimeout)
		defer cancel()
		_ = read(ctx)
	}()
}

// topicOrCreate returns the topic, creating it with the default partition
// count when it is unknown and auto-creation is allowed. A concurrent
// creation by another client or agent is not an error.
func (a *Agent) topicOrCreate(ctx context.Context, name string, minPartitions int32, allowCreate bool) (catalog.Topic, error) {
	t, err := a.topic(ctx, name, minPartitions)
	if err == nil || !errors.Is(err, catalog.ErrUnknownTopic) || !allowCreate || !a.cfg.AutoCreateTopics {
		return t, err
	}
	if err := catalog.ValidateTopicName(name); err != nil {
		return catalog.Topic{}, err
	}
	t, err = a.cat.CreateTopic(ctx, catalog.TopicSpec{Name: name, Partitions: a.cfg.DefaultPartitions})
	if errors.Is(err, catalog.ErrTopicExists) {
		return a.topic(ctx, name, 0)
	}
	if err != nil {
		return catalog.Topic{}, err
	}
	a.log.Info("auto-created topic", "topic", name, "partitions", t.Partitions)
	a.topics.put(t)
	return t, nil
}

// fmtTopicID formats a topic id for logs.
func fmtTopicID(id catalog.TopicID) string { return hex.EncodeToString(id[:]) }
