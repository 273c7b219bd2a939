package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type apiJSON struct {
	Key  int16  `json:"key"`
	Name string `json:"name"`
	Min  int16  `json:"min"`
	Max  int16  `json:"max"`
}

type agentJSON struct {
	NodeID int32  `json:"node_id"`
	Host   string `json:"host"`
	Port   int32  `json:"port"`
	Zone   string `json:"zone"`
	// APIs are the API keys and versions the agent serves (ApiVersions).
	// Kafka has no field for a broker's software version, and guessing a
	// Kafka release from the API set misleads for Floe, which serves a
	// subset.
	APIs  []apiJSON `json:"apis"`
	Error string    `json:"error,omitempty"`
}

type clusterJSON struct {
	ClusterID  string      `json:"cluster_id"`
	Controller int32       `json:"controller"`
	Zones      []string    `json:"zones"`
	Agents     []agentJSON `json:"agents"`
}

// cluster implements `floe cluster`: the live agents with their zones and
// the API versions each serves.
func (a *adminCLI) cluster(ctx context.Context, args []string) error {
	var f adminFlags
	var apis bool
	fs := a.newFlagSet("cluster", "[flags]")
	f.register(fs)
	fs.BoolVar(&apis, "apis", false, "also list every API key and version range each agent serves")
	if _, err := f.parse(fs, args, ""); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cl, err := f.kafkaClient()
	if err != nil {
		return err
	}
	adm, err := f.connect()
	if err != nil {
		cl.Close()
		return err
	}
	defer adm.Close()
	defer cl.Close()

	res := clusterJSON{Controller: -1, Zones: []string{}, Agents: []agentJSON{}}
	// DescribeCluster is what Kafka's own tools use; Metadata is the
	// fallback for brokers without it. Both list the same live agents.
	dc := kmsg.NewPtrDescribeClusterRequest()
	if kr, err := cl.Request(ctx, dc); err == nil && kerr.ErrorForCode(kr.(*kmsg.DescribeClusterResponse).ErrorCode) == nil {
		resp := kr.(*kmsg.DescribeClusterResponse)
		res.ClusterID, res.Controller = resp.ClusterID, resp.ControllerID
		for _, b := range resp.Brokers {
			res.Agents = append(res.Agents, agentJSON{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Zone: deref(b.Rack)})
		}
	} else {
		meta, err := adm.BrokerMetadata(ctx)
		if err != nil {
			return explain("floe cluster", err)
		}
		res.ClusterID, res.Controller = meta.Cluster, meta.Controller
		for _, b := range meta.Brokers {
			res.Agents = append(res.Agents, agentJSON{NodeID: b.NodeID, Host: b.Host, Port: b.Port, Zone: deref(b.Rack)})
		}
	}
	sort.Slice(res.Agents, func(i, j int) bool { return res.Agents[i].NodeID < res.Agents[j].NodeID })

	versions, err := adm.ApiVersions(ctx)
	if err != nil {
		return explain("floe cluster: api versions", err)
	}
	zones := map[string]bool{}
	var errs []error
	for i := range res.Agents {
		ag := &res.Agents[i]
		if ag.Zone != "" {
			zones[ag.Zone] = true
		}
		ag.APIs = []apiJSON{}
		v, ok := versions[ag.NodeID]
		if !ok || v.Err != nil {
			err := v.Err
			if !ok {
				err = errors.New("no ApiVersions response")
			}
			ag.Error = err.Error()
			errs = append(errs, fmt.Errorf("agent %d: %w", ag.NodeID, err))
			continue
		}
		v.EachKeySorted(func(key, lo, hi int16) {
			ag.APIs = append(ag.APIs, apiJSON{Key: key, Name: kmsg.NameForKey(key), Min: lo, Max: hi})
		})
	}
	res.Zones = sortedKeys(zones)

	if f.output == "json" {
		if err := writeJSON(a.out, res); err != nil {
			return err
		}
		return failures("floe cluster", errs)
	}
	fmt.Fprintf(a.out, "Cluster: %s\tController: %d\tAgents: %d\tZones: %s\n",
		dash(res.ClusterID), res.Controller, len(res.Agents), dash(strings.Join(res.Zones, ",")))
	t := newTable(a.out, "NODE", "HOST", "PORT", "ZONE", "APIS", "PRODUCE", "FETCH", "ERROR")
	for _, ag := range res.Agents {
		t.row(ag.NodeID, ag.Host, ag.Port, dash(ag.Zone), len(ag.APIs), apiRange(ag.APIs, 0), apiRange(ag.APIs, 1), ag.Error)
	}
	t.flush()
	if apis {
		for _, ag := range res.Agents {
			fmt.Fprintf(a.out, "\nAgent %d APIs:\n", ag.NodeID)
			t := newTable(a.out, "KEY", "NAME", "MIN", "MAX")
			for _, api := range ag.APIs {
				t.row(api.Key, api.Name, api.Min, api.Max)
			}
			t.flush()
		}
	}
	return failures("floe cluster", errs)
}

// apiRange is "vMIN-vMAX" of one API key, or "-" when it is not served.
func apiRange(apis []apiJSON, key int16) string {
	for _, a := range apis {
		if a.Key == key {
			return fmt.Sprintf("v%d-v%d", a.Min, a.Max)
		}
	}
	return "-"
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// defaultAdminPort is the agent's admin HTTP port when --admin-listen is not
// set; the container image and the Terraform modules use it too.
const defaultAdminPort = "9644"

// defaultHealthURL is where `floe healthcheck` looks without --url: the
// admin address from FLOE_ADMIN_LISTEN (so a container's HEALTHCHECK follows
// the agent's own setting) or the default admin port, on loopback.
func defaultHealthURL() string {
	addr := os.Getenv("FLOE_ADMIN_LISTEN")
	host, port, err := net.SplitHostPort(addr)
	if addr == "" || err != nil {
		host, port = "", defaultAdminPort
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

// healthcheck implements `floe healthcheck`: GET the agent's /healthz (or
// /readyz) and exit non-zero unless it answers 2xx in time. It exists
// because the runtime image has no shell and no curl.
func (a *adminCLI) healthcheck(ctx context.Context, args []string) error {
	var (
		url     string
		ready   bool
		timeout time.Duration
	)
	fs := a.newFlagSet("healthcheck", "[flags]")
	fs.StringVar(&url, "url", defaultHealthURL(), "URL to GET (default from FLOE_ADMIN_LISTEN)")
	fs.BoolVar(&ready, "ready", false, "check /readyz (catalog and bucket reachable) instead of /healthz")
	fs.DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: floe healthcheck: unexpected arguments %q", errUsage, pos)
	}
	if ready {
		url = strings.TrimSuffix(url, "/healthz") + "/readyz"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(a.out, "%s: %s\n", url, resp.Status)
	return nil
}
