package wal

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	flushBytes    prometheus.Histogram
	flushEntries  prometheus.Histogram
	flushes       prometheus.Counter
	seals         *prometheus.CounterVec
	dropped       prometheus.Counter
	sealToCommit  prometheus.Histogram
	commitWait    prometheus.Histogram
	uploadSeconds prometheus.Histogram
	commitSeconds prometheus.Histogram
	commitGroup   prometheus.Histogram
	fsyncSeconds  prometheus.Histogram
	buffered      prometheus.Gauge
	retries       *prometheus.CounterVec
	replayed      prometheus.Counter
	writeErrors   prometheus.Counter
	replayCut     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	lat := prometheus.ExponentialBuckets(0.001, 2, 15) // 1ms .. 16s
	m := &metrics{
		flushBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_flush_size_bytes", Help: "Batch bytes per sealed buffer.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 10), // 1 KiB .. 256 MiB
		}),
		flushEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_flush_entries", Help: "Record batches per sealed buffer.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		flushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_wal_flushes_total", Help: "Buffers uploaded and committed.",
		}),
		seals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_wal_seals_total", Help: "Buffers sealed, by reason: interval (the flush interval cadence), bytes (flush bytes reached), early (every appender waits for its acks; see SealEarly), drain (shutdown).",
		}, []string{"reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_wal_dropped_buffers_total", Help: "Buffers dropped after a permanent upload or commit error (their appends failed).",
		}),
		sealToCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_seal_to_commit_seconds", Help: "Time from sealing a buffer to its commit.", Buckets: lat,
		}),
		commitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_commit_wait_seconds", Help: "Time an uploaded buffer waited for the commits of the buffers sealed before it.", Buckets: lat,
		}),
		uploadSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_upload_duration_seconds", Help: "Time to upload a buffer, retries included.", Buckets: lat,
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_commit_duration_seconds", Help: "Time to commit a buffer, retries included.", Buckets: lat,
		}),
		commitGroup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_commit_group_buffers", Help: "Buffers committed per successful sink commit call (above 1: uploaded buffers that queued behind a commit were committed together).",
			Buckets: []float64{1, 2, 3, 4, 6, 8},
		}),
		fsyncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "floe_wal_fsync_duration_seconds", Help: "Time to fsync, rename and fsync the directory of a sealed buffer.", Buckets: lat,
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "floe_wal_buffered_bytes", Help: "Batch bytes appended and not yet committed.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_wal_sink_retries_total", Help: "Failed sink calls that were retried, by operation.",
		}, []string{"op"}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_wal_replayed_buffers_total", Help: "Buffers found on disk at open and queued for flushing.",
		}),
		writeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_wal_write_errors_total", Help: "Failed creates or writes of the open buffer's file; each discarded that buffer and failed its appends.",
		}),
		replayCut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_wal_replay_dropped_bytes_total", Help: "Bytes of buffer files not replayed at open: cut from unsealed files (never acknowledged) from their first damaged or torn record on, the files after an unsealed one (never committed), and damaged files moved aside with the files after them.",
		}),
	}
	for _, r := range []string{sealInterval, sealBytes, sealEarly, sealDrain} {
		m.seals.WithLabelValues(r) // export zeros, so rate() works from the start
	}
	if reg != nil {
		reg.MustRegister(m.flushBytes, m.flushEntries, m.flushes, m.seals, m.dropped, m.sealToCommit, m.commitWait,
			m.uploadSeconds, m.commitSeconds, m.commitGroup, m.fsyncSeconds, m.buffered, m.retries, m.replayed,
			m.writeErrors, m.replayCut)
	}
	return m
}
