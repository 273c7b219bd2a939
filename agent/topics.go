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
// read the catalog for every request. An entry is reused for the TTL; a
// miss, an unknown topic or a partition past the cached count always reads
// the catalog, so a topic created or grown on another agent is seen at
// once. A deleted topic may be served for up to the TTL: its produces then
// fail in the commit (the catalog rejects unknown partitions) and its
// fetches find no rows.
type topicCache struct {
	ttl time.Duration
	now func() time.Time

	mu struct {
		sync.Mutex
		byName map[string]cachedTopic
		byID   map[catalog.TopicID]cachedTopic
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
	return c
}

func (c *topicCache) getName(name string) (catalog.Topic, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.byName[name]
	if !ok || c.now().Sub(e.at) > c.ttl {
		return catalog.Topic{}, false
	}
	return e.t, true
}

func (c *topicCache) getID(id catalog.TopicID) (catalog.Topic, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.byID[id]
	if !ok || c.now().Sub(e.at) > c.ttl {
		return catalog.Topic{}, false
	}
	return e.t, true
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
	if t, ok := a.topics.getName(name); ok && t.Partitions >= minPartitions {
		return t, nil
	}
	t, err := a.cat.Topic(ctx, name)
	if err != nil {
		if errors.Is(err, catalog.ErrUnknownTopic) {
			a.topics.forget(name)
		}
		return catalog.Topic{}, err
	}
	a.topics.put(t)
	return t, nil
}

// topicByID is topic by id.
func (a *Agent) topicByID(ctx context.Context, id catalog.TopicID, minPartitions int32) (catalog.Topic, error) {
	if t, ok := a.topics.getID(id); ok && t.Partitions >= minPartitions {
		return t, nil
	}
	t, err := a.cat.TopicByID(ctx, id)
	if err != nil {
		return catalog.Topic{}, err
	}
	a.topics.put(t)
	return t, nil
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
