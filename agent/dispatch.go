package agent

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// API keys the agent refers to by name.
const (
	produceKey     int16 = 0
	fetchKey       int16 = 1
	apiVersionsKey int16 = 18
)

// largeAnswer reports whether an API's response can be much larger than
// its request (a whole cluster's topics, a group's committed offsets,
// every config of each named topic) or, for Fetch, as large as the
// client asks: the connection builds one such response at a time (see
// pending.prevLarge).
func largeAnswer(key int16) bool {
	switch kmsg.Key(key) {
	case kmsg.Fetch, kmsg.Metadata, kmsg.OffsetFetch, kmsg.DescribeGroups, kmsg.ListGroups, kmsg.DescribeConfigs:
		return true
	}
	return false
}

// request is one decoded request as a handler sees it.
type request struct {
	conn *conn
	p    *pending
	hdr  requestHeader
	kreq kmsg.Request
}

// inOrder runs f after every earlier request of the connection passed its
// ordered section (see pending). Produce appends to the WAL in it.
func (r *request) inOrder(f func()) { r.p.passOrdered(f) }

// zone is the client's zone: named in its client id (floe_az=<zone>), else
// that of the per-zone listener it connected to.
func (r *request) zone() string {
	if z := clientZone(r.hdr.clientID); z != "" {
		return z
	}
	return r.conn.listenerZone
}

// handlerFunc handles one request. A nil response with a nil error sends no
// response (acks=0 produce); an error closes the connection after the
// earlier responses.
type handlerFunc func(ctx context.Context, r *request) (kmsg.Response, error)

// apiSpec is one served API: the versions served and its handler.
type apiSpec struct {
	key  int16
	name string
	// min and max are the versions served; advertisedMin is what
	// ApiVersions lists (below min only for Produce, see produce.go).
	min, max, advertisedMin int16
	// ordered handlers pass their connection's ordered section themselves
	// (request.inOrder); others pass it before they start.
	ordered bool
	handle  handlerFunc
}

// apiTable is indexed by API key; nil entries are not served.
type apiTable [kmsg.MaxKey + 1]*apiSpec

func (t *apiTable) lookup(key int16) *apiSpec {
	if key < 0 || int(key) >= len(t) {
		return nil
	}
	return t[key]
}

// typed adapts a handler of one request type.
func typed[T kmsg.Request](f func(ctx context.Context, r *request, req T) (kmsg.Response, error)) handlerFunc {
	return func(ctx context.Context, r *request) (kmsg.Response, error) {
		req, ok := r.kreq.(T)
		if !ok {
			return nil, fmt.Errorf("agent: request %T is not the handler's type", r.kreq)
		}
		return f(ctx, r, req)
	}
}

// newAPITable is the one list of served APIs. Versions are those Kafka 4.1
// serves, capped at what kmsg knows; see COMPATIBILITY.md. Adding an API
// is one line here plus its file. The consumer-group APIs are the
// coordinator's (agent/groups), at the versions it lists.
func (a *Agent) newAPITable() apiTable {
	specs := []apiSpec{
		{key: 0, name: "Produce", min: 3, max: 13, advertisedMin: 0, ordered: true, handle: typed(a.handleProduce)},
		{key: 1, name: "Fetch", min: 4, max: 18, handle: typed(a.handleFetch)},
		{key: 2, name: "ListOffsets", min: 1, max: 10, handle: typed(a.handleListOffsets)},
		{key: 3, name: "Metadata", min: 0, max: 13, handle: typed(a.handleMetadata)},
		{key: 17, name: "SASLHandshake", min: 0, max: 1, handle: typed(a.handleSASLHandshake)},
		{key: 18, name: "ApiVersions", min: 0, max: 4, handle: typed(a.handleAPIVersions)},
		{key: 19, name: "CreateTopics", min: 2, max: 7, handle: typed(a.handleCreateTopics)},
		{key: 20, name: "DeleteTopics", min: 1, max: 6, handle: typed(a.handleDeleteTopics)},
		{key: 21, name: "DeleteRecords", min: 0, max: 2, handle: typed(a.handleDeleteRecords)},
		{key: 22, name: "InitProducerID", min: 0, max: 5, handle: typed(a.handleInitProducerID)},
		{key: 23, name: "OffsetForLeaderEpoch", min: 2, max: 4, handle: typed(a.handleOffsetForLeaderEpoch)},
		{key: 32, name: "DescribeConfigs", min: 1, max: 4, handle: typed(a.handleDescribeConfigs)},
		{key: 33, name: "AlterConfigs", min: 0, max: 2, handle: typed(a.handleAlterConfigs)},
		{key: 36, name: "SASLAuthenticate", min: 0, max: 2, handle: typed(a.handleSASLAuthenticate)},
		{key: 37, name: "CreatePartitions", min: 0, max: 3, handle: typed(a.handleCreatePartitions)},
		{key: 44, name: "IncrementalAlterConfigs", min: 0, max: 1, handle: typed(a.handleIncrementalAlterConfigs)},
		{key: 60, name: "DescribeCluster", min: 0, max: 2, handle: typed(a.handleDescribeCluster)},
	}
	if a.groups != nil {
		for _, api := range a.groups.APIs() {
			spec := apiSpec{key: api.Key, name: kmsg.NameForKey(api.Key), min: api.MinVersion, max: api.MaxVersion, handle: a.handleGroup}
			if api.Key == int16(kmsg.OffsetCommit) {
				spec.ordered, spec.handle = true, a.handleGroupInOrder
			}
			specs = append(specs, spec)
		}
	}
	var t apiTable
	for i := range specs {
		s := &specs[i]
		if s.advertisedMin == 0 && s.key != produceKey {
			s.advertisedMin = s.min
		}
		// Never serve a version kmsg cannot encode.
		if kmax := kmsg.RequestForKey(s.key).MaxVersion(); s.max > kmax {
			s.max = kmax
		}
		t[s.key] = s
	}
	return t
}

// name is the metrics label of an API key: its name if served, "other"
// otherwise, so the label set stays bounded.
func (t *apiTable) name(key int16) string {
	if s := t.lookup(key); s != nil {
		return s.name
	}
	return "other"
}

// handleGroup passes a consumer-group request to the coordinator. The
// context is the connection's: JoinGroup and SyncGroup wait for the whole
// rebalance (up to the members' rebalance timeout), so they must end when
// the client goes away, not after a per-request deadline. When the agent
// stops, the coordinator answers its waiting calls NOT_COORDINATOR.
func (a *Agent) handleGroup(ctx context.Context, r *request) (kmsg.Response, error) {
	if z := r.conn.listenerZone; z != "" {
		ctx = context.WithValue(ctx, listenerZoneKey{}, z)
	}
	return a.groups.Handle(ctx, r.hdr.clientID, r.conn.clientHost(), r.kreq)
}

// handleGroupInOrder handles a group request whole in the connection's
// ordered section. OffsetCommit uses it: Kafka handles a connection's
// requests one at a time, and a consumer committing after every poll
// (commitAsync) pipelines its commits; handled concurrently, an earlier
// commit's catalog write could land after a later one's and move the
// committed offset back (records consumed again after a restart).
func (a *Agent) handleGroupInOrder(ctx context.Context, r *request) (resp kmsg.Response, err error) {
	r.inOrder(func() { resp, err = a.handleGroup(ctx, r) })
	return resp, err
}

func stack() string { return string(debug.Stack()) }
