package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the agent's floe_agent_* metrics. Label sets are bounded:
// api is a served API name or "other", reason and kind are fixed sets.
type metrics struct {
	requests      *prometheus.CounterVec   // api
	latency       *prometheus.HistogramVec // api
	requestErrors *prometheus.CounterVec   // api, kind
	partitionErrs *prometheus.CounterVec   // api, code

	connsActive prometheus.Gauge
	connsTotal  prometheus.Counter
	connsClosed *prometheus.CounterVec // reason
	// connsRefused: reason max_connections or max_connections_per_ip.
	connsRefused *prometheus.CounterVec

	queuedBytes prometheus.Gauge   // request budget held
	queuedWaits prometheus.Counter // frames that waited for it

	responseBytes prometheus.Gauge   // response budget held
	responseWaits prometheus.Counter // fetches that waited for it

	producedBytes   prometheus.Counter
	producedBatches prometheus.Counter
	fetchedBytes    prometheus.Counter

	cacheHits       *prometheus.CounterVec // cache
	cacheMisses     *prometheus.CounterVec // cache
	cachePrefetches *prometheus.CounterVec // cache
	cacheBytes      *prometheus.GaugeVec   // cache
	cacheEvictions  *prometheus.CounterVec // cache

	followerCommit prometheus.Gauge
	followerErrors prometheus.Counter
	liveAgents     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_requests_total", Help: "Kafka requests handled, by API.",
		}, []string{"api"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "floe_agent_request_duration_seconds", Help: "Time from decoding a request to its response being ready, by API.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"api"}),
		requestErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_request_errors_total", Help: "Requests that closed their connection, by API and kind (unsupported, decode, panic, closed).",
		}, []string{"api", "kind"}),
		partitionErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_partition_errors_total", Help: "Produce and fetch partitions answered with an error code, by API and Kafka error name.",
		}, []string{"api", "code"}),
		connsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floe_agent_connections", Help: "Open Kafka client connections.",
		}),
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_connections_accepted_total", Help: "Kafka client connections accepted.",
		}),
		connsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_connections_closed_total", Help: "Kafka client connections closed, by reason.",
		}, []string{"reason"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_connections_refused_total", Help: "Kafka client connections closed on accept for a connection limit, by limit (max_connections, max_connections_per_ip).",
		}, []string{"limit"}),
		queuedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floe_agent_queued_request_bytes", Help: "Bytes of request frames above 64 KiB being read or handled (bounded by --max-queued-request-bytes).",
		}),
		queuedWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_queued_request_waits_total", Help: "Request frames whose reading waited for --max-queued-request-bytes to have room.",
		}),
		responseBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floe_agent_queued_response_bytes", Help: "Record bytes of fetch responses being built or written (bounded by --max-queued-response-bytes).",
		}),
		responseWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_queued_response_waits_total", Help: "Fetches that waited for --max-queued-response-bytes to have room for their first batch.",
		}),
		producedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_produced_bytes_total", Help: "Record batch bytes acknowledged to producers.",
		}),
		producedBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_produced_batches_total", Help: "Record batches acknowledged to producers.",
		}),
		fetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_fetched_bytes_total", Help: "Record batch bytes served to fetchers.",
		}),
		cacheHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_read_cache_hits_total", Help: "Byte range reads served from a read cache (or a read already in flight), by cache (tail, catchup).",
		}, []string{"cache"}),
		cacheMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_read_cache_misses_total", Help: "Byte range reads that started a bucket GET, by cache.",
		}, []string{"cache"}),
		cachePrefetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_read_cache_prefetches_total", Help: "Bucket GETs started ahead of catch-up reads, by cache.",
		}, []string{"cache"}),
		cacheBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "floe_agent_read_cache_bytes", Help: "Bytes held by a read cache, by cache.",
		}, []string{"cache"}),
		cacheEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_agent_read_cache_evictions_total", Help: "Ranges evicted from a read cache, by cache.",
		}, []string{"cache"}),
		followerCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floe_agent_follower_commit_id", Help: "Latest catalog commit id applied to the tail index.",
		}),
		followerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_agent_follower_errors_total", Help: "Failed catalog reads of the commit follower.",
		}),
		liveAgents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floe_agent_live_agents", Help: "Live agents in this agent's view of the fleet.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.requestErrors, m.partitionErrs,
			m.connsActive, m.connsTotal, m.connsClosed, m.connsRefused, m.queuedBytes, m.queuedWaits,
			m.responseBytes, m.responseWaits,
			m.producedBytes, m.producedBatches, m.fetchedBytes,
			m.cacheHits, m.cacheMisses, m.cachePrefetches, m.cacheBytes, m.cacheEvictions,
			m.followerCommit, m.followerErrors, m.liveAgents)
	}
	return m
}

// cache returns the series of one read cache.
func (m *metrics) cache(name string) cacheMetrics {
	return cacheMetrics{
		hits:       m.cacheHits.WithLabelValues(name),
		misses:     m.cacheMisses.WithLabelValues(name),
		prefetches: m.cachePrefetches.WithLabelValues(name),
		evictions:  m.cacheEvictions.WithLabelValues(name),
		bytes:      m.cacheBytes.WithLabelValues(name),
	}
}
