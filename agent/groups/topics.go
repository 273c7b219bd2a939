package groups

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/floebroker/floe/catalog"
)

// topicCache is the coordinator's view of topics, at most ttl stale, so
// that OffsetCommit and KIP-848 heartbeats do not query the catalog every
// time. Single topics (for commits) and the whole list (for KIP-848
// subscriptions) are cached separately: a coordinator serving only classic
// groups never lists every topic.
type topicCache struct {
	cat catalog.Catalog
	ttl time.Duration
	now func() time.Time

	// fetch serializes snapshot refreshes, so concurrent heartbeats wait for
	// one ListTopics instead of each issuing one.
	fetch sync.Mutex

	mu struct {
		sync.Mutex
		byName map[string]topicEntry
		snap   *topicSnapshot
	}
}

// maxCachedTopics bounds the single-topic cache; past it the cache starts
// over (names come from requests, so an attacker could otherwise grow it).
const maxCachedTopics = 10_000

type topicEntry struct {
	t  catalog.Topic
	at time.Time
}

// topicSnapshot is every topic at one time. It is immutable once built.
type topicSnapshot struct {
	// version changes only when a topic's name, id or partition count did,
	// so a KIP-848 group recomputes its subscription only then.
	version uint64
	at      time.Time
	byName  map[string]catalog.Topic
	byID    map[catalog.TopicID]string
	names   []string // sorted
	// resolved is shared by the snapshots of one version (they list the
	// same topics).
	resolved *resolvedSubs
}

// resolvedSubs holds KIP-848 subscriptions resolved against one version of
// the topic list, so that each distinct subscription (a regex, a list of
// names) is matched against every topic once per version, not once per
// member and membership change under the group's lock: 300 members on one
// regex over 5,000 topics held a group's lock ~1 s per join. The results
// are shared and must not be modified.
type resolvedSubs struct {
	mu       sync.Mutex
	subs     map[string]map[catalog.TopicID]bool // by subscriptionKey
	bytes    int                                 // roughly, of subs
	computed int                                 // resolutions (tests count them)
}

// maxResolvedBytes bounds what resolvedSubs keeps; past it, it starts over
// (subscriptions come from requests, and a regex may match every topic).
const maxResolvedBytes = 16 << 20

// subscribed returns the topics m subscribes to, resolved once per version
// for every member with m's subscription (key, m.subscriptionKey()).
func (s *topicSnapshot) subscribed(key string, m *consumerMember) map[catalog.TopicID]bool {
	r := s.resolved
	if r == nil {
		return m.subscribedTopics(s)
	}
	r.mu.Lock()
	topics, ok := r.subs[key]
	r.mu.Unlock()
	if ok {
		return topics
	}
	// Resolved outside r's lock: the snapshot is shared by every group.
	topics = m.subscribedTopics(s)
	n := 64 + len(key) + 32*len(topics)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.computed++
	if r.bytes+n > maxResolvedBytes {
		clear(r.subs)
		r.bytes = 0
	}
	r.subs[key] = topics
	r.bytes += n
	return topics
}

func newTopicCache(cat catalog.Catalog, ttl time.Duration, now func() time.Time) *topicCache {
	tc := &topicCache{cat: cat, ttl: ttl, now: now}
	tc.mu.byName = make(map[string]topicEntry)
	return tc
}

// topic returns the named topic, from the cache unless it is stale or
// fresh is set. A missing topic is catalog.ErrUnknownTopic.
func (tc *topicCache) topic(ctx context.Context, name string, fresh bool) (catalog.Topic, error) {
	now := tc.now()
	if !fresh {
		tc.mu.Lock()
		e, ok := tc.mu.byName[name]
		if !ok && tc.mu.snap != nil && now.Sub(tc.mu.snap.at) < tc.ttl {
			e.t, ok = tc.mu.snap.byName[name]
			e.at = tc.mu.snap.at
		}
		tc.mu.Unlock()
		if ok && now.Sub(e.at) < tc.ttl {
			return e.t, nil
		}
	}
	t, err := tc.cat.Topic(ctx, name)
	if err != nil {
		return catalog.Topic{}, fmt.Errorf("groups: look up topic %q: %w", name, err)
	}
	tc.mu.Lock()
	if len(tc.mu.byName) >= maxCachedTopics {
		clear(tc.mu.byName)
	}
	tc.mu.byName[name] = topicEntry{t: catalog.Topic{ID: t.ID, Name: t.Name, Partitions: t.Partitions}, at: now}
	tc.mu.Unlock()
	return t, nil
}

// snapshot returns every topic, refreshed when older than ttl. When the
// refresh fails and an older snapshot exists, the older one is returned:
// a KIP-848 heartbeat is better served slightly stale than failed.
func (tc *topicCache) snapshot(ctx context.Context) (*topicSnapshot, error) {
	if s := tc.current(); s != nil {
		return s, nil
	}
	tc.fetch.Lock()
	defer tc.fetch.Unlock()
	if s := tc.current(); s != nil {
		return s, nil
	}
	now := tc.now()
	topics, err := tc.cat.ListTopics(ctx)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	prev := tc.mu.snap
	if err != nil {
		if prev != nil {
			return prev, nil
		}
		return nil, fmt.Errorf("groups: list topics: %w", err)
	}
	s := &topicSnapshot{
		at:     now,
		byName: make(map[string]catalog.Topic, len(topics)),
		byID:   make(map[catalog.TopicID]string, len(topics)),
		names:  make([]string, 0, len(topics)),
	}
	for _, t := range topics {
		s.byName[t.Name] = catalog.Topic{ID: t.ID, Name: t.Name, Partitions: t.Partitions}
		s.byID[t.ID] = t.Name
		s.names = append(s.names, t.Name)
	}
	slices.Sort(s.names)
	s.version = 1
	if prev != nil {
		s.version = prev.version
		if !prev.sameTopics(s) {
			s.version++
		}
	}
	if prev != nil && prev.version == s.version {
		s.resolved = prev.resolved
	} else {
		s.resolved = &resolvedSubs{subs: make(map[string]map[catalog.TopicID]bool)}
	}
	tc.mu.snap = s
	return s, nil
}

// forget drops what is cached about the named topic, so that the next
// lookup asks the catalog. The snapshot stays as the last one (for
// fallbacks and its version), but stale.
func (tc *topicCache) forget(name string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	delete(tc.mu.byName, name)
	if s := tc.mu.snap; s != nil {
		if _, ok := s.byName[name]; ok {
			stale := *s
			stale.at = time.Time{}
			tc.mu.snap = &stale
		}
	}
}

func (tc *topicCache) current() *topicSnapshot {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if s := tc.mu.snap; s != nil && tc.now().Sub(s.at) < tc.ttl {
		return s
	}
	return nil
}

// last returns the latest snapshot however stale, or nil.
func (tc *topicCache) last() *topicSnapshot {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.mu.snap
}

func (s *topicSnapshot) sameTopics(o *topicSnapshot) bool {
	if len(s.byName) != len(o.byName) {
		return false
	}
	for name, t := range s.byName {
		u, ok := o.byName[name]
		if !ok || u.ID != t.ID || u.Partitions != t.Partitions {
			return false
		}
	}
	return true
}

// name returns the name of topic id, or "" when unknown.
func (s *topicSnapshot) name(id catalog.TopicID) string {
	if s == nil {
		return ""
	}
	return s.byID[id]
}
