package groups

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The classic protocol's requests: JoinGroup v0-9, SyncGroup v0-5,
// Heartbeat v0-4, LeaveGroup v0-5. These functions validate the request,
// run the state machine (classic.go) under the group's lock and wait,
// without the lock, when the member must wait for the rebalance.

// joinGroup serves JoinGroup. Beyond Kafka's checks, an instance id,
// protocol names and metadata above MaxMetadataBytes get MESSAGE_TOO_LARGE.
func (c *Coordinator) joinGroup(ctx context.Context, clientID, clientHost string, req *kmsg.JoinGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	resp.Generation = -1
	resp.MemberID = req.MemberID
	fail := func(code int16) (kmsg.Response, error) {
		resp.ErrorCode = code
		return resp, nil
	}
	if code := c.gate(ctx, req.Group); code != 0 {
		return fail(code)
	}
	p := &joinParams{
		version:        req.Version,
		memberID:       req.MemberID,
		instanceID:     nonEmpty(req.InstanceID),
		clientID:       clientID,
		clientHost:     clientHost,
		sessionTimeout: millis(req.SessionTimeoutMillis),
		protocolType:   req.ProtocolType,
		now:            c.cfg.Now(),
	}
	if p.sessionTimeout < c.cfg.MinSessionTimeout || p.sessionTimeout > c.cfg.MaxSessionTimeout {
		return fail(kerr.InvalidSessionTimeout.Code)
	}
	p.rebalanceTimeout = millis(req.RebalanceTimeoutMillis)
	if req.Version == 0 || req.RebalanceTimeoutMillis <= 0 {
		p.rebalanceTimeout = p.sessionTimeout
	}
	if req.ProtocolType == "" || len(req.Protocols) == 0 {
		return fail(kerr.InconsistentGroupProtocol.Code)
	}
	size := int64(len(req.ProtocolType))
	if p.instanceID != nil {
		size += int64(len(*p.instanceID))
	}
	p.protocols = make([]protocol, 0, len(req.Protocols))
	for _, pr := range req.Protocols {
		size += int64(len(pr.Name) + len(pr.Metadata))
		if size > int64(c.cfg.MaxMetadataBytes) {
			return fail(kerr.MessageTooLarge.Code)
		}
		// Copy: the request's buffers belong to the connection.
		p.protocols = append(p.protocols, protocol{name: pr.Name, metadata: append([]byte{}, pr.Metadata...)})
	}
	g, code := c.lockGroup(req.Group, req.MemberID == "", kindClassic)
	if g == nil {
		if code == 0 {
			code = kerr.UnknownMemberID.Code
		}
		return fail(code)
	}
	var wait <-chan joinResult
	var res joinResult
	func() {
		defer c.settle(g)
		wait, res = g.join(p)
	}()
	if wait != nil {
		select {
		case res = <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp.ErrorCode = res.code
	resp.Generation = res.generation
	resp.MemberID = res.memberID
	if res.code != 0 {
		return resp, nil
	}
	resp.ProtocolType = kmsg.StringPtr(res.protocolType)
	resp.Protocol = kmsg.StringPtr(res.protocol)
	resp.LeaderID = res.leader
	resp.SkipAssignment = res.skipAssignment
	resp.Members = res.members
	return resp, nil
}

// syncGroup serves SyncGroup. An assignment above MaxMetadataBytes gets the
// leader MESSAGE_TOO_LARGE and stores nothing; the other members' SyncGroup
// then times out into a new rebalance.
func (c *Coordinator) syncGroup(ctx context.Context, req *kmsg.SyncGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	if code := c.gate(ctx, req.Group); code != 0 {
		if code == kerr.CoordinatorLoadInProgress.Code {
			// As Kafka's coordinator while it loads a group: the member
			// rejoins at once, without looking the coordinator up again.
			// The Java consumer's SyncGroup handler takes
			// COORDINATOR_LOAD_IN_PROGRESS for a fatal error.
			code = kerr.RebalanceInProgress.Code
		}
		resp.ErrorCode = code
		return resp, nil
	}
	g, _ := c.lockGroup(req.Group, false, kindClassic)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp, nil
	}
	p := &syncParams{
		memberID:     req.MemberID,
		instanceID:   nonEmpty(req.InstanceID),
		generation:   req.Generation,
		protocolType: req.ProtocolType,
		protocol:     req.Protocol,
		assignments:  req.GroupAssignment,
		now:          c.cfg.Now(),
	}
	var wait <-chan syncResult
	var res syncResult
	var protocolType, proto string
	func() {
		defer c.settle(g)
		wait, res = g.sync(p)
		protocolType, proto = g.cl.protocolType, g.cl.protocol
	}()
	if res.save {
		c.save(g)
	}
	if wait != nil {
		select {
		case res = <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	resp.ErrorCode = res.code
	if res.code == 0 {
		resp.ProtocolType = kmsg.StringPtr(protocolType)
		resp.Protocol = kmsg.StringPtr(proto)
		resp.MemberAssignment = res.assignment
	}
	return resp, nil
}

// heartbeat serves Heartbeat.
func (c *Coordinator) heartbeat(ctx context.Context, req *kmsg.HeartbeatRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	if code := c.gate(ctx, req.Group); code != 0 {
		if code == kerr.CoordinatorLoadInProgress.Code && c.running.Load() == 1 {
			// The group is placed here and this agent's join is
			// settling: as Kafka's coordinator, which "blindly responds"
			// while it loads the group. The Java consumer takes this
			// error for an unexpected one in a heartbeat and backs off,
			// logging. (Before Run the group may be placed anywhere.)
			code = 0
		}
		resp.ErrorCode = code
		return resp
	}
	g, _ := c.lockGroup(req.Group, false, kindClassic)
	if g == nil {
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp
	}
	defer c.settleQuiet(g)
	resp.ErrorCode = g.heartbeat(req.MemberID, nonEmpty(req.InstanceID), req.Generation, c.cfg.Now())
	return resp
}

// leaveGroup serves LeaveGroup: one member before v3, a batch after
// (KIP-345), each with its own error.
func (c *Coordinator) leaveGroup(ctx context.Context, req *kmsg.LeaveGroupRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	if code := c.gate(ctx, req.Group); code != 0 {
		resp.ErrorCode = code
		return resp
	}
	members := req.Members
	if req.Version < 3 {
		members = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g, _ := c.lockGroup(req.Group, false, kindClassic)
	if g != nil {
		defer c.settle(g)
	}
	now := c.cfg.Now()
	for _, m := range members {
		code := kerr.UnknownMemberID.Code
		if g != nil {
			code = g.leave(m.MemberID, nonEmpty(m.InstanceID), now)
		}
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID = m.MemberID
		rm.InstanceID = m.InstanceID
		rm.ErrorCode = code
		resp.Members = append(resp.Members, rm)
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

func millis(ms int32) time.Duration { return time.Duration(ms) * time.Millisecond }

// nonEmpty treats an empty instance id like none: Kafka clients never send
// one, and an empty key would make every such member the same instance.
func nonEmpty(s *string) *string {
	if s == nil || *s == "" {
		return nil
	}
	v := *s
	return &v
}
