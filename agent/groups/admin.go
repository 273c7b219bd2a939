package groups

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator v0-6 (batched keys v4+), ListGroups v0-5 (state filter
// v4+, type filter v5+) and DescribeGroups v0-6.

// Coordinator key types.
const (
	keyTypeGroup       int8 = 0
	keyTypeTransaction int8 = 1
	keyTypeShare       int8 = 2
)

// authorizedGroupOps is the DescribeGroups operations bitfield when a client
// asks for it: READ, DELETE and DESCRIBE (bits 3, 6, 8). This package does
// no authorization; the agent refuses unauthorized requests before Handle.
const authorizedGroupOps int32 = 1<<3 | 1<<6 | 1<<8

// findCoordinator serves FindCoordinator from Placement. It works before
// Run starts: it only says where groups live.
func (c *Coordinator) findCoordinator(ctx context.Context, req *kmsg.FindCoordinatorRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	for _, key := range keys {
		rc := kmsg.NewFindCoordinatorResponseCoordinator()
		rc.Key, rc.NodeID, rc.Port = key, -1, -1
		switch req.CoordinatorType {
		case keyTypeGroup:
			if key == "" {
				rc.ErrorCode = kerr.InvalidRequest.Code
				rc.ErrorMessage = kmsg.StringPtr("the group id is empty")
				break
			}
			node, host, port, err := c.place.Coordinator(ctx, key)
			if err != nil && !errors.Is(err, ErrJoining) {
				c.warnPlacement(key, err)
				rc.ErrorCode = kerr.CoordinatorNotAvailable.Code
				rc.ErrorMessage = kmsg.StringPtr("no coordinator available: " + err.Error())
				break
			}
			rc.NodeID, rc.Host, rc.Port = node, host, port
		case keyTypeTransaction:
			// What Kafka answers a producer not authorized for its
			// transactional id: clients fail at once with a fatal error
			// naming the reason. COORDINATOR_NOT_AVAILABLE would have them
			// retry until their init timeout (Java: 60 s), and end in a
			// retriable error that applications retry forever.
			rc.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
			rc.ErrorMessage = kmsg.StringPtr("Floe has no transaction coordinator")
		case keyTypeShare:
			rc.ErrorCode = kerr.InvalidRequest.Code
			rc.ErrorMessage = kmsg.StringPtr("Floe does not support share groups")
		default:
			rc.ErrorCode = kerr.InvalidRequest.Code
			rc.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("unknown coordinator key type %d", req.CoordinatorType))
		}
		resp.Coordinators = append(resp.Coordinators, rc)
	}
	if req.Version < 4 {
		rc := resp.Coordinators[0]
		resp.Coordinators = nil
		resp.ErrorCode, resp.ErrorMessage = rc.ErrorCode, rc.ErrorMessage
		resp.NodeID, resp.Host, resp.Port = rc.NodeID, rc.Host, rc.Port
	}
	return resp
}

// groupSummary is a group as ListGroups shows it.
type groupSummary struct {
	id           string
	protocolType string
	state        string
	kind         groupKind
}

// summary describes g; the caller holds g's lock.
func (g *group) summary() groupSummary {
	if g.kind == kindConsumer {
		return groupSummary{id: g.id, protocolType: "consumer", state: g.cg.state(), kind: kindConsumer}
	}
	return groupSummary{id: g.id, protocolType: g.cl.protocolType, state: g.cl.state.String(), kind: kindClassic}
}

// listGroups serves ListGroups: the groups this node coordinates, those
// with members and those that only have committed offsets (Empty, no
// protocol type, like Kafka's simple groups).
func (c *Coordinator) listGroups(ctx context.Context, req *kmsg.ListGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	switch c.running.Load() {
	case 0:
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp
	case 2:
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp
	}
	seen := make(map[string]groupSummary)
	for _, id := range c.groupIDs() {
		g, _ := c.lockGroup(id, false, kindClassic)
		if g == nil {
			continue
		}
		func() {
			defer c.settleQuiet(g)
			seen[id] = g.summary()
		}()
	}
	names, err := c.cat.ListGroups(ctx)
	if err != nil {
		c.log.Warn("groups: list groups failed", "err", err)
		resp.ErrorCode = storeErr(ctx, err)
		return resp
	}
	self := c.place.Self()
	for _, id := range names {
		if _, ok := seen[id]; ok {
			continue
		}
		node, _, _, err := c.place.Coordinator(ctx, id)
		if errors.Is(err, ErrJoining) {
			// The group is moving here while this agent's join settles:
			// no agent would list it. As Kafka's coordinator while it
			// loads, refuse the whole list; clients retry it.
			resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
			resp.Groups = nil
			return resp
		}
		if err != nil || node != self {
			continue
		}
		seen[id] = groupSummary{id: id, state: stateEmpty.String(), kind: kindClassic}
	}
	states := lowerSet(req.StatesFilter)
	types := lowerSet(req.TypesFilter)
	for _, id := range sortedKeys(seen) {
		s := seen[id]
		if len(states) > 0 && !states[strings.ToLower(s.state)] {
			continue
		}
		if len(types) > 0 && !types[s.kind.String()] {
			continue
		}
		rg := kmsg.NewListGroupsResponseGroup()
		rg.Group, rg.ProtocolType, rg.GroupState, rg.GroupType = s.id, s.protocolType, s.state, s.kind.String()
		resp.Groups = append(resp.Groups, rg)
	}
	return resp
}

func lowerSet(ss []string) map[string]bool {
	m := make(map[string]bool, len(ss))
	for _, s := range ss {
		m[strings.ToLower(s)] = true
	}
	return m
}

// describeGroups serves DescribeGroups for classic groups. A group known
// only by its committed offsets is Empty; one that does not exist is Dead
// (and GROUP_ID_NOT_FOUND from v6, KIP-1043), as is a KIP-848 group.
func (c *Coordinator) describeGroups(ctx context.Context, req *kmsg.DescribeGroupsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, id := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = id
		if req.IncludeAuthorizedOperations {
			dg.AuthorizedOperations = authorizedGroupOps
		}
		c.describeGroup(ctx, req.Version, &dg)
		resp.Groups = append(resp.Groups, dg)
	}
	return resp
}

func (c *Coordinator) describeGroup(ctx context.Context, version int16, dg *kmsg.DescribeGroupsResponseGroup) {
	if code := c.gate(ctx, dg.Group); code != 0 {
		dg.ErrorCode = code
		return
	}
	notFound := func(msg string) {
		dg.State = "Dead"
		if version >= 6 {
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			dg.ErrorMessage = kmsg.StringPtr(msg)
		}
	}
	g, _ := c.lockGroup(dg.Group, false, kindClassic)
	if g == nil {
		ok, err := c.hasOffsets(ctx, dg.Group)
		switch {
		case err != nil:
			dg.ErrorCode = storeErr(ctx, err)
		case ok:
			dg.State = stateEmpty.String()
		default:
			notFound(fmt.Sprintf("Group %s not found.", dg.Group))
		}
		return
	}
	defer g.mu.Unlock()
	if g.kind == kindConsumer {
		notFound(fmt.Sprintf("Group %s is not a classic group.", dg.Group))
		return
	}
	cl := &g.cl
	dg.State = cl.state.String()
	dg.ProtocolType = cl.protocolType
	stable := cl.state == stateStable
	if stable {
		dg.Protocol = cl.protocol
	}
	for _, m := range cl.sortedMembers() {
		dm := kmsg.NewDescribeGroupsResponseGroupMember()
		dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
		if stable {
			dm.ProtocolMetadata = m.metadataFor(cl.protocol)
			dm.MemberAssignment = m.assignment
		}
		dg.Members = append(dg.Members, dm)
	}
}

// deletableCheck is OffsetDelete's check of a group with members: NON_EMPTY_GROUP
// unless it is a consumer group, else which topics it subscribes to. The
// caller holds g's lock.
func (g *group) deletableCheck() (int16, func(string) bool) {
	if g.noMembers() {
		return 0, nil
	}
	if g.kind == kindConsumer {
		return 0, g.cg.subscribes(g.c.topics.last())
	}
	cl := &g.cl
	if cl.protocolType != "consumer" {
		return kerr.NonEmptyGroup.Code, nil
	}
	topics, ok := cl.subscribedTopics()
	if !ok {
		// Undecodable subscriptions: keep every offset rather than delete
		// one the group still reads.
		return 0, func(string) bool { return true }
	}
	return 0, func(t string) bool { return topics[t] }
}

// subscribedTopics decodes the members' consumer protocol subscriptions
// (for the selected protocol, or all while none is selected).
func (cl *classicGroup) subscribedTopics() (map[string]bool, bool) {
	topics := make(map[string]bool)
	for _, m := range cl.members {
		for _, p := range m.protocols {
			if cl.protocol != "" && p.name != cl.protocol {
				continue
			}
			var meta kmsg.ConsumerMemberMetadata
			if err := meta.ReadFrom(p.metadata); err != nil {
				return nil, false
			}
			for _, t := range meta.Topics {
				topics[t] = true
			}
		}
	}
	return topics, true
}
