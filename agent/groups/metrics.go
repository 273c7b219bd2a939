package groups

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the coordinator's Prometheus metrics. Label values are
// bounded: group types (classic, consumer), API names and Kafka error names.
type metrics struct {
	members          [2]atomic.Int64 // by groupKind
	rebalances       *prometheus.CounterVec
	rebalanceSeconds *prometheus.HistogramVec
	removals         *prometheus.CounterVec
	commits          prometheus.Counter
	commitSeconds    prometheus.Histogram
	errors           *prometheus.CounterVec
	stateOps         *prometheus.CounterVec
	expired          prometheus.Counter
	// lag is nil without a registry (nothing would read it).
	lag *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, c *Coordinator) *metrics {
	m := &metrics{
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_groups_rebalances_total",
			Help: "Rebalances started: classic groups entering PreparingRebalance, KIP-848 groups bumping their epoch.",
		}, []string{"type"}),
		rebalanceSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "floe_groups_rebalance_duration_seconds",
			Help:    "Time from the start of a classic rebalance to the group being Stable (leader's SyncGroup).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"type"}),
		removals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_groups_member_removals_total",
			Help: "Members removed from groups, by why: leave, session (expired), rebalance (did not rejoin or revoke in time), fenced (replaced static member).",
		}, []string{"type", "reason"}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_groups_offset_commits_total",
			Help: "Partition offsets committed to the catalog.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "floe_groups_offset_commit_duration_seconds",
			Help:    "Latency of the catalog call that stores one OffsetCommit request's offsets.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_groups_errors_total",
			Help: "Kafka error codes the coordinator answered with, by API and error name.",
		}, []string{"api", "error"}),
		stateOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_groups_state_ops_total",
			Help: "Catalog operations on stored group state, by op (load, claim, save, delete) and result (ok, none, stale, corrupt, conflict, too_large, error).",
		}, []string{"op", "result"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_groups_offsets_expired_total",
			Help: "Groups without members whose committed offsets expired (--group.offsets-retention after their last commit or last member), counted by the agent whose check deleted them.",
		}),
	}
	if reg == nil {
		return m
	}
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "floe_groups_lag_records",
		Help: "Records between a group's committed offsets and the high watermarks, summed over the topic's partitions (groups this coordinator coordinates, members or not; recomputed every 30s).",
	}, []string{"group", "topic"})
	reg.MustRegister(m.lag)
	reg.MustRegister(m.rebalances, m.rebalanceSeconds, m.removals, m.commits, m.commitSeconds, m.errors, m.stateOps, m.expired,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "floe_groups_groups",
			Help: "Groups held in memory by this coordinator (groups with members and recently emptied ones).",
		}, func() float64 { return float64(c.numGroups()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "floe_groups_metadata_bytes",
			Help: "Member protocol metadata, assignments and subscriptions held in memory.",
		}, func() float64 { return float64(c.metaBytes.Load()) }),
	)
	for k, name := range []string{"classic", "consumer"} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "floe_groups_members",
			Help:        "Members of the groups this coordinator holds.",
			ConstLabels: prometheus.Labels{"type": name},
		}, func() float64 { return float64(m.members[k].Load()) }))
	}
	return m
}
