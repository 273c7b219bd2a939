package agent

// DescribeConfigs (key 32), versions 1-4.
//
// Topics: every config of catalog.ConfigDefs with its value, source
// DYNAMIC_TOPIC_CONFIG when set on the topic, DEFAULT_CONFIG otherwise,
// synonyms and documentation when asked. Brokers: a small read-only set
// reflecting the agent's flags (broker.id, broker.rack,
// auto.create.topics.enable, num.partitions, default.replication.factor,
// min.insync.replicas, message.max.bytes, socket.request.max.bytes,
// connections.max.idle.ms, log.retention.ms) under this agent's node id;
// the empty name (the cluster's dynamic defaults) describes no config, and
// another agent's id is INVALID_REQUEST, as in Kafka.
//
// Differences from Kafka: broker configs are static (set by flags); broker
// logger, client metrics and group resources are answered INVALID_REQUEST.

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

func (a *Agent) handleDescribeConfigs(ctx context.Context, _ *request, req *kmsg.DescribeConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, rr := range req.Resources {
		or := kmsg.NewDescribeConfigsResponseResource()
		or.ResourceType, or.ResourceName = rr.ResourceType, rr.ResourceName
		switch rr.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			// A name no topic can have is INVALID_TOPIC_EXCEPTION, as
			// Kafka's ConfigHelper answers, not an unknown topic.
			if err := catalog.ValidateTopicName(rr.ResourceName); err != nil {
				code, msg := adminErr(err)
				or.ErrorCode, or.ErrorMessage = code, kmsg.StringPtr(msg)
				break
			}
			t, err := a.cat.Topic(ctx, rr.ResourceName)
			if err != nil {
				code, msg := adminErr(err)
				or.ErrorCode, or.ErrorMessage = code, kmsg.StringPtr(msg)
				break
			}
			or.Configs = topicConfigEntries(t, rr.ConfigNames)
		case kmsg.ConfigResourceTypeBroker:
			// As Kafka's ConfigHelper: the empty name is the cluster's
			// dynamic defaults (Floe has none: broker settings are
			// per-agent flags), this agent's node id its own settings,
			// and any other name a mistake (admin clients send a broker's
			// resource to that broker).
			if rr.ResourceName == "" {
				break
			}
			if id, err := strconv.ParseInt(rr.ResourceName, 10, 32); err != nil || int32(id) != a.NodeID() {
				or.ErrorCode, or.ErrorMessage = kerr.InvalidRequest.Code, kmsg.StringPtr(fmt.Sprintf("unexpected broker id, expected %d or empty string, but received %s", a.NodeID(), rr.ResourceName))
				break
			}
			or.Configs = a.brokerConfigEntries(rr.ConfigNames)
		default:
			or.ErrorCode = kerr.InvalidRequest.Code
			or.ErrorMessage = kmsg.StringPtr(fmt.Sprintf("resource type %v is not supported", rr.ResourceType))
		}
		for i := range or.Configs {
			c := &or.Configs[i]
			if !req.IncludeSynonyms {
				c.ConfigSynonyms = nil
			}
			if !req.IncludeDocumentation {
				c.Documentation = nil
			}
		}
		resp.Resources = append(resp.Resources, or)
	}
	return resp, nil
}

// wanted reports whether name is asked for. A null or empty list asks for
// every config, as Kafka's ConfigHelper reads it (clients built on other
// protocol libraries send an empty list for "all").
func wanted(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// topicConfigEntries lists a topic's configs (names filter, nil: all).
func topicConfigEntries(t catalog.Topic, names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, d := range catalog.ConfigDefs() {
		if !wanted(names, d.Name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name = d.Name
		c.IsSensitive = d.Sensitive
		c.ConfigType = configType(d.Type)
		c.Documentation = kmsg.StringPtr(d.Doc)
		def := kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{Name: d.Name, Value: kmsg.StringPtr(d.Default), Source: kmsg.ConfigSourceDefaultConfig}
		if v, ok := t.Configs[d.Name]; ok {
			c.Value = kmsg.StringPtr(v)
			c.Source = kmsg.ConfigSourceDynamicTopicConfig
			c.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{
				{Name: d.Name, Value: kmsg.StringPtr(v), Source: kmsg.ConfigSourceDynamicTopicConfig}, def,
			}
		} else {
			c.Value = kmsg.StringPtr(d.Default)
			c.Source = kmsg.ConfigSourceDefaultConfig
			c.IsDefault = true
			c.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{def}
		}
		if c.IsSensitive {
			c.Value = nil
		}
		out = append(out, c)
	}
	return out
}

func configType(t string) kmsg.ConfigType {
	switch t {
	case catalog.ConfigTypeBoolean:
		return kmsg.ConfigTypeBoolean
	case catalog.ConfigTypeString:
		return kmsg.ConfigTypeString
	case catalog.ConfigTypeInt:
		return kmsg.ConfigTypeInt
	case catalog.ConfigTypeLong:
		return kmsg.ConfigTypeLong
	case catalog.ConfigTypeDouble:
		return kmsg.ConfigTypeDouble
	case catalog.ConfigTypeList:
		return kmsg.ConfigTypeList
	case catalog.ConfigTypeClass:
		return kmsg.ConfigTypeClass
	}
	return kmsg.ConfigTypeUnknown
}

// brokerConfigEntries is the agent's read-only broker config set.
func (a *Agent) brokerConfigEntries(names []string) []kmsg.DescribeConfigsResponseResourceConfig {
	type entry struct {
		name, value, def string
		typ              kmsg.ConfigType
		doc              string
	}
	maxMsg, _ := catalog.ConfigDefault(catalog.ConfigMaxMessageBytes)
	retention, _ := catalog.ConfigDefault(catalog.ConfigRetentionMs)
	d := DefaultConfig()
	entries := []entry{
		{"auto.create.topics.enable", strconv.FormatBool(a.cfg.AutoCreateTopics), "false", kmsg.ConfigTypeBoolean, "Create unknown topics on metadata and produce requests (--auto-create-topics)."},
		{"broker.id", strconv.Itoa(int(a.NodeID())), "", kmsg.ConfigTypeInt, "Node id the catalog assigned to this agent."},
		{"broker.rack", a.cfg.Zone, "", kmsg.ConfigTypeString, "Availability zone of this agent (--zone)."},
		{"connections.max.idle.ms", strconv.FormatInt(a.cfg.IdleTimeout.Milliseconds(), 10), strconv.FormatInt(d.IdleTimeout.Milliseconds(), 10), kmsg.ConfigTypeLong, "Idle connections are closed after this long (--idle-timeout)."},
		{"default.replication.factor", "1", "1", kmsg.ConfigTypeInt, "Durability comes from object storage; there are no replicas."},
		{"log.retention.ms", retention, retention, kmsg.ConfigTypeLong, "Default retention.ms of topics."},
		{"message.max.bytes", maxMsg, maxMsg, kmsg.ConfigTypeInt, "Default max.message.bytes of topics."},
		{"min.insync.replicas", "1", "1", kmsg.ConfigTypeInt, "Durability comes from object storage; there are no replicas."},
		{"num.partitions", strconv.Itoa(int(a.cfg.DefaultPartitions)), "1", kmsg.ConfigTypeInt, "Partitions of auto-created topics (--default-partitions)."},
		{"max.connections", strconv.Itoa(a.cfg.MaxConnections), strconv.Itoa(DefaultMaxConnections), kmsg.ConfigTypeInt, "Open client connections beyond which new ones are closed at once (--max-connections)."},
		{"max.connections.per.ip", strconv.Itoa(a.cfg.MaxConnectionsPerIP), "0", kmsg.ConfigTypeInt, "Open connections from one address beyond which new ones are closed at once; 0: no limit (--max-connections-per-ip)."},
		{"queued.max.request.bytes", strconv.FormatInt(a.cfg.MaxQueuedRequestBytes, 10), strconv.FormatInt(max(DefaultMaxQueuedRequestBytes, int64(a.cfg.MaxRequestBytes)), 10), kmsg.ConfigTypeLong, "Bytes of request frames over 64 KiB read or handled at once (--max-queued-request-bytes)."},
		{"socket.request.max.bytes", strconv.Itoa(int(a.cfg.MaxRequestBytes)), strconv.Itoa(int(d.MaxRequestBytes)), kmsg.ConfigTypeInt, "Largest request accepted (--max-request-bytes)."},
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	var out []kmsg.DescribeConfigsResponseResourceConfig
	for _, e := range entries {
		if !wanted(names, e.name) {
			continue
		}
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly, c.ConfigType = e.name, kmsg.StringPtr(e.value), true, e.typ
		c.Documentation = kmsg.StringPtr(e.doc)
		c.Source = kmsg.ConfigSourceStaticBrokerConfig
		if e.value == e.def {
			c.Source, c.IsDefault = kmsg.ConfigSourceDefaultConfig, true
		}
		c.ConfigSynonyms = []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym{{Name: e.name, Value: c.Value, Source: c.Source}}
		out = append(out, c)
	}
	return out
}
