package agent_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/agent"
	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/objstore/file"
	"github.com/floebroker/floe/tests/floetest"
)

// TestConfigChangeReachesOtherAgents: a topic config change made through
// agent A is applied by agent B, which has the topic cached, without B's
// cached copy expiring — as Kafka's brokers apply config records within
// milliseconds. The agents' TopicCacheTTL is an hour, so only the
// change's announcement can reach B within the test's 30 s.
// B used to serve its cached copy until TopicCacheTTL (5 s) passed: after
// max.message.bytes was lowered and message.timestamp.type switched to
// LogAppendTime through A, B stored oversized CreateTime batches for 5 s;
// after the limit was raised again, it refused (MESSAGE_TOO_LARGE, which
// producers do not retry) batches the topic now takes. PostgreSQL runs
// each agent on its own catalog connection, as separate processes do, so
// the change reaches B through NOTIFY; SQLite's agents share one Catalog
// value, as agents of one process do.
func TestConfigChangeReachesOtherAgents(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		cat := sharedCatalog(t)
		testConfigChangeReaches(t, cat, cat)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		url := floetest.PostgresURL(t)
		open := func() catalog.Catalog {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := postgres.Open(ctx, url, catalog.Options{})
			if err != nil {
				t.Fatalf("open PostgreSQL catalog: %v", err)
			}
			t.Cleanup(func() { c.Close() })
			return c
		}
		testConfigChangeReaches(t, open(), open())
	})
}

func testConfigChangeReaches(t *testing.T, catA, catB catalog.Catalog) {
	bkt, err := file.New(filepath.Join(t.TempDir(), "bucket"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bkt.Close() })
	// Cached topics never expire here: B applies the change only if it
	// is told of it. (A bound of wall time on a shorter TTL failed when
	// one produce took as long as the bound on a loaded machine.)
	ttl := func(c *agent.Config) { c.TopicCacheTTL = time.Hour }
	a := floetest.Start(t, floetest.Options{Dir: t.TempDir(), Catalog: catA, Bucket: bkt, NoAutoCreate: true, Config: ttl})
	b := floetest.Start(t, floetest.Options{Dir: t.TempDir(), Catalog: catB, Bucket: bkt, NoAutoCreate: true, Config: ttl})
	const topic = "cfg-follow"
	createTopic(t, a, topic, 1, nil)
	connA, connB := floetest.Dial(t, a.Addr), floetest.Dial(t, b.Addr)

	big := floetest.Batch(floetest.BatchSpec{Records: 1, FirstTimestamp: 1, Value: bytes.Repeat([]byte("x"), 300)})
	small := floetest.Batch(floetest.BatchSpec{Records: 1, FirstTimestamp: 1, Value: []byte("v")})
	// B reads the topic and caches it.
	p := produce(t, connB, produceReq(topic, -1, big))[0]
	wantCode(t, "produce to B before the change", p.ErrorCode, nil)
	if p.LogAppendTime != -1 {
		t.Fatalf("CreateTime topic answered LogAppendTime %d", p.LogAppendTime)
	}

	// alter changes the topic's configs through A only (a client could
	// send the request to either agent).
	alter := func(ops ...kmsg.IncrementalAlterConfigsRequestResourceConfig) time.Time {
		t.Helper()
		req := kmsg.NewPtrIncrementalAlterConfigsRequest()
		res := kmsg.NewIncrementalAlterConfigsRequestResource()
		res.ResourceType, res.ResourceName, res.Configs = kmsg.ConfigResourceTypeTopic, topic, ops
		req.Resources = append(req.Resources, res)
		resp, err := connA.Request(req)
		if err != nil {
			t.Fatalf("alter configs through A: %v", err)
		}
		if code := resp.(*kmsg.IncrementalAlterConfigsResponse).Resources[0].ErrorCode; code != 0 {
			t.Fatalf("alter configs through A: %v", kerr.ErrorForCode(code))
		}
		return time.Now()
	}
	op := func(key string, op kmsg.IncrementalAlterConfigOp, value *string) kmsg.IncrementalAlterConfigsRequestResourceConfig {
		c := kmsg.NewIncrementalAlterConfigsRequestResourceConfig()
		c.Name, c.Op, c.Value = key, op, value
		return c
	}
	// until produces batch to B until the answer is want, for at most 30 s
	// after the change was answered (20–75 ms in practice), and returns
	// the last answer.
	until := func(what string, changed time.Time, batch []byte, want *kerr.Error) kmsg.ProduceResponseTopicPartition {
		t.Helper()
		n := 0
		for {
			p := produce(t, connB, produceReq(topic, -1, batch))[0]
			if (want == nil && p.ErrorCode == 0) || (want != nil && p.ErrorCode == want.Code) {
				t.Logf("applied by agent B %v after the change through A was answered (%d batches before)", time.Since(changed).Round(time.Millisecond), n)
				return p
			}
			n++
			if since := time.Since(changed); since > 30*time.Second {
				t.Fatalf("agent B %s: %d batches answered %v for %v after the change through A was answered",
					what, n, kerr.ErrorForCode(p.ErrorCode), since.Round(time.Millisecond))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	changed := alter(
		op("max.message.bytes", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("100")),
		op("message.timestamp.type", kmsg.IncrementalAlterConfigOpSet, kmsg.StringPtr("LogAppendTime")))
	until("kept accepting oversized batches", changed, big, kerr.MessageTooLarge)
	p = produce(t, connB, produceReq(topic, -1, small))[0]
	wantCode(t, "small batch after the change", p.ErrorCode, nil)
	if p.LogAppendTime <= 0 {
		t.Fatalf("agent B stored a batch as CreateTime (LogAppendTime %d) after the topic was switched to LogAppendTime", p.LogAppendTime)
	}

	changed = alter(op("max.message.bytes", kmsg.IncrementalAlterConfigOpDelete, nil))
	until("kept refusing batches the raised limit allows", changed, big, nil)
}
