package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

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

// listing is a catalog whose ListTopics answers list, after calling during
// (when set) as if the catalog were reading the list meanwhile.
type listing struct {
	catalog.Catalog
	list   []catalog.Topic
	during func()
}

func (c *listing) ListTopics(context.Context) ([]catalog.Topic, error) {
	if c.during != nil {
		c.during()
	}
	return c.list, nil
}

// TestListingForgetsDeletedTopics: a listing of every topic forgets the
// cached topics and the tail index's topics it lacks (deleted through
// another agent, which no request names any more), but not a topic the
// agent learnt of while the list was read: it may have been created after.
func TestListingForgetsDeletedTopics(t *testing.T) {
	live := catalog.Topic{ID: catalog.TopicID{1}, Name: "live", Partitions: 1}
	gone := catalog.Topic{ID: catalog.TopicID{2}, Name: "gone", Partitions: 2}
	followed := catalog.TopicID{3} // never cached: only the follower fed it
	created := catalog.Topic{ID: catalog.TopicID{4}, Name: "new", Partitions: 1}
	row := func(id catalog.TopicID, p int32) catalog.BatchRow {
		return catalog.BatchRow{TopicPartition: catalog.TopicPartition{TopicID: id, Partition: p}, LastOffset: 3, ByteLength: 10}
	}
	cat := &listing{list: []catalog.Topic{live}}
	a := &Agent{cat: cat, topics: newTopicCache(time.Hour, time.Now), tail: newTailIndex(time.Now)}
	a.cacheTopic(live)
	a.cacheTopic(gone)
	a.tail.add([]catalog.BatchRow{row(live.ID, 0), row(gone.ID, 0), row(gone.ID, 1), row(followed, 0)})
	w := a.tail.watch([]catalog.TopicID{gone.ID})
	defer a.tail.unwatch(w)
	cat.during = func() {
		a.cacheTopic(created)
		a.tail.add([]catalog.BatchRow{row(created.ID, 0)})
	}
	if _, err := a.listTopics(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   catalog.TopicID
		kept bool
	}{{live.ID, true}, {gone.ID, false}, {followed, false}, {created.ID, true}} {
		_, _, cached := a.topics.get(tc.id)
		inTail := a.tail.covers(catalog.TopicPartition{TopicID: tc.id}, 0)
		if tc.id != followed && cached != tc.kept {
			t.Errorf("topic %x: cached %v, want %v", tc.id[:1], cached, tc.kept)
		}
		if inTail != tc.kept {
			t.Errorf("topic %x: in the tail index %v, want %v", tc.id[:1], inTail, tc.kept)
		}
	}
	if _, _, found := a.topics.get("gone"); found {
		t.Error("the deleted topic is still cached by name")
	}
	a.tail.mu.Lock()
	parts, indexed := len(a.tail.mu.parts), len(a.tail.mu.byTopic)
	a.tail.mu.Unlock()
	if parts != 2 || indexed != 2 {
		t.Errorf("tail index holds %d partitions of %d topics, want 2 of 2", parts, indexed)
	}
	select {
	case <-w.ch:
	default:
		t.Error("a fetch waiting for the deleted topic was not woken")
	}
}

// TestAllTopicsMetadataForgetsDeletedTopic: a topic deleted through another
// agent leaves this agent's tail index and topic cache at its next
// all-topics Metadata.
func TestAllTopicsMetadataForgetsDeletedTopic(t *testing.T) {
	var a *Agent
	addr := startInternalAgent(t, func(x *Agent) { a = x })
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, name := range []string{"doomed", "kept"} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: name, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	doomed, err := a.cat.Topic(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	kept, err := a.cat.Topic(ctx, "kept")
	if err != nil {
		t.Fatal(err)
	}
	parts := func(id catalog.TopicID) (n int) {
		a.tail.mu.Lock()
		defer a.tail.mu.Unlock()
		for tp := range a.tail.mu.parts {
			if tp.TopicID == id {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(5 * time.Second); parts(doomed.ID) == 0 || parts(kept.ID) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the produced rows never reached the tail index")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Deleted through another agent: straight through the catalog.
	if _, err := a.cat.DeleteTopic(ctx, "doomed", doomed.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := kadm.NewClient(cl).ListTopics(ctx); err != nil {
		t.Fatal(err)
	}
	if n := parts(doomed.ID); n != 0 {
		t.Errorf("the tail index keeps %d partitions of the deleted topic", n)
	}
	if _, _, found := a.topics.get(doomed.ID); found {
		t.Error("the deleted topic is still cached")
	}
	if parts(kept.ID) == 0 {
		t.Error("the live topic left the tail index")
	}
	if _, _, found := a.topics.get(kept.ID); !found {
		t.Error("the live topic left the cache")
	}
}
