package groups

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// Committed offsets: OffsetCommit v2-9, OffsetFetch v1-9 (batched groups
// v8+), OffsetDelete v0, DeleteGroups v0-2. Offsets live in the catalog
// only; a response without an error is sent after the catalog call
// returned. Group membership is checked under the group's lock, which is
// released before the catalog is called, as Kafka checks before it appends.
// Topics are checked against the topic cache first (cheap answers for
// clients that name unknown topics), but the cache may be TopicCacheTTL
// stale: the catalog decides, atomically with DeleteTopic, and the
// partitions it refuses get UNKNOWN_TOPIC_OR_PARTITION.

// storeErr maps a failed catalog call to the error a client retries on.
func storeErr(ctx context.Context, err error) int16 {
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return kerr.RequestTimedOut.Code
	}
	return kerr.CoordinatorNotAvailable.Code
}

// offsetCommit serves OffsetCommit.
func (c *Coordinator) offsetCommit(ctx context.Context, req *kmsg.OffsetCommitRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		codes[i] = make([]int16, len(t.Partitions))
	}
	defer func() {
		for i, t := range req.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for j, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = codes[i][j]
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
	}()
	setAll := func(code int16) {
		for i := range codes {
			for j := range codes[i] {
				codes[i][j] = code
			}
		}
	}
	if code := c.gate(ctx, req.Group); code != 0 {
		setAll(code)
		return resp
	}

	// Topic checks first: a KIP-848 member's commit is judged by whether it
	// owns the partitions, which are named by topic id.
	var owned []topicPartition
	for i, t := range req.Topics {
		topic, err := c.topics.topic(ctx, t.Topic, false)
		refreshed := false
		for j, p := range t.Partitions {
			if err == nil && !refreshed && (p.Partition < 0 || p.Partition >= topic.Partitions) {
				// Maybe partitions were just added: ask the catalog once.
				topic, err = c.topics.topic(ctx, t.Topic, true)
				refreshed = true
			}
			switch {
			case errors.Is(err, catalog.ErrUnknownTopic) || errors.Is(err, catalog.ErrInvalidTopic):
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			case err != nil:
				c.log.Warn("groups: offset commit: topic lookup failed", "group", req.Group, "topic", t.Topic, "err", err)
				codes[i][j] = storeErr(ctx, err)
			case p.Partition < 0 || p.Partition >= topic.Partitions:
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && (javaLength(*p.Metadata) > c.cfg.MaxOffsetMetadataBytes || !storable(*p.Metadata)):
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			default:
				owned = append(owned, topicPartition{topic.ID, p.Partition})
			}
		}
	}
	if code := c.validateCommit(req, owned); code != 0 {
		// As in Kafka, partitions of unknown topics keep their error
		// (its broker answers them before asking the coordinator); the
		// member's error is about the rest, whatever else they lack.
		for i := range codes {
			for j := range codes[i] {
				if codes[i][j] != kerr.UnknownTopicOrPartition.Code {
					codes[i][j] = code
				}
			}
		}
		return resp
	}

	now := c.cfg.Now()
	type at struct{ i, j int }
	latest := make(map[catalog.GroupPartition]at)
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			if codes[i][j] == 0 {
				// A partition named twice: the last one wins, as in Kafka.
				latest[catalog.GroupPartition{Topic: t.Topic, Partition: p.Partition}] = at{i, j}
			}
		}
	}
	if len(latest) == 0 {
		return resp
	}
	offsets := make([]catalog.GroupOffset, 0, len(latest))
	for gp, a := range latest {
		p := req.Topics[a.i].Partitions[a.j]
		meta := ""
		if p.Metadata != nil {
			meta = *p.Metadata
		}
		epoch := p.LeaderEpoch
		if req.Version < 6 {
			epoch = -1
		}
		offsets = append(offsets, catalog.GroupOffset{
			Topic:       gp.Topic,
			Partition:   gp.Partition,
			Offset:      p.Offset,
			LeaderEpoch: epoch,
			Metadata:    meta,
			CommitTime:  now,
		})
	}
	slices.SortFunc(offsets, func(a, b catalog.GroupOffset) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	start := time.Now()
	wctx, cancel := c.leaseBound(ctx)
	refused, err := c.cat.CommitOffsets(wctx, req.Group, offsets)
	leaseEnded := wctx.Err() != nil && ctx.Err() == nil
	cancel()
	c.m.commitSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		c.log.Warn("groups: offset commit failed", "group", req.Group, "err", err)
		code := storeErr(ctx, err)
		if leaseEnded {
			// Another agent may coordinate the group now: the client
			// looks it up and commits there.
			code = kerr.NotCoordinator.Code
		}
		for _, a := range latest {
			codes[a.i][a.j] = code
		}
		// Duplicates of a failed partition failed too.
		for i, t := range req.Topics {
			for j, p := range t.Partitions {
				if codes[i][j] == 0 {
					if a, ok := latest[catalog.GroupPartition{Topic: t.Topic, Partition: p.Partition}]; ok {
						codes[i][j] = codes[a.i][a.j]
					}
				}
			}
		}
		return resp
	}
	// Refused partitions: their topic is gone (deleted through another
	// agent since the cache read it) or smaller than the cache says.
	for _, gp := range refused {
		c.topics.forget(gp.Topic)
		if a, ok := latest[gp]; ok {
			codes[a.i][a.j] = kerr.UnknownTopicOrPartition.Code
		}
	}
	if len(refused) > 0 {
		for i, t := range req.Topics {
			for j, p := range t.Partitions {
				if a, ok := latest[catalog.GroupPartition{Topic: t.Topic, Partition: p.Partition}]; ok && codes[i][j] == 0 {
					codes[i][j] = codes[a.i][a.j]
				}
			}
		}
	}
	c.m.commits.Add(float64(len(offsets) - len(refused)))
	return resp
}

// validateCommit checks the committer's membership, as Kafka does.
func (c *Coordinator) validateCommit(req *kmsg.OffsetCommitRequest, parts []topicPartition) int16 {
	g, _ := c.lockGroup(req.Group, false, kindClassic)
	if g == nil {
		if req.Generation < 0 {
			return 0 // a simple consumer: offsets only, no membership
		}
		// A member of a generation this coordinator never saw (it came from
		// the previous coordinator): make it rejoin.
		return kerr.IllegalGeneration.Code
	}
	defer g.mu.Unlock()
	if g.kind == kindConsumer {
		return g.cg.validateCommit(req.MemberID, req.Generation, parts, req.Version)
	}
	return g.cl.validateCommit(req.MemberID, nonEmpty(req.InstanceID), req.Generation, c.cfg.Now())
}

func (cl *classicGroup) validateCommit(memberID string, instanceID *string, generation int32, now time.Time) int16 {
	if generation < 0 && cl.state == stateEmpty {
		return 0
	}
	if generation >= 0 || memberID != "" || instanceID != nil {
		if code := cl.validateMember(memberID, instanceID); code != 0 {
			return code
		}
		if generation != cl.generation {
			return kerr.IllegalGeneration.Code
		}
		if m := cl.members[memberID]; m != nil && (cl.state == stateStable || cl.state == statePreparingRebalance) {
			// As in Kafka, a member's commit counts as its heartbeat
			// (a client without a background heartbeat commits from
			// its poll loop).
			m.lastHeartbeat = now
		}
	} else if cl.state != stateEmpty {
		return kerr.UnknownMemberID.Code
	}
	if cl.state == stateCompletingRebalance {
		return kerr.RebalanceInProgress.Code
	}
	return 0
}

// offsetFetch serves OffsetFetch: one group before v8, a batch after.
func (c *Coordinator) offsetFetch(ctx context.Context, req *kmsg.OffsetFetchRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var topics []fetchTopic
			if rg.Topics != nil {
				topics = make([]fetchTopic, 0, len(rg.Topics))
				for _, t := range rg.Topics {
					topics = append(topics, fetchTopic{t.Topic, t.Partitions})
				}
			}
			code, out := c.fetchGroup(ctx, rg.Group, topics, rg.MemberID, rg.MemberEpoch)
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group = rg.Group
			g.ErrorCode = code
			for _, t := range out {
				gt := kmsg.NewOffsetFetchResponseGroupTopic()
				gt.Topic = t.topic
				for _, p := range t.parts {
					gp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					gp.Partition, gp.Offset, gp.LeaderEpoch = p.Partition, p.Offset, p.LeaderEpoch
					gp.Metadata, gp.ErrorCode = p.Metadata, p.ErrorCode
					gt.Partitions = append(gt.Partitions, gp)
				}
				g.Topics = append(g.Topics, gt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp
	}
	var topics []fetchTopic
	if req.Topics != nil {
		for _, t := range req.Topics {
			topics = append(topics, fetchTopic{t.Topic, t.Partitions})
		}
	}
	code, out := c.fetchGroup(ctx, req.Group, topics, nil, -1)
	if req.Version < 2 && code != 0 {
		// v1 has no group-level error: every requested partition carries it.
		out = out[:0]
		for _, t := range topics {
			rt := fetchResult{topic: t.topic}
			for _, p := range t.partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.ErrorCode = p, -1, code
				rt.parts = append(rt.parts, rp)
			}
			out = append(out, rt)
		}
	}
	resp.ErrorCode = code
	for _, t := range out {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.topic
		rt.Partitions = t.parts
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

type fetchTopic struct {
	topic      string
	partitions []int32
}

type fetchResult struct {
	topic string
	parts []kmsg.OffsetFetchResponseTopicPartition
}

// fetchGroup reads one group's offsets: those of topics, or all when
// topics is nil. Partitions without a committed offset get offset -1.
func (c *Coordinator) fetchGroup(ctx context.Context, id string, topics []fetchTopic, memberID *string, memberEpoch int32) (int16, []fetchResult) {
	if code := c.gate(ctx, id); code != 0 {
		return code, nil
	}
	if memberID != nil && *memberID != "" {
		if code := c.validateFetch(id, *memberID, memberEpoch); code != 0 {
			return code, nil
		}
	}
	var parts []catalog.GroupPartition
	if topics != nil {
		parts = []catalog.GroupPartition{}
		for _, t := range topics {
			for _, p := range t.partitions {
				parts = append(parts, catalog.GroupPartition{Topic: t.topic, Partition: p})
			}
		}
		if len(parts) == 0 {
			return 0, emptyResults(topics)
		}
	}
	offsets, err := c.cat.FetchOffsets(ctx, id, parts)
	if err != nil {
		c.log.Warn("groups: offset fetch failed", "group", id, "err", err)
		return storeErr(ctx, err), nil
	}
	found := make(map[catalog.GroupPartition]catalog.GroupOffset, len(offsets))
	for _, o := range offsets {
		found[catalog.GroupPartition{Topic: o.Topic, Partition: o.Partition}] = o
	}
	if topics == nil {
		byTopic := make(map[string][]int32)
		for _, o := range offsets {
			byTopic[o.Topic] = append(byTopic[o.Topic], o.Partition)
		}
		for _, name := range sortedKeys(byTopic) {
			ps := byTopic[name]
			slices.Sort(ps)
			topics = append(topics, fetchTopic{name, ps})
		}
	}
	out := make([]fetchResult, 0, len(topics))
	for _, t := range topics {
		r := fetchResult{topic: t.topic}
		for _, p := range t.partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = p, -1, -1
			rp.Metadata = kmsg.StringPtr("")
			if o, ok := found[catalog.GroupPartition{Topic: t.topic, Partition: p}]; ok {
				rp.Offset, rp.LeaderEpoch = o.Offset, o.LeaderEpoch
				rp.Metadata = kmsg.StringPtr(o.Metadata)
			}
			r.parts = append(r.parts, rp)
		}
		out = append(out, r)
	}
	return 0, out
}

func emptyResults(topics []fetchTopic) []fetchResult {
	out := make([]fetchResult, 0, len(topics))
	for _, t := range topics {
		out = append(out, fetchResult{topic: t.topic})
	}
	return out
}

// validateFetch checks a KIP-848 member's epoch on OffsetFetch v9+ (it
// must not read offsets of partitions it no longer owns).
func (c *Coordinator) validateFetch(id, memberID string, epoch int32) int16 {
	g, _ := c.lockGroup(id, false, kindConsumer)
	if g == nil {
		return 0
	}
	defer g.mu.Unlock()
	if g.kind != kindConsumer {
		return 0
	}
	m := g.cg.members[memberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case epoch != m.epoch:
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}

// offsetDelete serves OffsetDelete: offsets of topics the group's members
// subscribe to are kept (GROUP_SUBSCRIBED_TO_TOPIC).
func (c *Coordinator) offsetDelete(ctx context.Context, req *kmsg.OffsetDeleteRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.OffsetDeleteResponse)
	if code := c.gate(ctx, req.Group); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	subscribed := func(string) bool { return false }
	g, _ := c.lockGroup(req.Group, false, kindClassic)
	if g != nil {
		if code, sub := g.deletableCheck(); code != 0 {
			g.mu.Unlock()
			resp.ErrorCode = code
			return resp
		} else if sub != nil {
			subscribed = sub
		}
		g.mu.Unlock()
	} else {
		exists, err := c.hasOffsets(ctx, req.Group)
		if err != nil {
			resp.ErrorCode = storeErr(ctx, err)
			return resp
		}
		if !exists {
			resp.ErrorCode = kerr.GroupIDNotFound.Code
			return resp
		}
	}
	var del []catalog.GroupPartition
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		sub := subscribed(t.Topic)
		// As in Kafka, a partition that does not exist is
		// UNKNOWN_TOPIC_OR_PARTITION, so a mistyped topic is not
		// reported deleted. (A deleted topic's offsets went with it.)
		topic, err := c.topics.topic(ctx, t.Topic, false)
		refreshed := false
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			if err == nil && !refreshed && (p.Partition < 0 || p.Partition >= topic.Partitions) {
				// Maybe partitions were just added: ask the catalog once.
				topic, err = c.topics.topic(ctx, t.Topic, true)
				refreshed = true
			}
			switch {
			case errors.Is(err, catalog.ErrUnknownTopic) || errors.Is(err, catalog.ErrInvalidTopic):
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case err != nil:
				c.log.Warn("groups: offset delete: topic lookup failed", "group", req.Group, "topic", t.Topic, "err", err)
				rp.ErrorCode = storeErr(ctx, err)
			case p.Partition < 0 || p.Partition >= topic.Partitions:
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case sub:
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				del = append(del, catalog.GroupPartition{Topic: t.Topic, Partition: p.Partition})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if len(del) == 0 {
		return resp
	}
	if err := c.cat.DeleteOffsets(ctx, req.Group, del); err != nil {
		c.log.Warn("groups: offset delete failed", "group", req.Group, "err", err)
		code := storeErr(ctx, err)
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if resp.Topics[i].Partitions[j].ErrorCode == 0 {
					resp.Topics[i].Partitions[j].ErrorCode = code
				}
			}
		}
	}
	return resp
}

func (c *Coordinator) hasOffsets(ctx context.Context, id string) (bool, error) {
	offsets, err := c.cat.FetchOffsets(ctx, id, nil)
	return len(offsets) > 0, err
}

// deleteGroups serves DeleteGroups: a group with members gets
// NON_EMPTY_GROUP, one that does not exist (no members, no offsets)
// GROUP_ID_NOT_FOUND.
func (c *Coordinator) deleteGroups(ctx context.Context, req *kmsg.DeleteGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, id := range req.Groups {
		rg := kmsg.NewDeleteGroupsResponseGroup()
		rg.Group = id
		rg.ErrorCode = c.deleteGroup(ctx, id)
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func (c *Coordinator) deleteGroup(ctx context.Context, id string) int16 {
	if code := c.gate(ctx, id); code != 0 {
		return code
	}
	defer c.markDeleting(id)()
	existed := false
	if g, _ := c.lockGroup(id, false, kindClassic); g != nil {
		if !g.noMembers() {
			g.mu.Unlock()
			return kerr.NonEmptyGroup.Code
		}
		g.kill(kerr.GroupIDNotFound.Code)
		c.unlock(g)
		existed = true
	}
	if !existed {
		ok, err := c.hasOffsets(ctx, id)
		if err != nil {
			return storeErr(ctx, err)
		}
		if !ok {
			return kerr.GroupIDNotFound.Code
		}
	}
	if err := c.cat.DeleteGroup(ctx, id); err != nil {
		c.log.Warn("groups: delete group failed", "group", id, "err", err)
		return storeErr(ctx, err)
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// leaseBound bounds ctx by how long this agent still holds its lease to
// coordinate (LeaseBounder): an offset write that could not finish by then
// is given up, not left to land after another agent took the group over
// and accepted newer commits. (A write already sent may still reach the
// catalog as the lease ends; the window is that of a cancel, not of the
// catalog's retries.)
func (c *Coordinator) leaseBound(ctx context.Context) (context.Context, context.CancelFunc) {
	lb, ok := c.place.(LeaseBounder)
	if !ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, max(lb.LeaseRemaining(), 0))
}
