package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// groups implements `floe groups list|describe|reset-offsets|delete`.
// Agents that do not serve the consumer group APIs yet make these commands
// fail with an error that says so (see explain).
func (a *adminCLI) groups(ctx context.Context, args []string) error {
	return a.dispatch(ctx, "groups", []subcommand{
		{"list", "", "list consumer groups", a.groupsList},
		{"describe", "GROUP...", "show members, committed offsets and lag", a.groupsDescribe},
		{"reset-offsets", "GROUP", "move an inactive group's committed offsets (dry run unless --execute)", a.groupsResetOffsets},
		{"delete", "GROUP...", "delete inactive groups and their committed offsets", a.groupsDelete},
	}, args)
}

type groupListJSON struct {
	Group        string `json:"group"`
	State        string `json:"state"`
	ProtocolType string `json:"protocol_type"`
	Coordinator  int32  `json:"coordinator"`
}

func (a *adminCLI) groupsList(ctx context.Context, args []string) error {
	var f adminFlags
	fs := a.newFlagSet("groups list", "[flags]")
	f.register(fs)
	if _, err := f.parse(fs, args, ""); err != nil {
		return err
	}
	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return explain("floe groups list", err)
	}
	rows := []groupListJSON{}
	for _, g := range listed.Sorted() {
		rows = append(rows, groupListJSON{g.Group, g.State, g.ProtocolType, g.Coordinator})
	}
	if f.output == "json" {
		return writeJSON(a.out, rows)
	}
	t := newTable(a.out, "GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR")
	for _, r := range rows {
		t.row(r.Group, r.State, r.ProtocolType, r.Coordinator)
	}
	return t.flush()
}

type groupMemberJSON struct {
	MemberID   string `json:"member_id"`
	InstanceID string `json:"instance_id,omitempty"`
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
}

type groupOffsetJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Committed is -1 when the group has no committed offset there.
	Committed int64  `json:"committed"`
	LogEnd    int64  `json:"log_end"`
	Lag       int64  `json:"lag"`
	MemberID  string `json:"member_id,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Host      string `json:"host,omitempty"`
	Error     string `json:"error,omitempty"`
}

type groupDescJSON struct {
	Group        string            `json:"group"`
	State        string            `json:"state"`
	ProtocolType string            `json:"protocol_type"`
	Protocol     string            `json:"protocol"`
	Coordinator  int32             `json:"coordinator"`
	Members      []groupMemberJSON `json:"members"`
	Offsets      []groupOffsetJSON `json:"offsets"`
	TotalLag     int64             `json:"total_lag"`
	Error        string            `json:"error,omitempty"`
}

func (a *adminCLI) groupsDescribe(ctx context.Context, args []string) error {
	var f adminFlags
	fs := a.newFlagSet("groups describe", "GROUP... [flags]")
	f.register(fs)
	names, err := f.parse(fs, args, "group")
	if err != nil {
		return err
	}
	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	lags, err := adm.Lag(ctx, names...)
	if err != nil {
		return explain("floe groups describe", err)
	}
	// DescribeGroups v6+ (KIP-1043) answers GROUP_ID_NOT_FOUND for a
	// KIP-848 consumer group: those only ConsumerGroupDescribe shows.
	var notClassic []string
	for _, name := range names {
		if l, ok := lags[name]; ok && errors.Is(l.DescribeErr, kerr.GroupIDNotFound) {
			notClassic = append(notClassic, name)
		}
	}
	var consumerGroups kadm.DescribedConsumerGroups
	if len(notClassic) > 0 {
		// An error leaves the groups' GROUP_ID_NOT_FOUND to be reported.
		consumerGroups, _ = adm.DescribeConsumerGroups(ctx, notClassic...)
	}
	var out []groupDescJSON
	var errs []error
	for _, name := range names {
		l, ok := lags[name]
		d := groupDescJSON{Group: name, Members: []groupMemberJSON{}, Offsets: []groupOffsetJSON{}}
		if !ok {
			d.Error = "no response for group"
			errs = append(errs, fmt.Errorf("%s: no response", name))
			out = append(out, d)
			continue
		}
		if cg, ok := consumerGroups[name]; ok && cg.Err == nil {
			if err := describeConsumerGroup(ctx, adm, cg, &d); err != nil {
				d.Error = explain("describe", err).Error()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			out = append(out, d)
			continue
		}
		d.State, d.ProtocolType, d.Protocol, d.Coordinator = l.State, l.ProtocolType, l.Protocol, l.Coordinator.NodeID
		if err := l.Error(); err != nil {
			d.Error = explain("describe", err).Error()
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		for _, m := range l.Members {
			gm := groupMemberJSON{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
			if m.InstanceID != nil {
				gm.InstanceID = *m.InstanceID
			}
			d.Members = append(d.Members, gm)
		}
		for _, ml := range l.Lag.Sorted() {
			o := groupOffsetJSON{
				Topic: ml.Topic, Partition: ml.Partition, Committed: ml.Commit.At,
				LogEnd: ml.End.Offset, Lag: ml.Lag, Error: errString(ml.Err),
			}
			if ml.Member != nil {
				o.MemberID, o.ClientID, o.Host = ml.Member.MemberID, ml.Member.ClientID, ml.Member.ClientHost
			}
			if o.Lag > 0 {
				d.TotalLag += o.Lag
			}
			d.Offsets = append(d.Offsets, o)
		}
		out = append(out, d)
	}
	if f.output == "json" {
		if err := writeJSON(a.out, out); err != nil {
			return err
		}
		return failures("floe groups describe", errs)
	}
	for i, d := range out {
		if i > 0 {
			fmt.Fprintln(a.out)
		}
		fmt.Fprintf(a.out, "Group: %s\tState: %s\tProtocol: %s/%s\tMembers: %d\tCoordinator: %d\tLag: %d\n",
			d.Group, d.State, d.ProtocolType, d.Protocol, len(d.Members), d.Coordinator, d.TotalLag)
		if d.Error != "" {
			fmt.Fprintf(a.out, "Error: %s\n", d.Error)
		}
		if len(d.Offsets) == 0 {
			continue
		}
		t := newTable(a.out, "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER", "CLIENT-ID", "HOST", "ERROR")
		for _, o := range d.Offsets {
			committed := strconv.FormatInt(o.Committed, 10)
			if o.Committed < 0 {
				committed = "-"
			}
			t.row(o.Topic, o.Partition, committed, o.LogEnd, o.Lag, dash(o.MemberID), dash(o.ClientID), dash(o.Host), o.Error)
		}
		t.flush()
	}
	return failures("floe groups describe", errs)
}

// describeConsumerGroup fills d for a KIP-848 consumer group: its members
// and, for every partition assigned to them or committed to, the lag of the
// committed offset behind the log end (behind the log start when nothing is
// committed), as kadm.Lag computes it for a classic group.
func describeConsumerGroup(ctx context.Context, adm *kadm.Client, cg kadm.DescribedConsumerGroup, d *groupDescJSON) error {
	d.State, d.ProtocolType, d.Protocol, d.Coordinator = cg.State, "consumer", cg.AssignorName, cg.Coordinator.NodeID
	owners := map[string]map[int32]*kadm.ConsumerGroupMember{}
	for i := range cg.Members {
		m := &cg.Members[i]
		gm := groupMemberJSON{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
		if m.InstanceID != nil {
			gm.InstanceID = *m.InstanceID
		}
		d.Members = append(d.Members, gm)
		m.Assignment.Each(func(t string, p int32) {
			if owners[t] == nil {
				owners[t] = map[int32]*kadm.ConsumerGroupMember{}
			}
			owners[t][p] = m
		})
	}
	committed, err := adm.FetchOffsets(ctx, cg.Group)
	if err != nil {
		return err
	}
	parts := cg.AssignedPartitions()
	parts.Merge(committed.Partitions())
	var starts, ends kadm.ListedOffsets
	if topics := parts.Topics(); len(topics) > 0 {
		// Shard errors leave partitions out of the listing: they show
		// as that partition's error below.
		if starts, err = adm.ListStartOffsets(ctx, topics...); err != nil && !isShardErr(err) {
			return err
		}
		if ends, err = adm.ListEndOffsets(ctx, topics...); err != nil && !isShardErr(err) {
			return err
		}
	}
	for _, tps := range parts.Sorted() {
		for _, p := range tps.Partitions {
			o := groupOffsetJSON{Topic: tps.Topic, Partition: p, Committed: -1, LogEnd: -1, Lag: -1}
			c, hasCommit := committed.Lookup(tps.Topic, p)
			if hasCommit && c.Err == nil {
				o.Committed = c.At
			}
			end, ok := ends.Lookup(tps.Topic, p)
			switch {
			case hasCommit && c.Err != nil:
				o.Error = c.Err.Error()
			case !ok:
				o.Error = "log end offset: missing"
			case end.Err != nil:
				o.Error = end.Err.Error()
			default:
				o.LogEnd = end.Offset
				from := int64(0)
				if start, ok := starts.Lookup(tps.Topic, p); ok && start.Err == nil {
					from = start.Offset
				}
				if o.Committed >= 0 {
					from = o.Committed
				}
				o.Lag = max(0, end.Offset-from)
				d.TotalLag += o.Lag
			}
			if m := owners[tps.Topic][p]; m != nil {
				o.MemberID, o.ClientID, o.Host = m.MemberID, m.ClientID, m.ClientHost
			}
			d.Offsets = append(d.Offsets, o)
		}
	}
	return nil
}

func isShardErr(err error) bool {
	var se *kadm.ShardErrors
	return errors.As(err, &se)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// resetSpec is where `groups reset-offsets` moves offsets: exactly one of
// its fields is set.
type resetSpec struct {
	earliest, latest bool
	toOffset         int64 // -1: unset
	shiftBy          int64 // 0: unset
	toDatetime       string
}

func (s resetSpec) validate() error {
	n := 0
	for _, set := range []bool{s.earliest, s.latest, s.toOffset >= 0, s.shiftBy != 0, s.toDatetime != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("give exactly one of --to-earliest, --to-latest, --to-offset, --shift-by, --to-datetime")
	}
	return nil
}

type resetRowJSON struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Current is -1 when the group had no committed offset.
	Current int64  `json:"current"`
	New     int64  `json:"new"`
	Error   string `json:"error,omitempty"`
}

type resetJSON struct {
	Group    string         `json:"group"`
	Executed bool           `json:"executed"`
	Offsets  []resetRowJSON `json:"offsets"`
}

func (a *adminCLI) groupsResetOffsets(ctx context.Context, args []string) error {
	var (
		f         adminFlags
		topics    stringList
		allTopics bool
		execute   bool
		spec      = resetSpec{toOffset: -1}
	)
	fs := a.newFlagSet("groups reset-offsets", "GROUP (--topic T[:P,P...]... | --all-topics) (--to-earliest | --to-latest | --to-offset N | --shift-by N | --to-datetime RFC3339) [--execute] [flags]")
	f.register(fs)
	fs.Var(&topics, "topic", "`topic[:partition,...]` to reset (repeatable; all partitions when none are listed)")
	fs.BoolVar(&allTopics, "all-topics", false, "reset every topic the group has committed offsets for")
	fs.BoolVar(&spec.earliest, "to-earliest", false, "move to the log start offset")
	fs.BoolVar(&spec.latest, "to-latest", false, "move to the log end offset (skip everything not yet consumed)")
	fs.Int64Var(&spec.toOffset, "to-offset", -1, "move to this offset (clamped to the partition's bounds)")
	fs.Int64Var(&spec.shiftBy, "shift-by", 0, "move by this many offsets, negative to re-read (clamped)")
	fs.StringVar(&spec.toDatetime, "to-datetime", "", "move to the first offset at or after this RFC 3339 time")
	fs.BoolVar(&execute, "execute", false, "commit the new offsets (without it the command only shows them)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return fmt.Errorf("%w: floe groups reset-offsets: name exactly one group", errUsage)
	}
	group := pos[0]
	if err := f.validate(); err != nil {
		return fmt.Errorf("%w: floe groups reset-offsets: %w", errUsage, err)
	}
	if err := spec.validate(); err != nil {
		return fmt.Errorf("%w: floe groups reset-offsets: %w", errUsage, err)
	}
	if allTopics == (len(topics) > 0) {
		return fmt.Errorf("%w: floe groups reset-offsets: give --topic or --all-topics (one of them)", errUsage)
	}
	var atMilli int64
	if spec.toDatetime != "" {
		ts, err := time.Parse(time.RFC3339, spec.toDatetime)
		if err != nil {
			return fmt.Errorf("%w: floe groups reset-offsets: --to-datetime: %w", errUsage, err)
		}
		atMilli = ts.UnixMilli()
	}
	selected, err := parseTopicPartitions(topics)
	if err != nil {
		return fmt.Errorf("%w: floe groups reset-offsets: %w", errUsage, err)
	}

	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	op := "floe groups reset-offsets " + group

	// Kafka refuses to move the offsets of a group with live members (they
	// would overwrite them on their next commit); so do we, before asking.
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return explain(op, err)
	}
	if g, ok := described[group]; ok {
		switch {
		case errors.Is(g.Err, kerr.GroupIDNotFound):
			// DescribeGroups v6+ (KIP-1043) answers GROUP_ID_NOT_FOUND
			// both for a group that does not exist yet, which may be
			// given offsets, and for a KIP-848 consumer group, which
			// only ConsumerGroupDescribe shows.
			cgs, err := adm.DescribeConsumerGroups(ctx, group)
			if err != nil {
				return explain(op, err)
			}
			cg, ok := cgs[group]
			switch {
			case !ok || errors.Is(cg.Err, kerr.GroupIDNotFound):
			case cg.Err != nil:
				return explain(op, cg.Err)
			case len(cg.Members) > 0:
				return fmt.Errorf("%s: group is %s with %d members; stop its consumers first", op, cg.State, len(cg.Members))
			}
		case g.Err != nil:
			return explain(op, g.Err)
		case len(g.Members) > 0 || (g.State != "Empty" && g.State != "Dead" && g.State != ""):
			return fmt.Errorf("%s: group is %s with %d members; stop its consumers first", op, g.State, len(g.Members))
		}
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return explain(op, err)
	}
	if allTopics {
		selected = map[string][]int32{}
		for t, ps := range committed {
			for p := range ps {
				selected[t] = append(selected[t], p)
			}
		}
	}
	names := sortedKeys(selected)
	if len(names) == 0 {
		return fmt.Errorf("%s: no topics to reset (the group has no committed offsets)", op)
	}
	// Fill in "all partitions" from metadata.
	meta, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return explain(op, err)
	}
	for _, t := range names {
		d, ok := meta[t]
		if !ok || d.Err != nil {
			return fmt.Errorf("%s: topic %s: %w", op, t, errors.Join(d.Err, errIf(!ok, "not found")))
		}
		if len(selected[t]) == 0 {
			for p := range d.Partitions {
				selected[t] = append(selected[t], p)
			}
		}
		sort.Slice(selected[t], func(i, j int) bool { return selected[t][i] < selected[t][j] })
	}
	starts, err := adm.ListStartOffsets(ctx, names...)
	if err != nil {
		return explain(op, err)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		return explain(op, err)
	}
	var byTime kadm.ListedOffsets
	if spec.toDatetime != "" {
		if byTime, err = adm.ListOffsetsAfterMilli(ctx, atMilli, names...); err != nil {
			return explain(op, err)
		}
	}

	res := resetJSON{Group: group, Executed: execute, Offsets: []resetRowJSON{}}
	commit := kadm.Offsets{}
	var errs []error
	for _, t := range names {
		for _, p := range selected[t] {
			row := resetRowJSON{Topic: t, Partition: p, Current: -1, New: -1}
			if c, ok := committed.Lookup(t, p); ok && c.Err == nil {
				row.Current = c.At
			}
			newOff, err := resetTarget(spec, row.Current, starts, ends, byTime, t, p)
			if err != nil {
				row.Error = err.Error()
				errs = append(errs, fmt.Errorf("%s[%d]: %w", t, p, err))
			} else {
				row.New = newOff
				commit.Add(kadm.Offset{Topic: t, Partition: p, At: newOff, LeaderEpoch: -1})
			}
			res.Offsets = append(res.Offsets, row)
		}
	}
	if execute && len(errs) == 0 {
		resps, err := adm.CommitOffsets(ctx, group, commit)
		if err != nil {
			return explain(op, err)
		}
		for i, row := range res.Offsets {
			if r, ok := resps.Lookup(row.Topic, row.Partition); ok && r.Err != nil {
				res.Offsets[i].Error = r.Err.Error()
				errs = append(errs, fmt.Errorf("%s[%d]: commit: %w", row.Topic, row.Partition, r.Err))
			}
		}
	} else {
		res.Executed = false
	}

	if f.output == "json" {
		if err := writeJSON(a.out, res); err != nil {
			return err
		}
	} else {
		tbl := newTable(a.out, "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "ERROR")
		for _, r := range res.Offsets {
			cur := strconv.FormatInt(r.Current, 10)
			if r.Current < 0 {
				cur = "-"
			}
			tbl.row(r.Topic, r.Partition, cur, r.New, r.Error)
		}
		tbl.flush()
	}
	if !execute {
		fmt.Fprintln(a.errOut, "Dry run: nothing was committed. Add --execute to apply.")
	}
	return failures(op, errs)
}

func errIf(cond bool, msg string) error {
	if cond {
		return errors.New(msg)
	}
	return nil
}

// resetTarget computes the new offset of one partition, clamped to the
// partition's [log start, log end] like kafka-consumer-groups.sh does, so a
// reset never points a group at offsets that cannot be fetched.
func resetTarget(s resetSpec, current int64, starts, ends, byTime kadm.ListedOffsets, t string, p int32) (int64, error) {
	start, ok := starts.Lookup(t, p)
	if !ok || start.Err != nil {
		return 0, fmt.Errorf("log start offset: %w", errors.Join(start.Err, errIf(!ok, "missing")))
	}
	end, ok := ends.Lookup(t, p)
	if !ok || end.Err != nil {
		return 0, fmt.Errorf("log end offset: %w", errors.Join(end.Err, errIf(!ok, "missing")))
	}
	clamp := func(o int64) int64 { return max(start.Offset, min(end.Offset, o)) }
	switch {
	case s.earliest:
		return start.Offset, nil
	case s.latest:
		return end.Offset, nil
	case s.toOffset >= 0:
		return clamp(s.toOffset), nil
	case s.shiftBy != 0:
		if current < 0 {
			return 0, errors.New("no committed offset to shift from")
		}
		return clamp(current + s.shiftBy), nil
	default:
		o, ok := byTime.Lookup(t, p)
		if !ok || o.Err != nil {
			return 0, fmt.Errorf("offset for time: %w", errors.Join(o.Err, errIf(!ok, "missing")))
		}
		if o.Offset < 0 { // no record at or after the time
			return end.Offset, nil
		}
		return clamp(o.Offset), nil
	}
}

// parseTopicPartitions parses --topic values: "orders" (every partition) or
// "orders:0,2,5".
func parseTopicPartitions(vals []string) (map[string][]int32, error) {
	out := make(map[string][]int32, len(vals))
	for _, v := range vals {
		t, ps, hasParts := strings.Cut(v, ":")
		if t == "" {
			return nil, fmt.Errorf("--topic %q: empty topic name", v)
		}
		if _, dup := out[t]; !dup {
			out[t] = nil
		}
		if !hasParts {
			continue
		}
		for p := range strings.SplitSeq(ps, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 32)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--topic %q: bad partition %q", v, p)
			}
			out[t] = append(out[t], int32(n))
		}
	}
	return out, nil
}

type groupDeleteJSON struct {
	Group string `json:"group"`
	Error string `json:"error,omitempty"`
}

func (a *adminCLI) groupsDelete(ctx context.Context, args []string) error {
	var f adminFlags
	fs := a.newFlagSet("groups delete", "GROUP... [flags]")
	f.register(fs)
	names, err := f.parse(fs, args, "group")
	if err != nil {
		return err
	}
	ctx, adm, done, err := f.open(ctx)
	if err != nil {
		return err
	}
	defer done()

	resps, err := adm.DeleteGroups(ctx, names...)
	if err != nil {
		return explain("floe groups delete", err)
	}
	var rows []groupDeleteJSON
	var errs []error
	for _, n := range names {
		row := groupDeleteJSON{Group: n}
		if r, ok := resps[n]; !ok {
			row.Error = "no response for group"
		} else if r.Err != nil {
			row.Error = kafkaErr(r.Err, r.ErrMessage)
		}
		if row.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s", n, row.Error))
		}
		rows = append(rows, row)
	}
	if f.output == "json" {
		if err := writeJSON(a.out, rows); err != nil {
			return err
		}
	} else {
		t := newTable(a.out, "GROUP", "STATUS")
		for _, r := range rows {
			t.row(r.Group, statusCell(errIf(r.Error != "", r.Error)))
		}
		t.flush()
	}
	return failures("floe groups delete", errs)
}
