package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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

// The group commands against Floe's KIP-848 consumer groups and groups that
// do not exist yet, which DescribeGroups v6+ answers GROUP_ID_NOT_FOUND: a
// new group can be given offsets, an empty KIP-848 group reset, one with a
// member is refused, and describe shows a live KIP-848 group's members and
// lag from ConsumerGroupDescribe.
func TestGroupsKIP848AgainstFloe(t *testing.T) {
	a := floetest.Start(t, floetest.Options{NoAutoCreate: true})
	bs := a.Addr
	mustRun(t, bs, "topics", "create", "demo", "--partitions", "2")
	produce(t, bs, "demo", 10)

	mustRun(t, bs, "groups", "reset-offsets", "newgrp", "--topic", "demo", "--to-earliest", "--execute")
	if d := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "newgrp", "-o", "json")); d[0].TotalLag != 10 || len(d[0].Offsets) != 2 {
		t.Fatalf("new group after reset: %+v", d)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(bs),
		kgo.ConsumerGroup("g848"), kgo.ConsumeTopics("demo"), kgo.DisableAutoCommit(),
		kgo.Balancers(kgo.RangeBalancer()), kgo.ServerSideBalancer(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for got := 0; got < 10; {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		got += fs.NumRecords()
	}
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	produce(t, bs, "demo", 4)

	d := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "g848", "-o", "json"))
	if d[0].Error != "" || d[0].ProtocolType != "consumer" || len(d[0].Members) != 1 || len(d[0].Offsets) != 2 || d[0].TotalLag != 4 {
		t.Fatalf("live KIP-848 group: %+v", d)
	}
	for _, o := range d[0].Offsets {
		if o.MemberID != d[0].Members[0].MemberID || o.Committed < 0 {
			t.Fatalf("live KIP-848 group: offset %+v, members %+v", o, d[0].Members)
		}
	}
	if _, err := run(t, bs, "groups", "reset-offsets", "g848", "--all-topics", "--to-earliest", "--execute"); err == nil || !strings.Contains(err.Error(), "stop its consumers") {
		t.Fatalf("reset of a KIP-848 group with a member: %v", err)
	}

	cl.Close()
	if l := decode[[]groupListJSON](t, mustRun(t, bs, "groups", "list", "-o", "json")); !slices.ContainsFunc(l, func(g groupListJSON) bool {
		return g.Group == "g848" && g.State == "Empty"
	}) {
		t.Fatalf("groups list: %+v", l)
	}
	mustRun(t, bs, "groups", "reset-offsets", "g848", "--all-topics", "--to-earliest", "--execute")
	if d := decode[[]groupDescJSON](t, mustRun(t, bs, "groups", "describe", "g848", "-o", "json")); d[0].Error != "" || d[0].TotalLag != 14 {
		t.Fatalf("empty KIP-848 group after reset: %+v", d)
	}
}

// floe topics create refuses Kafka's internal topic names, as the agent's
// CreateTopics does: Floe keeps group offsets in its catalog, and an
// ordinary __consumer_offsets would be an empty topic that tools take for
// Kafka's.
func TestTopicsCreateInternalAgainstFloe(t *testing.T) {
	a := floetest.Start(t, floetest.Options{})
	_, err := run(t, a.Addr, "topics", "create", "__consumer_offsets")
	if err == nil || !strings.Contains(err.Error(), "INVALID_REQUEST") || !strings.Contains(err.Error(), "internal topic") {
		t.Fatalf("floe topics create __consumer_offsets: %v, want INVALID_REQUEST naming the internal topic", err)
	}
	if list := decode[[]topicListJSON](t, mustRun(t, a.Addr, "topics", "list", "-o", "json")); len(list) != 0 {
		t.Fatalf("topics after the refused create: %+v", list)
	}
}
