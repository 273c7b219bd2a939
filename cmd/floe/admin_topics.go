package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// topics implements `floe topics list|create|describe|alter|delete`.
func (a *adminCLI) topics(ctx context.Context, args []string) error {
	return a.dispatch(ctx, "topics", []subcommand{
		{"list", "", "list topics with their partition counts", a.topicsList},
		{"create", "TOPIC...", "create topics", a.topicsCreate},
		{"describe", "TOPIC...", "show partitions, offsets and configs", a.topicsDescribe},
		{"alter", "TOPIC...", "add partitions and change configs", a.topicsAlter},
		{"delete", "TOPIC...", "delete topics and their records", a.topicsDelete},
	}, args)
}

// topicID renders a topic id as Kafka's tools do (URL-safe base64 without
// padding), or "" for the null id of brokers without topic ids.
func topicID(id kadm.TopicID) string {
	if id == (kadm.TopicID{}) {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(id[:])
}

type topicListJSON struct {
	Name       string `json:"name"`
	ID         string `json:"id,omitempty"`
	Partitions int    `json:"partitions"`
	Internal   bool   `json:"internal,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (a *adminCLI) topicsList(ctx context.Context, args []string) error {
	var f adminFlags
	var internal bool
	fs := a.newFlagSet("topics list", "[flags]")
	f.register(fs)
	fs.BoolVar(&internal, "internal", false, "include internal topics")
	if _, err := f.parse(fs, args, ""); err != nil {
		return err
	}
	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	details, err := adm.ListTopicsWithInternal(ctx)
	if err != nil {
		return explain("floe topics list", err)
	}
	var rows []topicListJSON
	for _, name := range details.Names() {
		d := details[name]
		if d.IsInternal && !internal {
			continue
		}
		rows = append(rows, topicListJSON{
			Name: name, ID: topicID(d.ID), Partitions: len(d.Partitions),
			Internal: d.IsInternal, Error: errString(d.Err),
		})
	}
	if f.output == "json" {
		if rows == nil {
			rows = []topicListJSON{}
		}
		return writeJSON(a.out, rows)
	}
	t := newTable(a.out, "TOPIC", "ID", "PARTITIONS", "ERROR")
	for _, r := range rows {
		t.row(r.Name, r.ID, r.Partitions, r.Error)
	}
	return t.flush()
}

type topicResultJSON struct {
	Name       string `json:"name"`
	ID         string `json:"id,omitempty"`
	Partitions int32  `json:"partitions,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (a *adminCLI) topicsCreate(ctx context.Context, args []string) error {
	var (
		f            adminFlags
		partitions   int
		replication  int
		configs      stringList
		validateOnly bool
	)
	fs := a.newFlagSet("topics create", "TOPIC... [flags]")
	f.register(fs)
	fs.IntVar(&partitions, "partitions", -1, "partition count (-1: the broker's default)")
	fs.IntVar(&replication, "replication-factor", -1, "replication factor (-1: the broker's default; Floe ignores it: objects are replicated by the bucket)")
	fs.Var(&configs, "config", "topic config `key=value` (repeatable), e.g. retention.ms=86400000")
	fs.BoolVar(&validateOnly, "validate-only", false, "ask the broker to check the request without creating anything")
	names, err := f.parse(fs, args, "topic")
	if err != nil {
		return err
	}
	// The counts go on the wire as int32 and int16: out of range, they
	// would wrap (4294967297 partitions became 1).
	if partitions == 0 || partitions < -1 || partitions > math.MaxInt32 {
		return fmt.Errorf("%w: floe topics create: --partitions %d: want a positive count up to %d or -1", errUsage, partitions, math.MaxInt32)
	}
	if replication == 0 || replication < -1 || replication > math.MaxInt16 {
		return fmt.Errorf("%w: floe topics create: --replication-factor %d: want a positive count up to %d or -1", errUsage, replication, math.MaxInt16)
	}
	kv, err := parseKeyValues("config", configs)
	if err != nil {
		return fmt.Errorf("%w: floe topics create: %w", errUsage, err)
	}
	cfg := make(map[string]*string, len(kv))
	for k, v := range kv {
		cfg[k] = &v
	}

	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	create := adm.CreateTopics
	if validateOnly {
		create = adm.ValidateCreateTopics
	}
	resps, err := create(ctx, int32(partitions), int16(replication), cfg, names...)
	if err != nil {
		return explain("floe topics create", err)
	}
	var rows []topicResultJSON
	var errs []error
	for _, name := range names {
		r, ok := resps[name]
		row := topicResultJSON{Name: name}
		switch {
		case !ok:
			row.Error = "no response for topic"
			errs = append(errs, fmt.Errorf("%s: no response", name))
		case r.Err != nil:
			row.Error = kafkaErr(r.Err, r.ErrMessage)
			errs = append(errs, fmt.Errorf("%s: %s", name, row.Error))
		default:
			row.ID, row.Partitions = topicID(r.ID), r.NumPartitions
		}
		rows = append(rows, row)
	}
	if err := a.printTopicResults(f.output, rows); err != nil {
		return err
	}
	return failures("floe topics create", errs)
}

// kafkaErr joins a Kafka error code with the broker's optional message.
func kafkaErr(err error, msg string) string {
	if msg == "" || strings.Contains(err.Error(), msg) {
		return err.Error()
	}
	return err.Error() + ": " + msg
}

func (a *adminCLI) printTopicResults(output string, rows []topicResultJSON) error {
	if output == "json" {
		return writeJSON(a.out, rows)
	}
	t := newTable(a.out, "TOPIC", "ID", "PARTITIONS", "STATUS")
	for _, r := range rows {
		status := "ok"
		if r.Error != "" {
			status = r.Error
		}
		parts := ""
		if r.Partitions > 0 {
			parts = fmt.Sprint(r.Partitions)
		}
		t.row(r.Name, r.ID, parts, status)
	}
	return t.flush()
}

type partitionJSON struct {
	Partition      int32   `json:"partition"`
	Leader         int32   `json:"leader"`
	LeaderEpoch    int32   `json:"leader_epoch"`
	Replicas       []int32 `json:"replicas"`
	LogStartOffset int64   `json:"log_start_offset"`
	HighWatermark  int64   `json:"high_watermark"`
	Error          string  `json:"error,omitempty"`
}

type configJSON struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Source    string `json:"source"`
	Sensitive bool   `json:"sensitive,omitempty"`
}

type topicDescJSON struct {
	Name       string          `json:"name"`
	ID         string          `json:"id,omitempty"`
	Internal   bool            `json:"internal,omitempty"`
	Partitions []partitionJSON `json:"partitions"`
	Configs    []configJSON    `json:"configs"`
	Error      string          `json:"error,omitempty"`
}

func (a *adminCLI) topicsDescribe(ctx context.Context, args []string) error {
	var f adminFlags
	var allConfigs bool
	fs := a.newFlagSet("topics describe", "TOPIC... [flags]")
	f.register(fs)
	fs.BoolVar(&allConfigs, "all-configs", false, "show every config, not only those set on the topic")
	names, err := f.parse(fs, args, "topic")
	if err != nil {
		return err
	}
	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	details, err := adm.ListTopicsWithInternal(ctx, names...)
	if err != nil {
		return explain("floe topics describe", err)
	}
	// Offsets and configs are only asked for topics that exist, so one
	// missing topic does not hide the others.
	var found []string
	for _, n := range names {
		if d, ok := details[n]; ok && d.Err == nil {
			found = append(found, n)
		}
	}
	var starts, ends kadm.ListedOffsets
	var configs kadm.ResourceConfigs
	if len(found) > 0 {
		if starts, err = adm.ListStartOffsets(ctx, found...); err != nil {
			return explain("floe topics describe: list start offsets", err)
		}
		if ends, err = adm.ListEndOffsets(ctx, found...); err != nil {
			return explain("floe topics describe: list end offsets", err)
		}
		if configs, err = adm.DescribeTopicConfigs(ctx, found...); err != nil {
			return explain("floe topics describe: describe configs", err)
		}
	}

	var out []topicDescJSON
	var errs []error
	for _, name := range names {
		d, ok := details[name]
		desc := topicDescJSON{Name: name, Partitions: []partitionJSON{}, Configs: []configJSON{}}
		if !ok || d.Err != nil {
			err := d.Err
			if !ok {
				err = errors.New("not in metadata response")
			}
			desc.Error = err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			out = append(out, desc)
			continue
		}
		desc.ID, desc.Internal = topicID(d.ID), d.IsInternal
		for _, p := range d.Partitions.Sorted() {
			pj := partitionJSON{
				Partition: p.Partition, Leader: p.Leader, LeaderEpoch: p.LeaderEpoch,
				Replicas: p.Replicas, LogStartOffset: -1, HighWatermark: -1,
			}
			if pj.Replicas == nil {
				pj.Replicas = []int32{}
			}
			perr := p.Err
			if s, ok := starts.Lookup(name, p.Partition); ok {
				pj.LogStartOffset = s.Offset
				perr = errors.Join(perr, s.Err)
			}
			if e, ok := ends.Lookup(name, p.Partition); ok {
				pj.HighWatermark = e.Offset
				perr = errors.Join(perr, e.Err)
			}
			pj.Error = errString(perr)
			desc.Partitions = append(desc.Partitions, pj)
		}
		if rc, err := configs.On(name, nil); err == nil {
			if rc.Err != nil {
				desc.Error = kafkaErr(rc.Err, rc.ErrMessage)
				errs = append(errs, fmt.Errorf("%s: describe configs: %s", name, desc.Error))
			}
			for _, c := range rc.Configs {
				if !allConfigs && c.Source != kmsg.ConfigSourceDynamicTopicConfig {
					continue
				}
				desc.Configs = append(desc.Configs, configJSON{
					Name: c.Key, Value: c.MaybeValue(), Source: configSource(c.Source), Sensitive: c.Sensitive,
				})
			}
		}
		out = append(out, desc)
	}

	if f.output == "json" {
		if err := writeJSON(a.out, out); err != nil {
			return err
		}
		return failures("floe topics describe", errs)
	}
	for i, d := range out {
		if i > 0 {
			fmt.Fprintln(a.out)
		}
		a.printTopicDesc(d)
	}
	return failures("floe topics describe", errs)
}

func (a *adminCLI) printTopicDesc(d topicDescJSON) {
	fmt.Fprintf(a.out, "Topic: %s", d.Name)
	if d.ID != "" {
		fmt.Fprintf(a.out, "\tID: %s", d.ID)
	}
	fmt.Fprintf(a.out, "\tPartitions: %d", len(d.Partitions))
	if d.Internal {
		fmt.Fprint(a.out, "\tInternal: true")
	}
	if d.Error != "" {
		fmt.Fprintf(a.out, "\tError: %s", d.Error)
	}
	fmt.Fprintln(a.out)
	if len(d.Configs) > 0 {
		t := newTable(a.out, "CONFIG", "VALUE", "SOURCE")
		for _, c := range d.Configs {
			v := c.Value
			if c.Sensitive {
				v = "(sensitive)"
			}
			t.row(c.Name, v, c.Source)
		}
		t.flush()
	}
	if len(d.Partitions) > 0 {
		t := newTable(a.out, "PARTITION", "LEADER", "EPOCH", "LOG-START", "HIGH-WATERMARK", "ERROR")
		for _, p := range d.Partitions {
			t.row(p.Partition, p.Leader, p.LeaderEpoch, p.LogStartOffset, p.HighWatermark, p.Error)
		}
		t.flush()
	}
}

// configSource names a config's source the way kafka-configs.sh does.
func configSource(s kmsg.ConfigSource) string {
	switch s {
	case kmsg.ConfigSourceDynamicTopicConfig:
		return "TOPIC"
	case kmsg.ConfigSourceDynamicBrokerConfig:
		return "BROKER"
	case kmsg.ConfigSourceDynamicDefaultBrokerConfig:
		return "CLUSTER-DEFAULT"
	case kmsg.ConfigSourceStaticBrokerConfig:
		return "STATIC-BROKER"
	case kmsg.ConfigSourceDefaultConfig:
		return "DEFAULT"
	case kmsg.ConfigSourceDynamicBrokerLoggerConfig:
		return "BROKER-LOGGER"
	default:
		return "UNKNOWN"
	}
}

func (a *adminCLI) topicsAlter(ctx context.Context, args []string) error {
	var (
		f            adminFlags
		partitions   int
		sets         stringList
		deletes      stringList
		validateOnly bool
	)
	fs := a.newFlagSet("topics alter", "TOPIC... [flags]")
	f.register(fs)
	fs.IntVar(&partitions, "partitions", 0, "grow each topic to this many partitions in total (0: leave as is; partitions cannot be removed)")
	fs.Var(&sets, "set", "set topic config `key=value` (repeatable)")
	fs.Var(&deletes, "delete", "remove topic config `key`, reverting it to the default (repeatable)")
	fs.BoolVar(&validateOnly, "validate-only", false, "ask the broker to check the request without changing anything")
	names, err := f.parse(fs, args, "topic")
	if err != nil {
		return err
	}
	// The count goes on the wire as an int32: out of range, it would wrap.
	if partitions < 0 || partitions > math.MaxInt32 {
		return fmt.Errorf("%w: floe topics alter: --partitions %d: want a positive count up to %d", errUsage, partitions, math.MaxInt32)
	}
	setKV, err := parseKeyValues("set", sets)
	if err != nil {
		return fmt.Errorf("%w: floe topics alter: %w", errUsage, err)
	}
	if partitions == 0 && len(setKV) == 0 && len(deletes) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: floe topics alter: nothing to change: give --partitions, --set or --delete", errUsage)
	}
	var alters []kadm.AlterConfig
	for _, k := range sortedKeys(setKV) {
		v := setKV[k]
		alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: &v})
	}
	for _, k := range deletes {
		alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
	}

	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	// Each topic's outcome collects the partition and the config change.
	results := make(map[string][]error, len(names))
	if partitions > 0 {
		update := adm.UpdatePartitions
		if validateOnly {
			update = adm.ValidateUpdatePartitions
		}
		resps, err := update(ctx, partitions, names...)
		if err != nil {
			return explain("floe topics alter: partitions", err)
		}
		for _, n := range names {
			if r, ok := resps[n]; !ok {
				results[n] = append(results[n], errors.New("partitions: no response"))
			} else if r.Err != nil {
				results[n] = append(results[n], fmt.Errorf("partitions: %s", kafkaErr(r.Err, r.ErrMessage)))
			}
		}
	}
	if len(alters) > 0 {
		alter := adm.AlterTopicConfigs
		if validateOnly {
			alter = adm.ValidateAlterTopicConfigs
		}
		resps, err := alter(ctx, alters, names...)
		if err != nil {
			return explain("floe topics alter: configs", err)
		}
		for _, n := range names {
			if r, err := resps.On(n, nil); err != nil {
				results[n] = append(results[n], errors.New("configs: no response"))
			} else if r.Err != nil {
				results[n] = append(results[n], fmt.Errorf("configs: %s", kafkaErr(r.Err, r.ErrMessage)))
			}
		}
	}
	var rows []topicResultJSON
	var errs []error
	for _, n := range names {
		row := topicResultJSON{Name: n}
		if err := errors.Join(results[n]...); err != nil {
			row.Error = strings.ReplaceAll(err.Error(), "\n", "; ")
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
		rows = append(rows, row)
	}
	if err := a.printTopicResults(f.output, rows); err != nil {
		return err
	}
	return failures("floe topics alter", errs)
}

func (a *adminCLI) topicsDelete(ctx context.Context, args []string) error {
	var f adminFlags
	fs := a.newFlagSet("topics delete", "TOPIC... [flags]")
	f.register(fs)
	names, err := f.parse(fs, args, "topic")
	if err != nil {
		return err
	}
	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	resps, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return explain("floe topics delete", err)
	}
	var rows []topicResultJSON
	var errs []error
	for _, n := range names {
		row := topicResultJSON{Name: n}
		if r, ok := resps[n]; !ok {
			row.Error = "no response for topic"
		} else if r.Err != nil {
			row.Error = kafkaErr(r.Err, r.ErrMessage)
		} else {
			row.ID = topicID(r.ID)
		}
		if row.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", n, row.Error))
		}
		rows = append(rows, row)
	}
	if err := a.printTopicResults(f.output, rows); err != nil {
		return err
	}
	return failures("floe topics delete", errs)
}
