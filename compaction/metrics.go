package compaction

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are compaction's collectors (docs/metrics.md lists them).
type metrics struct {
	bytesCompacted   prometheus.Counter
	objectsCompacted prometheus.Counter
	puts             prometheus.Counter
	rowsBefore       prometheus.Counter
	rowsAfter        prometheus.Counter
	recordsRemoved   prometheus.Counter
	horizonsSet      prometheus.Counter
	swapConflicts    prometheus.Counter
	rowsTrimmed      prometheus.Counter
	tombstonesPruned prometheus.Counter
	gcDeleted        *prometheus.CounterVec
	errors           prometheus.Counter
	rows             prometheus.Gauge
	objects          prometheus.Gauge
	tombstones       prometheus.Gauge
	liveBytes        prometheus.Gauge
	lag              prometheus.Gauge
	statsTime        prometheus.Gauge

	// Idempotent-producer expiry.
	producerStatesExpired prometheus.Counter
	producersExpired      prometheus.Counter
}

// newMetrics registers compaction's collectors on reg (nil: unregistered),
// reusing ones already registered there (several Compactors in a process).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(o prometheus.CounterOpts) prometheus.Counter { return prometheus.NewCounter(o) }
	gauge := func(o prometheus.GaugeOpts) prometheus.Gauge { return prometheus.NewGauge(o) }
	m := &metrics{
		bytesCompacted:   counter(prometheus.CounterOpts{Name: "floe_compaction_bytes_total", Help: "Bytes written into merged or log-compacted segments."}),
		objectsCompacted: counter(prometheus.CounterOpts{Name: "floe_compaction_objects_total", Help: "Input objects merged or log-compacted away."}),
		puts: counter(prometheus.CounterOpts{Name: "floe_compaction_puts_total",
			Help: "Put calls of merged and log-compacted segments (puts again included, failed ones too)."}),
		rowsBefore:     counter(prometheus.CounterOpts{Name: "floe_compaction_rows_before_total", Help: "Catalog rows replaced by merges and log compaction."}),
		rowsAfter:      counter(prometheus.CounterOpts{Name: "floe_compaction_rows_after_total", Help: "Catalog rows written by merges and log compaction."}),
		recordsRemoved: counter(prometheus.CounterOpts{Name: "floe_compaction_log_records_removed_total", Help: "Records removed by log compaction (superseded values and expired tombstones)."}),
		horizonsSet: counter(prometheus.CounterOpts{Name: "floe_compaction_delete_horizons_set_total",
			Help: "Record batches given a delete horizon by log compaction: they kept a tombstone, which goes delete.retention.ms later."}),
		swapConflicts:    counter(prometheus.CounterOpts{Name: "floe_compaction_swap_conflicts_total", Help: "Merges and log compactions that lost a race and were dropped."}),
		rowsTrimmed:      counter(prometheus.CounterOpts{Name: "floe_compaction_rows_trimmed_total", Help: "Catalog rows removed below the log start."}),
		tombstonesPruned: counter(prometheus.CounterOpts{Name: "floe_compaction_tombstones_pruned_total", Help: "Catalog tombstones of collected objects pruned after their retention."}),
		producerStatesExpired: counter(prometheus.CounterOpts{Name: "floe_compaction_producer_states_expired_total",
			Help: "Idempotent producer states (one producer on one partition) deleted after compaction.producer-expiration without a write."}),
		producersExpired: counter(prometheus.CounterOpts{Name: "floe_compaction_producers_expired_total",
			Help: "Idempotent producer ids (epochs) deleted once idle for compaction.producer-expiration with no state left."}),
		gcDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_compaction_gc_deleted_objects_total", Help: "Objects deleted by garbage collection.",
		}, []string{"reason"}),
		errors:     counter(prometheus.CounterOpts{Name: "floe_compaction_errors_total", Help: "Compaction passes that failed, and shard passes that lost their lease part way."}),
		rows:       gauge(prometheus.GaugeOpts{Name: "floe_compaction_catalog_rows", Help: "Batch rows in the catalog."}),
		objects:    gauge(prometheus.GaugeOpts{Name: "floe_compaction_catalog_objects", Help: "Object rows in the catalog, tombstones excluded."}),
		tombstones: gauge(prometheus.GaugeOpts{Name: "floe_compaction_catalog_tombstones", Help: "Object rows kept as tombstones after garbage collection."}),
		liveBytes:  gauge(prometheus.GaugeOpts{Name: "floe_compaction_live_bytes", Help: "Bytes referenced by batch rows."}),
		lag:        gauge(prometheus.GaugeOpts{Name: "floe_compaction_oldest_uncompacted_seconds", Help: "Age of the oldest flushed segment still referenced."}),
		statsTime:  gauge(prometheus.GaugeOpts{Name: "floe_compaction_catalog_stats_timestamp_seconds", Help: "When this agent last counted the catalog for the floe_compaction_catalog_*, live_bytes and oldest_uncompacted_seconds gauges, as Unix seconds."}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, f := range []*prometheus.Counter{&m.bytesCompacted, &m.objectsCompacted, &m.puts, &m.rowsBefore, &m.rowsAfter,
		&m.recordsRemoved, &m.horizonsSet, &m.swapConflicts, &m.rowsTrimmed, &m.tombstonesPruned, &m.producerStatesExpired,
		&m.producersExpired, &m.errors} {
		if *f, err = reuse(reg, *f); err != nil {
			return nil, err
		}
	}
	for _, f := range []*prometheus.Gauge{&m.rows, &m.objects, &m.tombstones, &m.liveBytes, &m.lag, &m.statsTime} {
		if *f, err = reuse(reg, *f); err != nil {
			return nil, err
		}
	}
	if m.gcDeleted, err = reuse(reg, m.gcDeleted); err != nil {
		return nil, err
	}
	return m, nil
}

// reuse registers c, or returns the equal collector already registered.
func reuse[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}
