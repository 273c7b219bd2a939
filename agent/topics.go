package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/floebroker/floe/catalog"
)

// topicCache keeps recently read topics so that produce and fetch do not
// read the catalog for every request. An entry older than the TTL is still
// served while a background read refreshes it, so requests at steady state
// never wait for the catalog. An entry older than twice the TTL is read
// again before it is served: a topic asked for after a quiet spell would
// otherwise be answered once more as it was read then, however long ago —
// configs changed and partitions added through other agents since (a
// consumer plans its reads from a partition count until its next metadata
// refresh, minutes later). Config changes are applied to the cached topics
// as they commit, wherever they were made (followTopicConfigs); the TTL
// bounds only the lag of those it is not told of. While the catalog cannot
// answer, the entry is served anyway (a failed refresh counts as a read
// for this). A miss, an unknown topic or a partition past the cached count
// always reads the catalog at once, so a topic created or grown on another
// agent is seen at once. A topic deleted through another agent may be served for up to
// twice the TTL, until a catalog read finds it gone or a listing of every
// topic lacks it (listTopics, which sweepTopics runs every minute or so):
// its produces then fail in the commit (the catalog rejects unknown
// partitions), and its fetches may still be served the rows the tail index
// holds of it.
type topicCache struct {
	ttl time.Duration
	now func() time.Time

	mu struct {
		sync.Mutex
		byName map[string]cachedTopic
		byID   map[catalog.TopicID]cachedTopic
		// refreshing holds the names and ids being re-read.
		refreshing map[any]bool
		// seq counts puts (see mark).
		seq uint64
	}
}

type cachedTopic struct {
	t catalog.Topic
	// at is when t was read, or was due for a refresh that failed.
	at time.Time
	// seq is the put that cached t.
	seq uint64
}

func newTopicCache(ttl time.Duration, now func() time.Time) *topicCache {
	c := &topicCache{ttl: ttl, now: now}
	c.mu.byName = make(map[string]cachedTopic)
	c.mu.byID = make(map[catalog.TopicID]cachedTopic)
	c.mu.refreshing = make(map[any]bool)
	return c
}

// get returns the topic cached under key (a name or an id) and its age.
func (c *topicCache) get(key any) (t catalog.Topic, age time.Duration, found bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var e cachedTopic
	switch k := key.(type) {
	case string:
		e, found = c.mu.byName[k]
	case catalog.TopicID:
		e, found = c.mu.byID[k]
	}
	return e.t, c.now().Sub(e.at), found
}

// refreshFailed keeps the entry of key servable for another TTL: its
// refresh failed for want of a catalog, not because the topic is gone.
func (c *topicCache) refreshFailed(key any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.now().Add(-c.ttl)
	var name string
	switch k := key.(type) {
	case string:
		name = k
	case catalog.TopicID:
		e, ok := c.mu.byID[k]
		if !ok {
			return
		}
		name = e.t.Name
	}
	e, ok := c.mu.byName[name]
	if !ok || !e.at.Before(at) {
		return
	}
	e.at = at
	c.mu.byName[name] = e
	if _, ok := c.mu.byID[e.t.ID]; ok {
		c.mu.byID[e.t.ID] = e
	}
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

// put caches t and returns the id its name had in the cache if that was
// another (the topic was deleted and created again).
func (c *topicCache) put(t catalog.Topic) (replaced catalog.TopicID, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, found := c.mu.byID[t.ID]; found && cur.t.ConfigVersion > t.ConfigVersion {
		// t was read before a config change the cached entry already
		// has (followTopicConfigs cached it while t was being read).
		return replaced, false
	}
	if old, found := c.mu.byName[t.Name]; found && old.t.ID != t.ID {
		delete(c.mu.byID, old.t.ID)
		replaced, ok = old.t.ID, true
	}
	c.mu.seq++
	e := cachedTopic{t: t, at: c.now(), seq: c.mu.seq}
	c.mu.byName[t.Name] = e
	c.mu.byID[t.ID] = e
	if len(c.mu.byName) > 100_000 {
		// A client cycling through topic names must not grow this
		// forever; dropping everything is simple and rare.
		clear(c.mu.byName)
		clear(c.mu.byID)
	}
	return replaced, ok
}

// mark returns a mark that the entries cached since are after (see
// forgetUnlisted).
func (c *topicCache) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.seq
}

// staleConfigs reports whether t's id is cached with configs older than
// t's.
func (c *topicCache) staleConfigs(t catalog.Topic) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.byID[t.ID]
	return ok && e.t.ConfigVersion < t.ConfigVersion
}

// forgetUnlisted drops the entries cached before mark whose id listed
// lacks. An entry cached since may hold a topic created after the listing
// was read.
func (c *topicCache) forgetUnlisted(mark uint64, listed map[catalog.TopicID]struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.mu.byID {
		if _, ok := listed[id]; ok || e.seq > mark {
			continue
		}
		delete(c.mu.byID, id)
		if n, ok := c.mu.byName[e.t.Name]; ok && n.t.ID == id {
			delete(c.mu.byName, e.t.Name)
		}
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

// forget drops the named topic and returns what was cached of it, however
// old.
func (c *topicCache) forget(name string) (catalog.Topic, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.mu.byName[name]
	if ok {
		delete(c.mu.byID, e.t.ID)
		delete(c.mu.byName, name)
	}
	return e.t, ok
}

// topic returns the named topic, from the cache when fresh. When
// minPartitions exceeds the cached count the catalog is read again.
func (a *Agent) topic(ctx context.Context, name string, minPartitions int32) (catalog.Topic, error) {
	return a.lookupTopic(ctx, name, minPartitions, func(ctx context.Context) (catalog.Topic, error) { return a.readTopic(ctx, name) })
}

// lookupTopic returns the topic cached under key (a name or an id) as the
// topicCache's rules allow, else what read reads.
func (a *Agent) lookupTopic(ctx context.Context, key any, minPartitions int32, read func(context.Context) (catalog.Topic, error)) (catalog.Topic, error) {
	t, age, found := a.topics.get(key)
	found = found && t.Partitions >= minPartitions
	if found && age <= 2*a.topics.ttl {
		if age > a.topics.ttl {
			a.refreshTopic(key, read)
		}
		return t, nil
	}
	rt, err := read(ctx)
	if err != nil && found && !errors.Is(err, catalog.ErrUnknownTopic) {
		// The catalog cannot answer: the old entry is better than a
		// failed request, and the next ones need not wait for it.
		a.topics.refreshFailed(key)
		return t, nil
	}
	return rt, err
}

// cacheTopic caches t, read from the catalog or just written to it. When
// its name named another topic id before, that topic was deleted: the tail
// index forgets it, so that no request reaches its rows any more and they
// are not kept for the agent's life (the commit follower fed them to every
// agent).
func (a *Agent) cacheTopic(t catalog.Topic) {
	if old, ok := a.topics.put(t); ok {
		a.tail.forgetTopic(old)
	}
}

// topicGone drops what is known of a topic id the catalog no longer has:
// it was deleted, maybe through another agent, which this agent learns
// only from the catalog. The next request naming the topic reads the
// catalog again rather than the cache.
func (a *Agent) topicGone(id catalog.TopicID) {
	a.tail.forgetTopic(id)
	a.topics.forgetID(id)
}

// listTopics lists every topic from the catalog, and forgets the topic
// ids the agent knew of before the listing started that the list lacks:
// they were deleted, maybe through another agent (ids are never reused).
// Requests naming such an id forget it too (topicGone), but nothing names
// the id of a topic that is gone, and the commit follower fed its rows to
// every agent's tail index: without this they were kept there, and counted
// against every live partition's share of its rows, until a restart.
// Knowledge of an id gained after the listing started is kept: the topic
// may have been created after the catalog read the list.
func (a *Agent) listTopics(ctx context.Context) ([]catalog.Topic, error) {
	cacheMark, tailMark := a.topics.mark(), a.tail.mark()
	topics, err := a.cat.ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	listed := make(map[catalog.TopicID]struct{}, len(topics))
	for _, t := range topics {
		listed[t.ID] = struct{}{}
	}
	a.topics.forgetUnlisted(cacheMark, listed)
	a.tail.forgetUnlisted(tailMark, listed)
	a.listings.Add(1)
	return topics, nil
}

// topicSweepInterval is about how often sweepTopics lists every topic; a
// var for tests.
var topicSweepInterval = time.Minute

// followTopicConfigs applies every topic config change, wherever in the
// fleet it was made, to the cached topics as it commits, until ctx ends:
// the catalog announces each change (WatchTopicConfigs) and this reads the
// topics changed since the last it saw (TopicConfigsSince), replacing the
// cached ones. Without it a change made through another agent was applied
// only when the cached topic was next read, up to twice TopicCacheTTL
// later: produce kept refusing records a raised max.message.bytes allows,
// or storing CreateTime batches of a topic switched to LogAppendTime.
// Requests never wait for this; a topic not cached is read when a request
// names it. A lost announcement (the PostgreSQL listener reconnecting) is
// caught up on reconnect, which announces the latest change; until then,
// and for changes made through an agent of an earlier version (which does
// not number them), the TTL still bounds the lag.
func (a *Agent) followTopicConfigs(ctx context.Context) {
	var watch <-chan int64
	// after is the last change applied; target the newest announced. A
	// read started after a change was announced sees it and every earlier
	// one (changes commit in the order of their numbers), even when it
	// returns none (the changed topic was deleted since).
	var after, target int64
	// force makes the next round read even if target is reached: after
	// (re)subscribing. The first read, from 0, takes every change ever
	// made, so none made while the agent started is missed.
	var force bool
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if watch == nil {
			w, err := a.cat.WatchTopicConfigs(ctx)
			if err != nil {
				a.log.Warn("watching topic config changes failed", "err", err)
				sleepCtx(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			watch, force = w, true // changes may have gone unannounced meanwhile
		}
		if force || target > after {
			seen := target
			rctx, cancel := context.WithTimeout(ctx, offsetsRefreshTimeout)
			changed, latest, err := a.cat.TopicConfigsSince(rctx, after)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					a.log.Warn("reading topic config changes failed", "err", err)
				}
				sleepCtx(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			for _, t := range changed {
				if a.topics.staleConfigs(t) {
					a.cacheTopic(t)
				}
			}
			after, force = max(after, latest, seen), false
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case n, open := <-watch:
			if !open {
				watch = nil
			}
			target = max(target, n)
		}
	}
}

// sweepTopics lists every topic (listTopics) every topicSweepInterval or
// so until ctx ends, so that the topics deleted through other agents leave
// this agent's tail index and topic cache. The commit follower feeds every
// agent every topic's rows, and requests forget a deleted topic only when
// they list every topic (all-topics Metadata, Metadata naming many topics,
// CreateTopics) or name it: Java, librdkafka and franz-go clients ask for
// the topics they use, so an agent whose clients never listed them all
// kept every deleted topic's partitions and rows, counted against every
// live partition's share of the tail index's rows, for its life. A sweep
// is skipped when a request listed every topic since the last one; the
// period is jittered, so that agents started together do not list
// together.
func (a *Agent) sweepTopics(ctx context.Context) {
	every := topicSweepInterval
	seen := a.listings.Load()
	for {
		sleepCtx(ctx, every*3/4+rand.N(max(every/2, 1)))
		if ctx.Err() != nil {
			return
		}
		if n := a.listings.Load(); n != seen {
			seen = n
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, offsetsRefreshTimeout)
		_, err := a.listTopics(lctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Warn("listing topics to forget deleted ones failed", "err", err)
		}
		seen = a.listings.Load()
	}
}

// topicRecreated is for a request naming a topic by name whose cached id
// the catalog just reported gone: it drops the id (topicGone) and reads the
// name again, and returns the topic the name names now when that is
// another id (deleted and created again, maybe through another agent). The
// request then answers for the new topic at once, not
// UNKNOWN_TOPIC_OR_PARTITION until the cache entry ages.
func (a *Agent) topicRecreated(ctx context.Context, name string, gone catalog.TopicID) (catalog.Topic, bool) {
	a.topicGone(gone)
	t, err := a.readTopic(ctx, name)
	if err != nil || t.ID == gone {
		return catalog.Topic{}, false
	}
	return t, true
}

// readTopic reads a topic from the catalog into the cache.
func (a *Agent) readTopic(ctx context.Context, name string) (catalog.Topic, error) {
	t, err := a.cat.Topic(ctx, name)
	if err != nil {
		if errors.Is(err, catalog.ErrUnknownTopic) {
			if old, found := a.topics.forget(name); found {
				a.tail.forgetTopic(old.ID)
			}
		}
		return catalog.Topic{}, err
	}
	a.cacheTopic(t)
	return t, nil
}

// topicByID is topic by id.
func (a *Agent) topicByID(ctx context.Context, id catalog.TopicID, minPartitions int32) (catalog.Topic, error) {
	return a.lookupTopic(ctx, id, minPartitions, func(ctx context.Context) (catalog.Topic, error) { return a.readTopicByID(ctx, id) })
}

func (a *Agent) readTopicByID(ctx context.Context, id catalog.TopicID) (catalog.Topic, error) {
	t, err := a.cat.TopicByID(ctx, id)
	if err != nil {
		if errors.Is(err, catalog.ErrUnknownTopic) {
			a.topicGone(id)
		}
		return catalog.Topic{}, err
	}
	a.cacheTopic(t)
	return t, nil
}

// refreshTopic runs read in the background, once per key at a time.
func (a *Agent) refreshTopic(key any, read func(context.Context) (catalog.Topic, error)) {
	if !a.topics.startRefresh(key) {
		return
	}
	go func() {
		defer a.topics.endRefresh(key)
		ctx, cancel := context.WithTimeout(context.Background(), offsetsRefreshTimeout)
		defer cancel()
		if _, err := read(ctx); err != nil && !errors.Is(err, catalog.ErrUnknownTopic) {
			a.topics.refreshFailed(key)
		}
	}()
}

// topicOrCreate returns the topic, creating it with the default partition
// count when it is unknown and auto-creation is allowed. A concurrent
// creation by another client or agent is not an error.
func (a *Agent) topicOrCreate(ctx context.Context, name string, minPartitions int32, allowCreate bool) (catalog.Topic, error) {
	t, err := a.topic(ctx, name, minPartitions)
	if err == nil || !errors.Is(err, catalog.ErrUnknownTopic) {
		return t, err
	}
	return a.autoCreate(ctx, name, allowCreate, err)
}

// autoCreate creates the named topic, which the catalog just reported
// unknown (the error unknown), if the request and the config allow it.
func (a *Agent) autoCreate(ctx context.Context, name string, allowCreate bool, unknown error) (catalog.Topic, error) {
	if !allowCreate || !a.cfg.AutoCreateTopics || reservedTopic(name) {
		// Kafka's internal topics stay unknown, as Kafka answers a
		// topic it does not create (see reservedTopic).
		return catalog.Topic{}, unknown
	}
	if err := catalog.ValidateTopicName(name); err != nil {
		return catalog.Topic{}, err
	}
	t, err := a.cat.CreateTopic(ctx, catalog.TopicSpec{Name: name, Partitions: a.cfg.DefaultPartitions})
	if errors.Is(err, catalog.ErrTopicExists) {
		return a.topic(ctx, name, 0)
	}
	if err != nil {
		return catalog.Topic{}, err
	}
	a.log.Info("auto-created topic", "topic", name, "partitions", t.Partitions)
	a.cacheTopic(t)
	return t, nil
}

// fmtTopicID formats a topic id for logs.
func fmtTopicID(id catalog.TopicID) string { return hex.EncodeToString(id[:]) }
