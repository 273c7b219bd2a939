package agent

// IncrementalAlterConfigs (key 44), versions 0-1: SET, DELETE, APPEND and
// SUBTRACT (the last two on list configs such as cleanup.policy) on topic
// configs, in one catalog update per resource.
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
	repeated := repeatedKeys(req.Resources, func(rr kmsg.IncrementalAlterConfigsRequestResource) configResource {
		return configResource{rr.ResourceType, rr.ResourceName}
	})
	for _, rr := range req.Resources {
		or := kmsg.NewIncrementalAlterConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		entries := make([]configEntry, len(rr.Configs))
		ops := make([]catalog.ConfigOp, 0, len(rr.Configs))
		for i, c := range rr.Configs {
			entries[i] = configEntry{name: c.Name, nullValue: c.Value == nil && c.Op != kmsg.IncrementalAlterConfigOpDelete}
			op := catalog.ConfigOp{Key: c.Name, Op: catalog.ConfigOpKind(c.Op)}
			if c.Value != nil {
				op.Value = *c.Value
			}
			ops = append(ops, op)
		}
		code, msg := malformedConfigs(repeated[configResource{rr.ResourceType, rr.ResourceName}], entries)
		if code == 0 {
			code, msg = a.alterTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(t catalog.Topic) (map[string]string, error) {
				return catalog.ApplyConfigOps(maps.Clone(t.Configs), ops)
			}, func(map[string]string) (catalog.Topic, error) {
				return a.cat.AlterTopicConfigs(ctx, rr.ResourceName, ops)
			})
		}
		or.ErrorCode = code
		if msg != "" {
			or.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Resources = append(resp.Resources, or)
	}
	return resp, nil
}
