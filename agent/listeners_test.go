package agent

import (
	"context"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/floebroker/floe/agent/groups"
	"github.com/floebroker/floe/catalog"
)

func TestZoneListenersFlag(t *testing.T) {
	for _, tc := range []struct {
		arg     string
		want    []ZoneListener
		invalid string // Validate's complaint, or "" when valid
	}{
		{"a=127.0.0.1:19092", []ZoneListener{{Zone: "a", Listen: "127.0.0.1:19092"}}, ""},
		{"a=:19092@a.example:9092, b=:29092", []ZoneListener{{Zone: "a", Listen: ":19092", Advertise: "a.example:9092"}, {Zone: "b", Listen: ":29092"}}, ""},
		{"a=:1,a=:2", []ZoneListener{{Zone: "a", Listen: ":1"}, {Zone: "a", Listen: ":2"}}, "given twice"},
		{"a=nohost", []ZoneListener{{Zone: "a", Listen: "nohost"}}, "listen"},
		{"a=:1@adv", []ZoneListener{{Zone: "a", Listen: ":1", Advertise: "adv"}}, "advertise"},
		{"a=:1@:9092", []ZoneListener{{Zone: "a", Listen: ":1", Advertise: ":9092"}}, ""}, // the host name (advertiseAddr)
	} {
		c := DefaultConfig()
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		c.RegisterFlags(fs)
		if err := fs.Parse([]string{"--zone-listeners", tc.arg}); err != nil {
			t.Fatalf("%q: %v", tc.arg, err)
		}
		if len(c.ZoneListeners) != len(tc.want) {
			t.Fatalf("%q: parsed %+v", tc.arg, c.ZoneListeners)
		}
		for i := range tc.want {
			if c.ZoneListeners[i] != tc.want[i] {
				t.Fatalf("%q: parsed %+v, want %+v", tc.arg, c.ZoneListeners, tc.want)
			}
		}
		err := c.Validate()
		if (tc.invalid == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.invalid)) {
			t.Fatalf("%q: Validate = %v, want an error about %q", tc.arg, err, tc.invalid)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c := DefaultConfig()
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--zone-listeners", "nozone"}); err == nil {
		t.Fatal("a listener without a zone parsed")
	}
}

// TestAdvertiseAddr: an advertised address whose host names no machine —
// empty (--advertise :9092, FLOE_ADVERTISE=${HOST}:9092 with HOST unset)
// or a wildcard — advertises the host name, as a wildcard bind does and as
// Kafka advertises its canonical host name for an empty host; it was
// advertised as given, and remote clients dialled their own host.
func TestAdvertiseAddr(t *testing.T) {
	h, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	bound := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, tc := range []struct {
		configured string
		ln         net.Addr
		want       string
	}{
		{"", bound("127.0.0.1:1234"), "127.0.0.1:1234"},
		{"", bound("0.0.0.0:1234"), net.JoinHostPort(h, "1234")},
		{"", bound("[::]:1234"), net.JoinHostPort(h, "1234")},
		{"adv.example:9092", bound("0.0.0.0:1234"), "adv.example:9092"},
		{"[::1]:9092", bound("0.0.0.0:1234"), "[::1]:9092"},
		{":9092", bound("127.0.0.1:1234"), net.JoinHostPort(h, "9092")},
		{"0.0.0.0:9092", bound("127.0.0.1:1234"), net.JoinHostPort(h, "9092")},
		{"[::]:9092", bound("127.0.0.1:1234"), net.JoinHostPort(h, "9092")},
	} {
		if got := advertiseAddr(tc.configured, tc.ln); got != tc.want {
			t.Errorf("advertiseAddr(%q, %v) = %q, want %q", tc.configured, tc.ln, got, tc.want)
		}
	}
	c := DefaultConfig()
	c.Advertise = ":9092"
	if err := c.Validate(); err != nil {
		t.Errorf("--advertise :9092 refused: %v", err)
	}
}

func TestAgentAddr(t *testing.T) {
	ag := catalog.Agent{Addr: registeredAddr([]boundListener{
		{advertise: "main:9092"}, {zone: "a", advertise: "za:19092"}, {zone: "b", advertise: "zb:29092"},
	})}
	if ag.Addr != "main:9092,a=za:19092,b=zb:29092" {
		t.Fatalf("registered %q", ag.Addr)
	}
	for _, tc := range []struct {
		zone, host string
		port       int32
	}{
		{"", "main", 9092}, {"a", "za", 19092}, {"b", "zb", 29092}, {"c", "main", 9092},
	} {
		if h, p := agentAddr(ag, tc.zone); h != tc.host || p != tc.port {
			t.Errorf("zone %q: %s:%d, want %s:%d", tc.zone, h, p, tc.host, tc.port)
		}
	}
	// An agent without per-zone listeners (or of an older version).
	if h, p := agentAddr(catalog.Agent{Addr: "old:9092"}, "a"); h != "old" || p != 9092 {
		t.Errorf("plain address: %s:%d", h, p)
	}
}

// TestLeaveView: a leaving agent drops itself from its view (and keeps it
// out on refresh), is no coordinator or leader any more, and serves
// another agent as controller; alone, it keeps its view.
func TestLeaveView(t *testing.T) {
	a := &Agent{m: newMetrics(nil)}
	grantLease(a, time.Hour)
	self := catalog.Agent{NodeID: 2, ID: "b", Addr: "h2:2"}
	others := []catalog.Agent{{NodeID: 1, ID: "a", Addr: "h1:1"}, self, {NodeID: 3, ID: "c", Addr: "h3:3"}}
	a.members.Store(&membership{self: self, registered: true, agents: others, generation: 5})
	a.storeView(a.members.Load(), []catalog.Agent{others[0], others[2]}, 6) // late heartbeat
	if m := a.members.Load(); len(m.agents) != 3 || m.generation != 6 {
		t.Fatalf("serving view %+v: self must stay", m)
	}
	a.members.Store(&membership{self: self, registered: true, leaving: true, agents: []catalog.Agent{others[0], others[2]}, generation: 7})
	a.storeView(a.members.Load(), others, 6)
	m := a.members.Load()
	if len(m.agents) != 2 || m.generation != 7 || m.controller() != 1 {
		t.Fatalf("leaving view %+v, controller %d", m, m.controller())
	}
	var id catalog.TopicID
	for p := int32(0); p < 50; p++ {
		if m.leader(id, p, "") == 2 {
			t.Fatal("a leaving agent leads a partition")
		}
	}
	for i := range 50 {
		n, _, _, err := a.Coordinator(context.Background(), strings.Repeat("g", i+1))
		if err != nil || n == 2 {
			t.Fatalf("group placed on %d (%v) while leaving", n, err)
		}
	}
}

// TestOnListenerView: a client of a per-zone listener is served a view of
// the agents with that listener only — leaders, replicas and controller
// among them, the same for every agent — and is refused (not sent to the
// main listener of) a coordinator without it. A leaving agent whose
// listener no other agent has keeps the client.
func TestOnListenerView(t *testing.T) {
	a1 := catalog.Agent{NodeID: 1, ID: "a1", Zone: "a", Addr: "m1:1,a=z1:11"}
	a2 := catalog.Agent{NodeID: 2, ID: "a2", Zone: "a", Addr: "m2:2,a=z2:12"}
	b1 := catalog.Agent{NodeID: 3, ID: "b1", Zone: "b", Addr: "m3:3"}
	all := []catalog.Agent{a1, a2, b1}
	var id catalog.TopicID
	id[0] = 7
	for _, self := range all {
		m := &membership{self: self, registered: true, agents: all, generation: 4}
		if m.onListener("") != m {
			t.Fatal("the main listener's view is not the whole view")
		}
		v := m.onListener("a")
		if len(v.agents) != 2 || v.agents[0].NodeID != 1 || v.agents[1].NodeID != 2 || v.generation != 4 || v.onListener("a") != v || m.onListener("a") != v {
			t.Fatalf("self %d: zone-a listener view %+v", self.NodeID, v.agents)
		}
		for _, zone := range []string{"a", "b", ""} {
			var buf [32]uint64
			reps := v.replicas(id, zone, buf[:0])
			for p := int32(0); p < 64; p++ {
				rs := reps.replicas(p, nil)
				if len(rs) != 1 || rs[0] == 3 {
					t.Fatalf("self %d, client zone %q: partition %d replicas %v", self.NodeID, zone, p, rs)
				}
				if zone == "a" && rs[0] != m.leader(id, p, "a") {
					t.Fatalf("zone-a leader of partition %d: %d on the listener, %d by client id", p, rs[0], m.leader(id, p, "a"))
				}
				if rs[0] != v.leader(id, p, zone) {
					t.Fatalf("partition %d: replicas %v, leader %d", p, rs, v.leader(id, p, zone))
				}
				if self.NodeID == 1 && rs[0] != (&membership{self: a2, agents: all}).onListener("a").leader(id, p, zone) {
					t.Fatalf("partition %d: agents disagree on its leader", p)
				}
			}
		}
	}

	a := &Agent{m: newMetrics(nil)}
	grantLease(a, time.Hour)
	a.members.Store(&membership{self: a1, registered: true, agents: all, generation: 4})
	ctx := context.WithValue(context.Background(), listenerZoneKey{}, "a")
	var onB, onA int
	for i := range 60 {
		g := strings.Repeat("g", i+1)
		node, _, _, _ := a.Coordinator(context.Background(), g)
		n, host, port, err := a.Coordinator(ctx, g)
		switch {
		case node == 3:
			onB++
			if err == nil || errors.Is(err, groups.ErrJoining) {
				t.Fatalf("group %s on b1: %d at %s:%d (%v) on the zone-a listener", g, n, host, port, err)
			}
		case n != node || host != "z"+strconv.Itoa(int(node)) || (err != nil && !errors.Is(err, groups.ErrJoining)):
			t.Fatalf("group %s on %d: %d at %s:%d (%v) on the zone-a listener", g, node, n, host, port, err)
		default:
			onA++
		}
	}
	if onA == 0 || onB == 0 {
		t.Fatalf("%d groups on zone a, %d on b1: want both", onA, onB)
	}

	// Leaving, with no other agent on the listener.
	m := &membership{self: a1, registered: true, leaving: true, agents: []catalog.Agent{b1}, generation: 5}
	v := m.onListener("a")
	if len(v.agents) != 1 || v.agents[0].NodeID != 1 || v.controller() != 1 || v.leader(id, 0, "a") != 1 {
		t.Fatalf("leaving view on the listener %+v, controller %d", v.agents, v.controller())
	}
}
