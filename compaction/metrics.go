package compaction

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	bytesCompacted   prometheus.Counter
	objectsCompacted prometheus.Counter
	rowsBefore       prometheus.Counter
	rowsAfter        prometheus.Counter
	swapConflicts    prometheus.Counter
	rowsTrimmed      prometheus.Counter
	gcDeleted        *prometheus.CounterVec
	errors           prometheus.Counter
	rows             prometheus.Gauge
	objects          prometheus.Gauge
	liveBytes        prometheus.Gauge
	lag              prometheus.Gauge
}

// newMetrics registers compaction's collectors on reg (nil: unregistered),
// reusing ones already registered there:
//
//	floe_compaction_bytes_total               bytes rewritten by merges
//	floe_compaction_objects_total             objects merged away (inputs)
//	floe_compaction_rows_before_total         rows replaced by merges
//	floe_compaction_rows_after_total          rows merges wrote
//	floe_compaction_swap_conflicts_total      merges that lost a race
//	floe_compaction_rows_trimmed_total        rows removed by retention
//	floe_compaction_gc_deleted_objects_total{reason}  unreferenced|orphan
//	floe_compaction_errors_total              failed passes
//	floe_compaction_catalog_rows              batch rows in the catalog
//	floe_compaction_catalog_objects           object rows in the catalog
//	floe_compaction_live_bytes                bytes the rows reference
//	floe_compaction_oldest_uncompacted_seconds  age of the oldest flushed
//	                                          segment still referenced
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "floe_compaction_" + name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: "floe_compaction_" + name, Help: help})
	}
	m := &metrics{
		bytesCompacted:   c("bytes_total", "Bytes rewritten into merged segments."),
		objectsCompacted: c("objects_total", "Input objects merged away."),
		rowsBefore:       c("rows_before_total", "Catalog rows replaced by merges."),
		rowsAfter:        c("rows_after_total", "Catalog rows written by merges."),
		swapConflicts:    c("swap_conflicts_total", "Merges that lost a race and were dropped."),
		rowsTrimmed:      c("rows_trimmed_total", "Catalog rows removed below the log start."),
		gcDeleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_compaction_gc_deleted_objects_total", Help: "Objects deleted by garbage collection.",
		}, []string{"reason"}),
		errors:    c("errors_total", "Compaction passes that failed."),
		rows:      g("catalog_rows", "Batch rows in the catalog."),
		objects:   g("catalog_objects", "Object rows in the catalog."),
		liveBytes: g("live_bytes", "Bytes referenced by batch rows."),
		lag:       g("oldest_uncompacted_seconds", "Age of the oldest flushed segment still referenced."),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, f := range []*prometheus.Counter{&m.bytesCompacted, &m.objectsCompacted, &m.rowsBefore, &m.rowsAfter,
		&m.swapConflicts, &m.rowsTrimmed, &m.errors} {
		if *f, err = reuse(reg, *f); err != nil {
			return nil, err
		}
	}
	for _, f := range []*prometheus.Gauge{&m.rows, &m.objects, &m.liveBytes, &m.lag} {
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
