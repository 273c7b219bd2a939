package groups

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		ok    bool
	}{
		{"defaults", func(*Config) {}, true},
		{"zero value takes defaults", func(c *Config) { *c = Config{} }, true},
		{"no initial delay", func(c *Config) { c.InitialRebalanceDelay = 0 }, true},
		{"negative delay", func(c *Config) { c.InitialRebalanceDelay = -1 }, false},
		{"min above max session", func(c *Config) { c.MinSessionTimeout, c.MaxSessionTimeout = time.Minute, time.Second }, false},
		{"group max size", func(c *Config) { c.GroupMaxSize = -1 }, false},
		{"total below member cap", func(c *Config) { c.MaxMetadataBytes, c.MaxTotalMetadataBytes = 100, 10 }, false},
		{"heartbeat above session", func(c *Config) { c.ConsumerHeartbeatInterval = time.Minute }, false},
		{"unknown assignor", func(c *Config) { c.ConsumerAssignors = []string{"sticky"} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.tweak(&c)
			if err := c.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestConfigFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs, "group.")
	if err := fs.Parse([]string{
		"-group.initial-rebalance-delay=0s",
		"-group.consumer-assignors=range, uniform",
		"-group.max-size=5",
	}); err != nil {
		t.Fatal(err)
	}
	if c.InitialRebalanceDelay != 0 || c.GroupMaxSize != 5 || fmt.Sprint(c.ConsumerAssignors) != "[range uniform]" ||
		c.MaxSessionTimeout != DefaultMaxSessionTimeout {
		t.Fatalf("parsed %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentGroups runs classic members, KIP-848 members, commits and
// admin requests against shared groups at once (run it with -race).
func TestConcurrentGroups(t *testing.T) {
	h := newHarness(t)
	h.cat.addTopic("t", 8)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	handle := func(req kmsg.Request) kmsg.Response {
		resp, err := h.c.Handle(ctx, "client", "host", req)
		if err != nil {
			return nil // ctx ended while waiting
		}
		return resp
	}
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() { // classic members over two groups
			group := fmt.Sprintf("classic-%d", i%2)
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for ctx.Err() == nil {
				j, _ := handle(joinReq(3, group, "", "m")).(*kmsg.JoinGroupResponse)
				if j == nil || j.ErrorCode != 0 {
					continue
				}
				for k := 0; k < 5 && ctx.Err() == nil; k++ {
					var assign map[string]string
					if j.LeaderID == j.MemberID {
						assign = map[string]string{j.MemberID: "x"}
					}
					handle(syncReq(group, j.MemberID, j.Generation, assign))
					handle(hbReq(group, j.MemberID, j.Generation))
					handle(commitReq(group, j.MemberID, j.Generation, "t", map[int32]int64{int32(rng.IntN(8)): int64(k)}))
				}
				lr := kmsg.NewPtrLeaveGroupRequest()
				lr.Version, lr.Group, lr.MemberID = 2, group, j.MemberID
				handle(lr)
			}
		})
	}
	for i := range 4 {
		wg.Go(func() { // KIP-848 members of one group
			m := h.member("consumer", fmt.Sprintf("m%d", i), "t")
			for ctx.Err() == nil {
				resp, _ := handle(m.request()).(*kmsg.ConsumerGroupHeartbeatResponse)
				if resp == nil {
					continue
				}
				if resp.ErrorCode == kerr.UnknownMemberID.Code || resp.ErrorCode == kerr.FencedMemberEpoch.Code {
					m.epoch, m.owned = 0, tpSet{}
					continue
				}
				if resp.ErrorCode == 0 {
					m.epoch = resp.MemberEpoch
					if resp.Assignment != nil {
						m.owned = tpSet{}
						for _, tp := range resp.Assignment.Topics {
							for _, p := range tp.Partitions {
								m.owned[topicPartition{tp.TopicID, p}] = struct{}{}
							}
						}
					}
				}
			}
		})
	}
	wg.Go(func() { // admin
		for ctx.Err() == nil {
			l := kmsg.NewPtrListGroupsRequest()
			l.Version = 5
			handle(l)
			d := kmsg.NewPtrDescribeGroupsRequest()
			d.Version, d.Groups = 5, []string{"classic-0", "classic-1"}
			handle(d)
			cd := kmsg.NewPtrConsumerGroupDescribeRequest()
			cd.Version, cd.Groups = 1, []string{"consumer"}
			handle(cd)
			h.advance(100 * time.Millisecond)
		}
	})
	wg.Wait()
}
