package agent

// AlterConfigs (key 33), versions 0-2: replaces a topic's explicit configs
// with exactly the given set.
//
// Differences from Kafka: broker configs are static (set by flags), so
// broker resources get INVALID_REQUEST; other resource types too.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleAlterConfigs(ctx context.Context, _ *request, req *kmsg.AlterConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	repeated := repeatedKeys(req.Resources, func(rr kmsg.AlterConfigsRequestResource) configResource {
		return configResource{rr.ResourceType, rr.ResourceName}
	})
	for _, rr := range req.Resources {
		or := kmsg.NewAlterConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		entries := make([]configEntry, len(rr.Configs))
		for i, c := range rr.Configs {
			// Kafka refuses a null rather than read it as a key left out.
			entries[i] = configEntry{name: c.Name, nullValue: c.Value == nil}
		}
		code, msg := malformedConfigs(repeated[configResource{rr.ResourceType, rr.ResourceName}], entries)
		if code == 0 {
			code, msg = a.alterTopicConfigs(ctx, rr.ResourceType, rr.ResourceName, req.ValidateOnly, func(catalog.Topic) (map[string]string, error) {
				configs := make(map[string]string, len(rr.Configs))
				for _, c := range rr.Configs {
					configs[c.Name] = *c.Value
				}
				return configs, catalog.ValidateConfigs(configs)
			}, func(configs map[string]string) (catalog.Topic, error) {
				return a.cat.ReplaceTopicConfigs(ctx, rr.ResourceName, configs)
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

// configResource identifies a resource within one alter request.
type configResource struct {
	typ  kmsg.ConfigResourceType
	name string
}

// configEntry is what malformedConfigs needs of one config in a request.
type configEntry struct {
	name      string
	nullValue bool // null where the operation needs a value
}

// malformedConfigs refuses a resource the way Kafka's broker does before
// it looks at the resource type or forwards to the controller
// (ConfigAdminManager.preprocess): every copy of a repeated resource, a
// config named twice, and null values. The whole resource is refused, so
// nothing in it is applied; the other resources in the request are.
// Messages are Kafka's, which tools may show verbatim.
func malformedConfigs(repeated bool, entries []configEntry) (int16, string) {
	if repeated {
		return kerr.InvalidRequest.Code, "Each resource must appear at most once."
	}
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if seen[e.name] {
			return kerr.InvalidRequest.Code, "Error due to duplicate config keys"
		}
		seen[e.name] = true
	}
	var nulls []string
	for _, e := range entries {
		if e.nullValue {
			nulls = append(nulls, e.name)
		}
	}
	if len(nulls) > 0 {
		return kerr.InvalidRequest.Code, "Null value not supported for : " + strings.Join(nulls, ", ")
	}
	return 0, ""
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
	// As Kafka's controller: the empty name (the default topic resource,
	// which Kafka does not let clients alter) is INVALID_REQUEST, a name
	// no topic can have INVALID_TOPIC_EXCEPTION.
	if name == "" {
		return kerr.InvalidRequest.Code, "default topic resources are not allowed"
	}
	if err := catalog.ValidateTopicName(name); err != nil {
		return adminErr(err)
	}
	t, err := a.cat.Topic(ctx, name)
	if errors.Is(err, catalog.ErrUnknownTopic) {
		// Kafka's controller validates the values before it looks for
		// the topic: a bad value is INVALID_CONFIG whether or not the
		// topic exists. Checked against the defaults, so only what is
		// wrong in itself (the cross-config checks need the topic).
		if _, cerr := compute(catalog.Topic{Name: name}); errors.Is(cerr, catalog.ErrInvalidConfig) {
			return adminErr(cerr)
		}
	}
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
