package main

import (
	"strings"
	"testing"

	"github.com/floebroker/floe/tests/floetest"
)

// The admin commands against a real, in-process Floe agent (SQLite catalog,
// directory bucket): what kfake accepts, Floe must accept too.
func TestAdminAgainstFloe(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	bs := a.Addr

	mustRun(t, bs, "topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000")
	list := decode[[]topicListJSON](t, mustRun(t, bs, "topics", "list", "-o", "json"))
	if len(list) != 1 || list[0].Name != "orders" || list[0].Partitions != 3 || list[0].ID == "" {
		t.Fatalf("list: %+v", list)
	}

	produce(t, bs, "orders", 12)
	descs := decode[[]topicDescJSON](t, mustRun(t, bs, "topics", "describe", "orders", "-o", "json"))
	var records int64
	for _, p := range descs[0].Partitions {
		if p.Error != "" {
			t.Fatalf("partition %d: %s", p.Partition, p.Error)
		}
		records += p.HighWatermark - p.LogStartOffset
	}
	if records != 12 {
		t.Fatalf("describe: %d records, want 12: %+v", records, descs[0].Partitions)
	}
	if len(descs[0].Configs) != 1 || descs[0].Configs[0].Name != "retention.ms" || descs[0].Configs[0].Source != "TOPIC" {
		t.Fatalf("describe configs: %+v", descs[0].Configs)
	}

	mustRun(t, bs, "topics", "alter", "orders", "--partitions", "4", "--set", "retention.ms=7200000")
	descs = decode[[]topicDescJSON](t, mustRun(t, bs, "topics", "describe", "orders", "-o", "json"))
	if len(descs[0].Partitions) != 4 || descs[0].Configs[0].Value != "7200000" {
		t.Fatalf("after alter: %+v", descs[0])
	}

	cl := decode[clusterJSON](t, mustRun(t, bs, "cluster", "-o", "json"))
	if len(cl.Agents) != 1 || cl.Agents[0].Error != "" || len(cl.Agents[0].APIs) == 0 {
		t.Fatalf("cluster: %+v", cl)
	}

	// Consumer groups may or may not be served yet; either way the answer
	// is prompt and clear.
	if _, err := run(t, bs, "groups", "list"); err != nil {
		if !strings.Contains(err.Error(), "does not support") {
			t.Fatalf("groups list: %v", err)
		}
		t.Logf("groups list: %v", err)
	}

	// A topic named twice on the command line is deleted once (Floe, as
	// Kafka, refuses a request that names it twice).
	mustRun(t, bs, "topics", "delete", "orders", "orders")
	if list := decode[[]topicListJSON](t, mustRun(t, bs, "topics", "list", "-o", "json")); len(list) != 0 {
		t.Fatalf("after delete: %+v", list)
	}
}
