package groups

import (
	"context"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// ConsumerGroupHeartbeat v0-1 and ConsumerGroupDescribe v0-1 (KIP-848).
// The request checks are Kafka's (INVALID_REQUEST with a message), plus a
// cap of MaxMetadataBytes on a member's id and subscription.

// maxRegexBytes caps a subscription regex: compiling one costs time and
// memory in proportion to its length, on every full heartbeat.
const maxRegexBytes = 4096

// compileSubscription compiles a member's subscription regex to match, as
// Kafka's does (RE2J's matches()), whole topic names only. It serves both a
// heartbeat's regex and a stored one (state.go), so a member keeps its
// subscription on the coordinator that loads its group. The regex must be
// valid alone: wrapped first, "a)|(b" would compile, unanchored.
func compileSubscription(raw string) (*regexp.Regexp, error) {
	if _, err := syntax.Parse(raw, syntax.Perl); err != nil {
		return nil, err
	}
	return regexp.Compile("^(?:" + raw + ")$")
}

// memberTypeConsumer is ConsumerGroupDescribe's MemberType of a member
// that speaks KIP-848 (0 would be a classic member).
const memberTypeConsumer int8 = 1

func (c *Coordinator) consumerHeartbeat(ctx context.Context, clientID, clientHost string, req *kmsg.ConsumerGroupHeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
	fail := func(code int16, msg string) kmsg.Response {
		resp.ErrorCode = code
		if msg != "" {
			resp.ErrorMessage = kmsg.StringPtr(msg)
		}
		return resp
	}
	p, code, msg := c.consumerParams(clientID, clientHost, req)
	if code != 0 {
		return fail(code, msg)
	}
	if code := c.gate(ctx, req.Group); code != 0 {
		return fail(code, "")
	}
	var snap *topicSnapshot
	if p.epoch >= 0 {
		var err error
		if snap, err = c.topics.snapshot(ctx); err != nil {
			c.log.Warn("groups: consumer heartbeat: list topics failed", "group", req.Group, "err", err)
			return fail(storeErr(ctx, err), "")
		}
	}
	g, code := c.lockGroup(req.Group, p.epoch == 0, kindConsumer)
	if g == nil {
		if code == 0 {
			// A member of a group this coordinator does not know followed
			// a coordinator move: make it rejoin (Kafka says
			// GROUP_ID_NOT_FOUND, which clients surface as an error).
			code = kerr.UnknownMemberID.Code
		}
		return fail(code, "")
	}
	var res cgResult
	save := false
	func() {
		defer c.settle(g)
		res = g.consumerHeartbeat(p, snap)
		// A change of the group's epochs, target or members' partitions
		// is stored before the member hears of it (as Kafka writes its
		// records before answering), so that a new coordinator agrees
		// with what members were told. saveQueued keeps unlock from
		// starting a background save of the same change. A write that
		// failed is tried again (at most once a heartbeat interval):
		// until it is stored, a new coordinator would fence members
		// for epochs they were told.
		retry := !g.retryAt.IsZero() && !p.now.Before(g.retryAt)
		if save = (g.dirty || retry) && c.cat != nil && !g.dead; save {
			g.saveQueued = true
		}
		// Built under the lock: the assignment is the member's.
		if res.code == 0 {
			resp.MemberID = kmsg.StringPtr(res.memberID)
			resp.MemberEpoch = res.epoch
			resp.HeartbeatIntervalMillis = int32(c.cfg.ConsumerHeartbeatInterval.Milliseconds())
			if res.assign != nil {
				a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
				ids, parts := res.assign.byTopic()
				a.Topics = make([]kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic, 0, len(ids))
				for _, id := range ids {
					t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
					t.TopicID, t.Partitions = id, parts[id]
					a.Topics = append(a.Topics, t)
				}
				resp.Assignment = &a
			}
		}
	}()
	if save && c.save(g) {
		// Another agent wrote the group: this one's answer is void.
		resp = req.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		return fail(kerr.NotCoordinator.Code, "")
	}
	if res.code != 0 {
		return fail(res.code, res.msg)
	}
	return resp
}

// consumerParams validates a ConsumerGroupHeartbeat as Kafka does.
func (c *Coordinator) consumerParams(clientID, clientHost string, req *kmsg.ConsumerGroupHeartbeatRequest) (*cgParams, int16, string) {
	invalid := kerr.InvalidRequest.Code
	if req.Group == "" {
		return nil, invalid, "GroupId can't be empty."
	}
	p := &cgParams{
		memberID:   req.MemberID,
		epoch:      req.MemberEpoch,
		instanceID: req.InstanceID,
		rackID:     req.RackID,
		clientID:   clientID,
		clientHost: clientHost,
		rebalance:  req.RebalanceTimeoutMillis,
		regex:      req.SubscribedTopicRegex,
		assignor:   req.ServerAssignor,
		now:        c.cfg.Now(),
	}
	if p.memberID == "" {
		if req.Version >= 1 || req.MemberEpoch != 0 {
			return nil, invalid, "MemberId can't be empty."
		}
		p.memberID = newUUID() // v0: the coordinator names new members
	}
	switch {
	case req.InstanceID != nil && *req.InstanceID == "":
		return nil, invalid, "InstanceId can't be empty."
	case req.RackID != nil && *req.RackID == "":
		return nil, invalid, "RackId can't be empty."
	case req.MemberEpoch < -2:
		return nil, invalid, "MemberEpoch is invalid."
	case req.MemberEpoch == -2 && req.InstanceID == nil:
		return nil, invalid, "InstanceId can't be null."
	case req.MemberEpoch == 0 && req.RebalanceTimeoutMillis < 0:
		return nil, invalid, "RebalanceTimeoutMs must be provided in first request."
	case req.MemberEpoch == 0 && (req.Topics == nil || len(req.Topics) > 0):
		return nil, invalid, "TopicPartitions must be empty when (re-)joining."
	case req.MemberEpoch == 0 && req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil:
		return nil, invalid, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request."
	case req.ServerAssignor != nil && !slices.Contains(c.cfg.ConsumerAssignors, *req.ServerAssignor):
		return nil, kerr.UnsupportedAssignor.Code, fmt.Sprintf("ServerAssignor %s is not supported. Supported assignors: %v.", *req.ServerAssignor, c.cfg.ConsumerAssignors)
	}
	size := int64(len(p.memberID) + len(clientID) + len(clientHost))
	if req.InstanceID != nil {
		size += int64(len(*req.InstanceID))
	}
	if req.RackID != nil {
		size += int64(len(*req.RackID))
	}
	if req.SubscribedTopicNames != nil {
		names := make([]string, 0, len(req.SubscribedTopicNames))
		for _, n := range req.SubscribedTopicNames {
			size += int64(len(n))
			if size > int64(c.cfg.MaxMetadataBytes) {
				break
			}
			names = append(names, n)
		}
		slices.Sort(names)
		p.names = slices.Compact(names)
	}
	if r := req.SubscribedTopicRegex; r != nil {
		if len(*r) > maxRegexBytes {
			return nil, kerr.InvalidRegularExpression.Code, fmt.Sprintf("SubscribedTopicRegex is longer than %d bytes", maxRegexBytes)
		}
		size += int64(len(*r))
		if size <= int64(c.cfg.MaxMetadataBytes) && *r != "" {
			re, err := compileSubscription(*r)
			if err != nil {
				return nil, kerr.InvalidRegularExpression.Code, fmt.Sprintf("SubscribedTopicRegex %q is not a valid regular expression: %v", *r, err)
			}
			p.re = re
		}
	}
	if size > int64(c.cfg.MaxMetadataBytes) {
		return nil, invalid, fmt.Sprintf("the member's id and subscription exceed %d bytes", c.cfg.MaxMetadataBytes)
	}
	if req.Topics != nil {
		p.owned = tpSet{}
		for _, t := range req.Topics {
			for _, part := range t.Partitions {
				p.owned[topicPartition{catalog.TopicID(t.TopicID), part}] = struct{}{}
			}
		}
	}
	p.full = req.MemberEpoch == 0 || (req.RebalanceTimeoutMillis != -1 &&
		(req.SubscribedTopicNames != nil || req.SubscribedTopicRegex != nil) && req.Topics != nil)
	return p, 0, ""
}

// consumerDescribe serves ConsumerGroupDescribe.
func (c *Coordinator) consumerDescribe(ctx context.Context, req *kmsg.ConsumerGroupDescribeRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	snap, _ := c.topics.snapshot(ctx) // for topic names only: stale or none is fine
	for _, id := range req.Groups {
		dg := kmsg.NewConsumerGroupDescribeResponseGroup()
		dg.Group = id
		if req.IncludeAuthorizedOperations {
			dg.AuthorizedOperations = authorizedGroupOps
		}
		c.describeConsumerGroup(ctx, snap, &dg)
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *Coordinator) describeConsumerGroup(ctx context.Context, snap *topicSnapshot, dg *kmsg.ConsumerGroupDescribeResponseGroup) {
	if code := c.gate(ctx, dg.Group); code != 0 {
		dg.ErrorCode = code
		return
	}
	g, _ := c.lockGroup(dg.Group, false, kindConsumer)
	if g == nil {
		dg.ErrorCode = kerr.GroupIDNotFound.Code
		dg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s not found.", dg.Group))
		return
	}
	defer g.mu.Unlock()
	if g.kind != kindConsumer {
		dg.ErrorCode = kerr.GroupIDNotFound.Code
		dg.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("Group %s is not a consumer group.", dg.Group))
		return
	}
	cg := &g.cg
	dg.State = cg.state()
	dg.Epoch, dg.AssignmentEpoch = cg.epoch, cg.assignmentEpoch
	dg.AssignorName = cg.assignor
	if dg.AssignorName == "" {
		dg.AssignorName = c.cfg.ConsumerAssignors[0]
	}
	for _, m := range cg.sortedConsumers() {
		dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
		dm.MemberID, dm.InstanceID, dm.RackID = m.id, m.instanceID, m.rackID
		dm.MemberEpoch = m.epoch
		if m.left {
			dm.MemberEpoch = -2
		}
		dm.ClientID, dm.ClientHost = m.clientID, m.clientHost
		dm.SubscribedTopics = append([]string{}, m.names...)
		if m.regex != "" {
			dm.SubscribedTopicRegex = kmsg.StringPtr(m.regex)
		}
		dm.Assignment = describeAssignment(m.assigned, snap)
		dm.TargetAssignment = describeAssignment(cg.target[m.id], snap)
		dm.MemberType = memberTypeConsumer
		dg.Members = append(dg.Members, dm)
	}
}
