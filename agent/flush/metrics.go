package flush

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	objectBytes   prometheus.Histogram
	putSeconds    prometheus.Histogram
	putErrors     prometheus.Counter
	commitSeconds prometheus.Histogram
	commitErrors  prometheus.Counter
	batches       *prometheus.CounterVec
	// The children of batches, looked up once.
	batchesOK, batchesDup, batchesErr prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	lat := prometheus.ExponentialBuckets(0.001, 2, 15)
	m := &metrics{
		objectBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_flush_object_size_bytes", Help: "Size of segment objects put.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
		}),
		putSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_flush_put_duration_seconds", Help: "Time to put one segment object.", Buckets: lat,
		}),
		putErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_flush_put_errors_total", Help: "Failed segment object puts.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_flush_commit_duration_seconds", Help: "Time of one successful CommitSegment or CommitSegments call.", Buckets: lat,
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_flush_commit_errors_total", Help: "Failed CommitSegment and CommitSegments calls.",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_flush_batches_total", Help: "Committed batches by outcome (ok, duplicate, error).",
		}, []string{"result"}),
	}
	m.batchesOK = m.batches.WithLabelValues("ok")
	m.batchesDup = m.batches.WithLabelValues("duplicate")
	m.batchesErr = m.batches.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.objectBytes, m.putSeconds, m.putErrors, m.commitSeconds, m.commitErrors, m.batches)
	}
	return m
}
