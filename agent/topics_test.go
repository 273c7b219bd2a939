package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/floebroker/floe/catalog"
)

// topicReads is a catalog whose Topic and TopicByID answer topic or err.
type topicReads struct {
	catalog.Catalog
	mu    sync.Mutex
	topic catalog.Topic
	err   error
	hang  chan struct{} // when set, reads wait for it to close
}

func (c *topicReads) Topic(ctx context.Context, _ string) (catalog.Topic, error) {
	c.mu.Lock()
	t, err, hang := c.topic, c.err, c.hang
	c.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return catalog.Topic{}, ctx.Err()
		}
	}
	return t, err
}

// TopicByID answers as Topic does, whatever the id.
func (c *topicReads) TopicByID(ctx context.Context, _ catalog.TopicID) (catalog.Topic, error) {
	return c.Topic(ctx, "")
}

func (c *topicReads) set(t catalog.Topic, err error, hang chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.topic, c.err, c.hang = t, err, hang
}

// TestTopicCacheBoundsStaleness: a cached topic is served as read for the
// TTL, and while refreshed in the background up to twice the TTL; after a
// quiet spell longer than that it is read before it is served, unless the
// catalog cannot answer.
func TestTopicCacheBoundsStaleness(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	v1 := catalog.Topic{ID: catalog.TopicID{1}, Name: "t", Partitions: 1, Configs: map[string]string{"retention.ms": "1"}}
	v2 := catalog.Topic{ID: catalog.TopicID{1}, Name: "t", Partitions: 3, Configs: map[string]string{"retention.ms": "2"}}
	cat := &topicReads{topic: v1}
	a := &Agent{cat: cat, topics: newTopicCache(time.Second, clock), tail: newTailIndex(clock)}
	get := func() catalog.Topic {
		t.Helper()
		got, err := a.topic(context.Background(), "t", 0)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	get()
	cat.set(v2, nil, nil) // changed through another agent
	advance(500 * time.Millisecond)
	if got := get(); got.Partitions != 1 {
		t.Fatalf("fresh entry: %d partitions, want the cached 1", got.Partitions)
	}
	advance(time.Hour)
	if got := get(); got.Partitions != 3 || got.Config("retention.ms") != "2" {
		t.Fatalf("after a quiet hour: %d partitions, retention.ms %s; want the catalog's 3 and 2", got.Partitions, got.Config("retention.ms"))
	}
	down := errors.New("catalog down")
	cat.set(catalog.Topic{}, down, nil)
	advance(time.Hour)
	if got := get(); got.Partitions != 3 {
		t.Fatalf("catalog down: %d partitions, want the cached 3", got.Partitions)
	}
	// The failed read counts as a read: requests are served on without
	// waiting for the catalog, which now hangs, while a background read
	// tries again.
	hang := make(chan struct{})
	defer close(hang)
	cat.set(catalog.Topic{}, down, hang)
	for range 5 {
		advance(200 * time.Millisecond)
		done := make(chan struct{})
		go func() { _, _ = a.topic(context.Background(), "t", 0); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a request waited for the hung catalog")
		}
	}
}

// TestRecreatedTopicLeavesTail: when a topic's name is found to name a new
// topic id (deleted and created again through another agent), the tail
// index drops the old id's rows, which the commit follower had added and
// nothing else would remove.
func TestRecreatedTopicLeavesTail(t *testing.T) {
	a := &Agent{topics: newTopicCache(time.Second, time.Now), tail: newTailIndex(time.Now)}
	oldID, newID := catalog.TopicID{1}, catalog.TopicID{2}
	a.cacheTopic(catalog.Topic{ID: oldID, Name: "t", Partitions: 2})
	a.tail.add([]catalog.BatchRow{
		{TopicPartition: catalog.TopicPartition{TopicID: oldID, Partition: 0}, BaseOffset: 0, LastOffset: 3, ByteLength: 10},
		{TopicPartition: catalog.TopicPartition{TopicID: oldID, Partition: 1}, BaseOffset: 0, LastOffset: 3, ByteLength: 10},
	})
	a.cacheTopic(catalog.Topic{ID: newID, Name: "t", Partitions: 1})
	if _, ok := a.tail.lookup(catalog.TopicPartition{TopicID: oldID}, 0, 1, 0); ok {
		t.Error("the old topic's rows are still served")
	}
	a.tail.mu.Lock()
	n := len(a.tail.mu.parts)
	a.tail.mu.Unlock()
	if n != 0 {
		t.Errorf("the tail index keeps %d partitions of the deleted topic", n)
	}
}

// TestMetadataByIDReadsCatalog: Metadata by topic id answers from the
// catalog, which knows of deletions through other agents, and from the
// cached topic only while the catalog cannot answer; an id the catalog
// does not have leaves the cache.
func TestMetadataByIDReadsCatalog(t *testing.T) {
	id := catalog.TopicID{1}
	v1 := catalog.Topic{ID: id, Name: "t", Partitions: 1}
	cat := &topicReads{topic: v1}
	a := &Agent{cat: cat, topics: newTopicCache(time.Hour, time.Now), tail: newTailIndex(time.Now)}
	ctx := context.Background()
	if got, err := a.metadataTopicByID(ctx, id, nil); err != nil || got.Partitions != 1 {
		t.Fatalf("first read: %+v, %v", got, err)
	}
	cat.set(catalog.Topic{}, errors.New("catalog down"), nil)
	if got, err := a.metadataTopicByID(ctx, id, nil); err != nil || got.ID != id {
		t.Fatalf("catalog down: %+v, %v; want the cached topic", got, err)
	}
	cat.set(catalog.Topic{}, fmt.Errorf("gone: %w", catalog.ErrUnknownTopic), nil)
	if got, err := a.metadataTopicByID(ctx, id, nil); !errors.Is(err, catalog.ErrUnknownTopic) {
		t.Fatalf("deleted: %+v, %v; want ErrUnknownTopic", got, err)
	}
	if _, _, found := a.topics.get(id); found {
		t.Error("the deleted topic is still cached")
	}
	// Many ids are answered from one listing of every topic.
	a.cacheTopic(v1)
	if _, err := a.metadataTopicByID(ctx, id, map[catalog.TopicID]catalog.Topic{}); !errors.Is(err, catalog.ErrUnknownTopic) {
		t.Fatalf("not listed: %v; want ErrUnknownTopic", err)
	}
	if _, _, found := a.topics.get(id); found {
		t.Error("the topic not listed is still cached")
	}
	v2 := catalog.Topic{ID: id, Name: "t", Partitions: 3}
	if got, err := a.metadataTopicByID(ctx, id, map[catalog.TopicID]catalog.Topic{id: v2}); err != nil || got.Partitions != 3 {
		t.Fatalf("listed: %+v, %v; want the listed topic", got, err)
	}
}
