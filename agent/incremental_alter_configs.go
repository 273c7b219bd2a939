package agent

// IncrementalAlterConfigs (key 44), versions 0-1: SET, DELETE, APPEND and
// SUBTRACT (the last two on list configs such as cleanup.policy) on topic
// configs, applied in order in one catalog update.
//
// Differences from Kafka: broker configs are static (set by flags), so
// broker resources get INVALID_REQUEST; other resource types too.

import (
	"context"
	"maps"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleIncrementalAlterConfigs(ctx context.Context, _ *request, req *kmsg.IncrementalAlterConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	for _, rr := range req.Resources {
		or := kmsg.NewIncrementalAlterConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		ops := make([]catalog.ConfigOp, 0, len(rr.Configs))
		for _, c := range rr.Configs {
			op := catalog.ConfigOp{Key: c.Name, Op: catalog.ConfigOpKind(c.Op)}
			if c.Value != nil {
				op.Value = *c.Value
			}
			ops = append(ops, op)
		}
		code, msg := a.alterTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(t catalog.Topic) (map[string]string, error) {
			return catalog.ApplyConfigOps(maps.Clone(t.Configs), ops)
		}, func(map[string]string) (catalog.Topic, error) {
			return a.cat.AlterTopicConfigs(ctx, rr.ResourceName, ops)
		})
		or.ErrorCode = code
		if msg != "" {
			or.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Resources = append(resp.Resources, or)
	}
	return resp, nil
}
