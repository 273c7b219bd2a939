package agent

// AlterConfigs (key 33), versions 0-2: replaces a topic's explicit configs
// with exactly the given set (configs with a null value are left out).
//
// Differences from Kafka: broker configs are static (set by flags), so
// broker resources get INVALID_REQUEST; other resource types too.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleAlterConfigs(ctx context.Context, _ *request, req *kmsg.AlterConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		or := kmsg.NewAlterConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		code, msg := a.alterTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(catalog.Topic) (map[string]string, error) {
			configs := make(map[string]string, len(rr.Configs))
			for _, c := range rr.Configs {
				if c.Value != nil {
					configs[c.Name] = *c.Value
				}
			}
			return configs, catalog.ValidateConfigs(configs)
		}, func(configs map[string]string) (catalog.Topic, error) {
			return a.cat.ReplaceTopicConfigs(ctx, rr.ResourceName, configs)
		})
		or.ErrorCode = code
		if msg != "" {
			or.ErrorMessage = kmsg.StringPtr(msg)
		}
		resp.Resources = append(resp.Resources, or)
	}
	return resp, nil
}

// alterTopicConfigs is the shared body of AlterConfigs and
// IncrementalAlterConfigs: check the resource, compute and validate the
// new configs, and store them unless validateOnly.
func (a *Agent) alterTopicConfigs(ctx context.Context, typ kmsg.ConfigResourceType, name string, validateOnly bool,
	compute func(catalog.Topic) (map[string]string, error), store func(map[string]string) (catalog.Topic, error)) (int16, string) {
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
	case kmsg.ConfigResourceTypeBroker:
		return kerr.InvalidRequest.Code, "broker configs are static in Floe; set them with the agent's flags"
	default:
		return kerr.InvalidRequest.Code, fmt.Sprintf("resource type %v is not supported", typ)
	}
	t, err := a.cat.Topic(ctx, name)
	if err != nil {
		return adminErr(err)
	}
	configs, err := compute(t)
	if err != nil {
		return adminErr(err)
	}
	if validateOnly {
		return 0, ""
	}
	t, err = store(configs)
	if err != nil {
		code, msg := adminErr(err)
		if code == kerr.UnknownServerError.Code {
			a.log.Warn("altering topic configs failed", "topic", name, "err", err)
		}
		return code, msg
	}
	a.cacheTopic(t)
	return 0, ""
}
