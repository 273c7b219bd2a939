package agent

// DescribeCluster (key 60), versions 0-2: the live agents as brokers, the
// answering agent as controller. A client of a per-zone listener is told
// only of the agents with a listener for that zone, at that listener, as
// in Metadata.
//
// Differences from Kafka: there are no controllers to describe, so
// EndpointType 2 (controllers) gets UNSUPPORTED_ENDPOINT_TYPE; agents are
// never fenced; authorized operations are not computed.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (a *Agent) handleDescribeCluster(_ context.Context, r *request, req *kmsg.DescribeClusterRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	resp.ClusterAuthorizedOperations = authorizedOperationsUnknown
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = authorizedClusterOps
	}
	resp.EndpointType = req.EndpointType
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.UnsupportedEndpointType.Code
		resp.ErrorMessage = kmsg.StringPtr("only broker endpoints exist in Floe")
		return resp, nil
	}
	m := a.members.Load().onListener(r.conn.listenerZone)
	resp.ClusterID = a.cfg.ClusterID
	resp.ControllerID = m.controller()
	for _, ag := range m.agents {
		host, port := agentAddr(ag, r.conn.listenerZone)
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID, b.Host, b.Port = ag.NodeID, host, port
		if ag.Zone != "" {
			b.Rack = kmsg.StringPtr(ag.Zone)
		}
		resp.Brokers = append(resp.Brokers, b)
	}
	return resp, nil
}
