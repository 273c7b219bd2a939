package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/floebroker/floe/catalog"
)

// Per-zone listeners are for clients that cannot name their zone in their
// client id: every connection a zone's listener accepts is treated as that
// zone's (leaders are picked among that zone's agents), and Metadata and
// FindCoordinator answer it with every agent's listener for the same zone,
// so the client stays on it — as Kafka answers with the addresses of the
// listener a client connected to. As Kafka leaves out a broker without
// that listener, an agent without a listener for the zone is left out
// too (membership.onListener): the client could reach it only at its
// main listener, whose answers name every agent's main listener, and it
// would never come back to the zone's.
//
// The catalog holds one address per agent, so the registered address
// carries the per-zone listeners after the main one:
//
//	host:port[,zone=host:port]...
//
// Only the agent reads it (hostPort on the first entry is the main
// listener, as before per-zone listeners existed).

// ZoneListener is one per-zone Kafka listener.
type ZoneListener struct {
	// Zone whose clients connect here.
	Zone string
	// Listen is the host:port to bind (port 0 picks one).
	Listen string
	// Advertise is the host:port clients are told; empty: the bound
	// address. An empty or wildcard host is the host name.
	Advertise string
}

// parseZoneListeners parses "zone=listen[@advertise],…".
func parseZoneListeners(s string) ([]ZoneListener, error) {
	var out []ZoneListener
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		zone, addr, ok := strings.Cut(part, "=")
		if !ok || zone == "" || addr == "" {
			return nil, fmt.Errorf("zone listener %q: want zone=host:port[@advertised-host:port]", part)
		}
		listen, adv, _ := strings.Cut(addr, "@")
		out = append(out, ZoneListener{Zone: zone, Listen: listen, Advertise: adv})
	}
	return out, nil
}

func validateZoneListeners(zls []ZoneListener) error {
	var errs []error
	seen := map[string]bool{}
	for _, zl := range zls {
		switch {
		case zl.Zone == "" || strings.ContainsAny(zl.Zone, ",=@ "):
			errs = append(errs, fmt.Errorf("zone listener zone %q: want a non-empty name without ',', '=', '@' or spaces", zl.Zone))
		case seen[zl.Zone]:
			errs = append(errs, fmt.Errorf("zone listener for %q given twice", zl.Zone))
		}
		seen[zl.Zone] = true
		if _, _, err := net.SplitHostPort(zl.Listen); err != nil {
			errs = append(errs, fmt.Errorf("zone listener %s listen %q: %w", zl.Zone, zl.Listen, err))
		}
		if zl.Advertise != "" {
			if _, port, err := net.SplitHostPort(zl.Advertise); err != nil || port == "" || port == "0" {
				errs = append(errs, fmt.Errorf("zone listener %s advertise %q: want host:port with a port", zl.Zone, zl.Advertise))
			}
		}
	}
	return errors.Join(errs...)
}

// boundListener is one listener the agent serves: the main one (zone "")
// or a per-zone one.
type boundListener struct {
	zone      string
	ln        net.Listener
	advertise string
}

// listenZones opens the per-zone listeners and returns every listener,
// the main one first.
func (a *Agent) listenZones(ctx context.Context, main net.Listener) ([]boundListener, error) {
	out := []boundListener{{ln: main, advertise: advertiseAddr(a.cfg.Advertise, main.Addr())}}
	var lc net.ListenConfig
	for _, zl := range a.cfg.ZoneListeners {
		ln, err := lc.Listen(ctx, "tcp", zl.Listen)
		if err != nil {
			for _, l := range out[1:] {
				l.ln.Close()
			}
			return nil, fmt.Errorf("agent: listen %s for zone %s: %w", zl.Listen, zl.Zone, err)
		}
		out = append(out, boundListener{zone: zl.Zone, ln: ln, advertise: advertiseAddr(zl.Advertise, ln.Addr())})
	}
	a.listenersMu.Lock()
	a.listeners = make(map[string]string, len(out))
	for _, l := range out {
		a.listeners[l.zone] = l.ln.Addr().String()
	}
	a.listenersMu.Unlock()
	return out, nil
}

// Listeners returns the bound address of each listener by zone ("" is the
// main listener), once Serve has started them.
func (a *Agent) Listeners() map[string]string {
	a.listenersMu.Lock()
	defer a.listenersMu.Unlock()
	out := make(map[string]string, len(a.listeners))
	for z, addr := range a.listeners {
		out[z] = addr
	}
	return out
}

// registeredAddr is the address registered in the catalog (see the
// format above).
func registeredAddr(ls []boundListener) string {
	var b strings.Builder
	for i, l := range ls {
		if i > 0 {
			b.WriteString("," + l.zone + "=")
		}
		b.WriteString(l.advertise)
	}
	return b.String()
}

// agentAddr is where a client reaches ag: through its listener for
// listenerZone when the client came in through such a listener and ag
// has one, else through its main listener. Answers to a client of a
// per-zone listener name only agents that have it (see
// membership.onListener, Agent.Coordinator).
func agentAddr(ag catalog.Agent, listenerZone string) (string, int32) {
	if addr, ok := listenerAddr(ag, listenerZone); ok {
		return hostPort(addr)
	}
	main, _, _ := strings.Cut(ag.Addr, ",")
	return hostPort(main)
}

// listenerAddr is ag's registered address for its listener of
// listenerZone ("": the main listener), if it has one.
func listenerAddr(ag catalog.Agent, listenerZone string) (string, bool) {
	main, rest, _ := strings.Cut(ag.Addr, ",")
	if listenerZone == "" {
		return main, true
	}
	for rest != "" {
		var entry string
		entry, rest, _ = strings.Cut(rest, ",")
		if z, addr, ok := strings.Cut(entry, "="); ok && z == listenerZone {
			return addr, true
		}
	}
	return "", false
}

// advertiseAddr is the address registered for a listener: the configured
// one, else the listener's, with the host name replacing a host that names
// no machine — a wildcard, or an empty host (--advertise :9092), which
// Kafka too advertises as its canonical host name. Advertised as given,
// such a host sends remote clients to their own host.
func advertiseAddr(configured string, ln net.Addr) string {
	addr := configured
	if addr == "" {
		addr = ln.String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return net.JoinHostPort(host, port)
}

// hostPort splits an advertised address for Metadata's broker list.
func hostPort(addr string) (string, int32) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		return host, 0
	}
	return host, int32(p)
}

// listenerZoneKey carries a connection's listener zone to Coordinator
// (agent/groups.Placement), whose signature has no room for it.
type listenerZoneKey struct{}
