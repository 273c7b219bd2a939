package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the catalog's Prometheus collectors. Labels are bounded: op
// is a method name.
type Metrics struct {
	duration      *prometheus.HistogramVec
	errors        *prometheus.CounterVec
	commitUnknown prometheus.Counter
	batches       *prometheus.CounterVec
}

// NewMetrics registers the catalog's collectors on reg (reusing them if
// they are already registered there, so several catalogs may share one
// registry):
//
//	floe_catalog_op_duration_seconds{op}  histogram of call latency
//	floe_catalog_op_errors_total{op}      calls failing for a reason other
//	                                      than a Kafka-level answer (unknown
//	                                      topic, invalid config, …)
//	floe_catalog_commit_unknown_total     commits with an unknown outcome
//	floe_catalog_commit_batches_total{result}  batches committed, by
//	                                      stored|duplicate|rejected
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "floe_catalog_op_duration_seconds",
			Help:    "Latency of catalog calls.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5ms … 4s
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_catalog_op_errors_total",
			Help: "Catalog calls that failed for a reason other than a Kafka-level answer.",
		}, []string{"op"}),
		commitUnknown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "floe_catalog_commit_unknown_total",
			Help: "Segment commits whose outcome was unknown (retried by key).",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "floe_catalog_commit_batches_total",
			Help: "Batches in committed segments, by result.",
		}, []string{"result"}),
	}
	var err error
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	if m.commitUnknown, err = register(reg, m.commitUnknown); err != nil {
		return nil, err
	}
	if m.batches, err = register(reg, m.batches); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("catalog: register metrics: %w", err)
	}
	return c, nil
}

// answers are errors that are Kafka-level answers, not failures.
var answers = []error{
	ErrTopicExists, ErrUnknownTopic, ErrInvalidTopic, ErrInvalidPartitions, ErrInvalidConfig,
	ErrOffsetOutOfRange, ErrOutOfOrderSequence, ErrInvalidProducerEpoch, ErrUnknownProducerID,
	ErrUnknownAgent, ErrAgentIDInUse, ErrGroupStateConflict, ErrGroupStateTooLarge, context.Canceled,
}

func (m *Metrics) observe(op string, start time.Time, err error) {
	m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err == nil {
		return
	}
	for _, a := range answers {
		if errors.Is(err, a) {
			return
		}
	}
	m.errors.WithLabelValues(op).Inc()
}

// Instrument wraps c so every call is measured on m. Cross-cutting, like
// objstore's metric bucket: backends stay free of metrics code. If c is
// also a Compactor, so is the result (compaction calls pass through
// unmeasured; package compaction has its own metrics).
func Instrument(c Catalog, m *Metrics) Catalog {
	i := &instrumented{c: c, m: m}
	if comp, ok := c.(Compactor); ok {
		return instrumentedCompactor{i, comp}
	}
	return i
}

type instrumentedCompactor struct {
	*instrumented
	Compactor
}

type instrumented struct {
	c Catalog
	m *Metrics
}

var _ Catalog = (*instrumented)(nil)

func (i *instrumented) CreateTopic(ctx context.Context, spec TopicSpec) (t Topic, err error) {
	defer func(s time.Time) { i.m.observe("create_topic", s, err) }(time.Now())
	return i.c.CreateTopic(ctx, spec)
}

func (i *instrumented) DeleteTopic(ctx context.Context, name string, id TopicID) (deleted TopicID, err error) {
	defer func(s time.Time) { i.m.observe("delete_topic", s, err) }(time.Now())
	return i.c.DeleteTopic(ctx, name, id)
}

func (i *instrumented) Topic(ctx context.Context, name string) (t Topic, err error) {
	defer func(s time.Time) { i.m.observe("topic", s, err) }(time.Now())
	return i.c.Topic(ctx, name)
}

func (i *instrumented) TopicByID(ctx context.Context, id TopicID) (t Topic, err error) {
	defer func(s time.Time) { i.m.observe("topic_by_id", s, err) }(time.Now())
	return i.c.TopicByID(ctx, id)
}

func (i *instrumented) ListTopics(ctx context.Context) (ts []Topic, err error) {
	defer func(s time.Time) { i.m.observe("list_topics", s, err) }(time.Now())
	return i.c.ListTopics(ctx)
}

func (i *instrumented) CreatePartitions(ctx context.Context, name string, total int32) (err error) {
	defer func(s time.Time) { i.m.observe("create_partitions", s, err) }(time.Now())
	return i.c.CreatePartitions(ctx, name, total)
}

func (i *instrumented) AlterTopicConfigs(ctx context.Context, name string, ops []ConfigOp) (t Topic, err error) {
	defer func(s time.Time) { i.m.observe("alter_topic_configs", s, err) }(time.Now())
	return i.c.AlterTopicConfigs(ctx, name, ops)
}

func (i *instrumented) ReplaceTopicConfigs(ctx context.Context, name string, configs map[string]string) (t Topic, err error) {
	defer func(s time.Time) { i.m.observe("replace_topic_configs", s, err) }(time.Now())
	return i.c.ReplaceTopicConfigs(ctx, name, configs)
}

func (i *instrumented) CommitSegment(ctx context.Context, seg Segment) (res CommitResult, err error) {
	defer func(s time.Time) {
		i.m.observe("commit_segment", s, err)
		if errors.Is(err, ErrCommitUnknown) {
			i.m.commitUnknown.Inc()
		}
		i.m.countResults(res.Results)
	}(time.Now())
	return i.c.CommitSegment(ctx, seg)
}

func (i *instrumented) CommitSegments(ctx context.Context, segs []Segment) (res []CommitResult, err error) {
	defer func(s time.Time) {
		i.m.observe("commit_segments", s, err)
		if errors.Is(err, ErrCommitUnknown) {
			i.m.commitUnknown.Inc()
		}
		for _, cr := range res {
			i.m.countResults(cr.Results)
		}
	}(time.Now())
	return i.c.CommitSegments(ctx, segs)
}

func (i *instrumented) Batches(ctx context.Context, tp TopicPartition, from, maxBytes int64) (rows []BatchRow, err error) {
	defer func(s time.Time) { i.m.observe("batches", s, err) }(time.Now())
	return i.c.Batches(ctx, tp, from, maxBytes)
}

func (i *instrumented) Offsets(ctx context.Context, tp TopicPartition) (o PartitionOffsets, err error) {
	defer func(s time.Time) { i.m.observe("offsets", s, err) }(time.Now())
	return i.c.Offsets(ctx, tp)
}

func (i *instrumented) OffsetsOf(ctx context.Context, tps []TopicPartition) (o map[TopicPartition]PartitionOffsets, err error) {
	defer func(s time.Time) { i.m.observe("offsets_of", s, err) }(time.Now())
	return i.c.OffsetsOf(ctx, tps)
}

func (i *instrumented) BatchForTimestamp(ctx context.Context, tp TopicPartition, ts, from int64) (r BatchRow, ls int64, ok bool, err error) {
	defer func(s time.Time) { i.m.observe("batch_for_timestamp", s, err) }(time.Now())
	return i.c.BatchForTimestamp(ctx, tp, ts, from)
}

func (i *instrumented) MaxTimestampBatch(ctx context.Context, tp TopicPartition, from int64) (r BatchRow, ls int64, ok bool, err error) {
	defer func(s time.Time) { i.m.observe("max_timestamp_batch", s, err) }(time.Now())
	return i.c.MaxTimestampBatch(ctx, tp, from)
}

func (i *instrumented) DeleteRecords(ctx context.Context, tp TopicPartition, offset int64) (n int64, err error) {
	defer func(s time.Time) { i.m.observe("delete_records", s, err) }(time.Now())
	return i.c.DeleteRecords(ctx, tp, offset)
}

func (i *instrumented) CommitsSince(ctx context.Context, after int64, limit int) (rows []BatchRow, latest int64, err error) {
	defer func(s time.Time) { i.m.observe("commits_since", s, err) }(time.Now())
	return i.c.CommitsSince(ctx, after, limit)
}

func (i *instrumented) TopicConfigsSince(ctx context.Context, after int64) (ts []Topic, latest int64, err error) {
	defer func(s time.Time) { i.m.observe("topic_configs_since", s, err) }(time.Now())
	return i.c.TopicConfigsSince(ctx, after)
}

func (i *instrumented) WatchTopicConfigs(ctx context.Context) (ch <-chan int64, err error) {
	defer func(s time.Time) { i.m.observe("watch_topic_configs", s, err) }(time.Now())
	return i.c.WatchTopicConfigs(ctx)
}

func (i *instrumented) Watch(ctx context.Context) (ch <-chan int64, err error) {
	defer func(s time.Time) { i.m.observe("watch", s, err) }(time.Now())
	return i.c.Watch(ctx)
}

func (i *instrumented) AllocateProducerID(ctx context.Context) (id int64, epoch int16, err error) {
	defer func(s time.Time) { i.m.observe("allocate_producer_id", s, err) }(time.Now())
	return i.c.AllocateProducerID(ctx)
}

func (i *instrumented) BumpProducerEpoch(ctx context.Context, id int64, epoch int16) (e int16, err error) {
	defer func(s time.Time) { i.m.observe("bump_producer_epoch", s, err) }(time.Now())
	return i.c.BumpProducerEpoch(ctx, id, epoch)
}

func (i *instrumented) CommitOffsets(ctx context.Context, group string, offsets []GroupOffset) (refused []GroupPartition, err error) {
	defer func(s time.Time) { i.m.observe("commit_offsets", s, err) }(time.Now())
	return i.c.CommitOffsets(ctx, group, offsets)
}

func (i *instrumented) FetchOffsets(ctx context.Context, group string, parts []GroupPartition) (o []GroupOffset, err error) {
	defer func(s time.Time) { i.m.observe("fetch_offsets", s, err) }(time.Now())
	return i.c.FetchOffsets(ctx, group, parts)
}

func (i *instrumented) DeleteOffsets(ctx context.Context, group string, parts []GroupPartition) (err error) {
	defer func(s time.Time) { i.m.observe("delete_offsets", s, err) }(time.Now())
	return i.c.DeleteOffsets(ctx, group, parts)
}

func (i *instrumented) ExpireOffsets(ctx context.Context, before time.Time) (n int, err error) {
	defer func(s time.Time) { i.m.observe("expire_offsets", s, err) }(time.Now())
	return i.c.ExpireOffsets(ctx, before)
}

func (i *instrumented) DeleteGroup(ctx context.Context, group string) (err error) {
	defer func(s time.Time) { i.m.observe("delete_group", s, err) }(time.Now())
	return i.c.DeleteGroup(ctx, group)
}

func (i *instrumented) ListGroups(ctx context.Context) (g []string, err error) {
	defer func(s time.Time) { i.m.observe("list_groups", s, err) }(time.Now())
	return i.c.ListGroups(ctx)
}

func (i *instrumented) LoadGroupState(ctx context.Context, group string) (s []byte, v int64, err error) {
	defer func(s time.Time) { i.m.observe("load_group_state", s, err) }(time.Now())
	return i.c.LoadGroupState(ctx, group)
}

func (i *instrumented) SaveGroupState(ctx context.Context, group string, expect int64, state []byte) (v int64, err error) {
	defer func(s time.Time) { i.m.observe("save_group_state", s, err) }(time.Now())
	return i.c.SaveGroupState(ctx, group, expect, state)
}

func (i *instrumented) DeleteGroupState(ctx context.Context, group string, expect int64) (err error) {
	defer func(s time.Time) { i.m.observe("delete_group_state", s, err) }(time.Now())
	return i.c.DeleteGroupState(ctx, group, expect)
}

func (i *instrumented) RegisterAgent(ctx context.Context, a Agent, ttl time.Duration) (r Agent, err error) {
	defer func(s time.Time) { i.m.observe("register_agent", s, err) }(time.Now())
	return i.c.RegisterAgent(ctx, a, ttl)
}

func (i *instrumented) HeartbeatAgent(ctx context.Context, nodeID int32, started time.Time) (err error) {
	defer func(s time.Time) { i.m.observe("heartbeat_agent", s, err) }(time.Now())
	return i.c.HeartbeatAgent(ctx, nodeID, started)
}

func (i *instrumented) DeregisterAgent(ctx context.Context, nodeID int32, started time.Time) (err error) {
	defer func(s time.Time) { i.m.observe("deregister_agent", s, err) }(time.Now())
	return i.c.DeregisterAgent(ctx, nodeID, started)
}

func (i *instrumented) LiveAgents(ctx context.Context, ttl time.Duration) (a []Agent, gen int64, err error) {
	defer func(s time.Time) { i.m.observe("live_agents", s, err) }(time.Now())
	return i.c.LiveAgents(ctx, ttl)
}

func (i *instrumented) ExpireAgents(ctx context.Context, ttl time.Duration) (n int, err error) {
	defer func(s time.Time) { i.m.observe("expire_agents", s, err) }(time.Now())
	return i.c.ExpireAgents(ctx, ttl)
}

func (i *instrumented) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (ok bool, err error) {
	defer func(s time.Time) { i.m.observe("acquire_lease", s, err) }(time.Now())
	return i.c.AcquireLease(ctx, name, holder, ttl)
}

func (i *instrumented) RenewLease(ctx context.Context, name, holder string, ttl time.Duration) (ok bool, err error) {
	defer func(s time.Time) { i.m.observe("renew_lease", s, err) }(time.Now())
	return i.c.RenewLease(ctx, name, holder, ttl)
}

func (i *instrumented) ReleaseLease(ctx context.Context, name, holder string) (err error) {
	defer func(s time.Time) { i.m.observe("release_lease", s, err) }(time.Now())
	return i.c.ReleaseLease(ctx, name, holder)
}

func (i *instrumented) Close() error { return i.c.Close() }

// Ping passes through to the backend's Ping (both backends have one).
func (i *instrumented) Ping(ctx context.Context) error {
	if p, ok := i.c.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Unwrap returns the instrumented catalog (for backend-specific calls such
// as Migrate).
func (i *instrumented) Unwrap() Catalog { return i.c }

// countResults counts one commit's batches by result.
func (m *Metrics) countResults(results []BatchResult) {
	var stored, dup, rejected int
	for _, r := range results {
		switch {
		case r.Err != nil:
			rejected++
		case r.Duplicate:
			dup++
		default:
			stored++
		}
	}
	// Added per commit, not per batch: a commit may hold thousands.
	m.batches.WithLabelValues("stored").Add(float64(stored))
	m.batches.WithLabelValues("duplicate").Add(float64(dup))
	m.batches.WithLabelValues("rejected").Add(float64(rejected))
}
