package groups

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzHandle decodes arbitrary bytes as a request of every served API and
// version and hands it to a live coordinator: whatever a client sends, the
// coordinator answers or refuses without panicking or hanging.
func FuzzHandle(f *testing.F) {
	for _, api := range apis {
		for v := api.MinVersion; v <= api.MaxVersion; v++ {
			req := kmsg.RequestForKey(api.Key)
			req.SetVersion(v)
			switch r := req.(type) {
			case *kmsg.JoinGroupRequest:
				*r = *joinReq(v, "g", "", "meta")
			case *kmsg.OffsetCommitRequest:
				*r = *commitReq("g", "", -1, "t", map[int32]int64{0: 1})
				r.Version = v
			case *kmsg.ConsumerGroupHeartbeatRequest:
				*r = *consumerJoin("k", "m", []string{"t"})
				r.Version = v
			}
			f.Add(api.Key, v, req.AppendTo(nil))
		}
	}
	h := newHarness(f, func(c *Config) {
		c.MaxMetadataBytes = 4096
		c.GroupMaxSize = 8
		c.MaxGroups = 64
	})
	h.cat.addTopic("t", 4)
	f.Fuzz(func(t *testing.T, key, version int16, body []byte) {
		req := kmsg.RequestForKey(key)
		if req == nil || !h.c.serves(key, version) {
			return
		}
		req.SetVersion(version)
		if err := req.ReadFrom(body); err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		resp, err := h.c.Handle(ctx, "fuzz", "127.0.0.1", req)
		if err != nil {
			if ctx.Err() == nil {
				t.Fatalf("error without a cancelled context: %v", err)
			}
			return
		}
		if resp.Key() != key {
			t.Fatalf("response key %d for request key %d", resp.Key(), key)
		}
		resp.AppendTo(nil) // the response must encode
	})
}

// FuzzSubscribedTopics feeds arbitrary consumer protocol metadata to the
// decoder OffsetDelete uses.
func FuzzSubscribedTopics(f *testing.F) {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = []string{"a", "b"}
	for v := int16(0); v <= 3; v++ {
		m.Version = v
		f.Add(m.AppendTo(nil))
	}
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, meta []byte) {
		var cl classicGroup
		cl.init()
		cl.members["m"] = &classicMember{id: "m", protocols: []protocol{{name: "range", metadata: meta}}}
		topics, ok := cl.subscribedTopics()
		if ok && len(meta) < 6 && len(topics) > 0 {
			t.Fatalf("%d bytes decoded to %d topics", len(meta), len(topics))
		}
	})
}

// FuzzConsumerSubscription feeds arbitrary regexes and topic names to a
// KIP-848 heartbeat's checks.
func FuzzConsumerSubscription(f *testing.F) {
	f.Add("foo.*", "foo-1")
	f.Add("(", "")
	f.Add(`\p{Greek}+|a{2,1000}`, "αβγ")
	c := New(Config{}, newFakeCatalog(), &fakePlacement{}, nil, nil)
	f.Fuzz(func(t *testing.T, regex, name string) {
		r := consumerJoin("g", "m", []string{name})
		r.SubscribedTopicRegex = &regex
		p, code, _ := c.consumerParams("c", "h", r)
		if code == 0 && p.re != nil {
			p.re.MatchString(name)
		}
	})
}
