package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/internal/commitplan"
)

// TestExplainCommit is a diagnostic, run by hand: with
// FLOE_EXPLAIN_COMMIT=<runs> it commits segments of one idempotent batch
// on each of <runs> partitions (as BenchmarkCommit's runs=2000 case),
// times each statement of the commit transaction separately, and logs
// EXPLAIN (ANALYZE, BUFFERS, WAL) of the last commit's statements and the
// tables' update counters (HOT or not). FLOE_EXPLAIN_PLAIN=1 commits
// non-idempotent batches (no producer state), and FLOE_EXPLAIN_SQL runs a
// statement after the warm-up commits (e.g. DROP INDEX …), to price one
// part of the commit by its absence.
func TestExplainCommit(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("FLOE_EXPLAIN_COMMIT"))
	if runs <= 0 {
		t.Skip("diagnostic: set FLOE_EXPLAIN_COMMIT=<runs> to run it")
	}
	url := freshSchema(t)
	ctx := context.Background()
	c := openTest(t, url, catalog.Options{MaxConns: 2})
	topic, err := c.CreateTopic(ctx, catalog.TopicSpec{Name: "explain", Partitions: int32(runs)})
	if err != nil {
		t.Fatal(err)
	}
	pid, _, err := c.AllocateProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seq := int32(0)
	n := 0
	if os.Getenv("FLOE_EXPLAIN_PLAIN") == "1" {
		pid = -1
	}
	segment := func() catalog.Segment {
		n++
		seg := catalog.Segment{Key: fmt.Sprintf("explain/%d", n)}
		bseq := seq
		if pid < 0 {
			bseq = -1
		}
		for p := range runs {
			seg.Batches = append(seg.Batches, catalog.BatchRef{
				TopicPartition: catalog.TopicPartition{TopicID: topic.ID, Partition: int32(p)},
				ByteOffset:     int64(p) * 1000, ByteLength: 1000, OffsetSpan: 10, Records: 10,
				FirstTimestamp: 1, MaxTimestamp: 2, ProducerID: pid, BaseSequence: bseq,
			})
		}
		seq += 10
		seg.Size = int64(runs) * 1000
		return seg
	}
	warm, _ := strconv.Atoi(os.Getenv("FLOE_EXPLAIN_WARM"))
	if warm == 0 {
		warm = 50
	}
	for range warm {
		if _, err := c.CommitSegment(ctx, segment()); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	useBinaryArrays(conn.Conn().TypeMap())
	if q := os.Getenv("FLOE_EXPLAIN_SQL"); q != "" {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var backend int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	ticks := func() int64 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", backend))
		if err != nil {
			return 0
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		return ut + st
	}
	// With FLOE_EXPLAIN_PERF=1, count the backend's instructions over the
	// timed commits: unlike CPU time, barely affected by other load.
	var perf *exec.Cmd
	var perfOut bytes.Buffer
	if os.Getenv("FLOE_EXPLAIN_PERF") == "1" {
		perf = exec.Command("perf", "stat", "-x", ",", "-e", "instructions", "-p", strconv.Itoa(int(backend)))
		perf.Stderr = &perfOut
		if err := perf.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	names := []string{"begin+settings", "advance", "write", "finish", "commit"}
	wall := make([]time.Duration, len(names))
	cpu := make([]int64, len(names))
	const timed = 30
	for i := range timed + 1 {
		explain := i == timed
		seg := segment()
		in := newCommitInput([]catalog.Segment{seg})
		rs, err := c.readForCommit(ctx, conn, in, false)
		if err != nil {
			t.Fatal(err)
		}
		plan := commitplan.BuildLayout(rs.plan)
		advance, write := c.writeArgs(in, rs, plan)
		steps := []struct {
			sql  string
			args []any
		}{
			{sqlBegin + "; " + sqlPlanSettings, nil},
			{sqlAdvance, advance},
			{sqlWrite, write},
			{sqlFinish, []any{[]string{seg.Key}, c.channel}},
			{sqlCommit, nil},
		}
		for j, s := range steps {
			q := s.sql
			if explain && j > 0 && j < 4 {
				q = "EXPLAIN (ANALYZE, BUFFERS, WAL) " + q
				rows, _ := conn.Query(ctx, q, s.args...)
				lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
				if err != nil {
					t.Fatalf("%s: %v", names[j], err)
				}
				t.Logf("EXPLAIN %s:\n%s", names[j], strings.Join(lines, "\n"))
				continue
			}
			t0, c0 := time.Now(), ticks()
			if j == 0 {
				_, err = conn.Exec(ctx, q, pgx.QueryExecModeSimpleProtocol)
			} else {
				_, err = conn.Exec(ctx, q, s.args...)
			}
			if err != nil {
				t.Fatalf("%s: %v", names[j], err)
			}
			if !explain {
				wall[j] += time.Since(t0)
				cpu[j] += ticks() - c0
			}
		}
	}
	if perf != nil {
		perf.Process.Signal(os.Interrupt)
		perf.Wait()
		f := strings.Split(strings.TrimSpace(perfOut.String()), ",")
		if n, err := strconv.ParseFloat(f[0], 64); err == nil {
			t.Logf("backend: %.1f M instructions per commit", n/1e6/timed)
		} else {
			t.Logf("perf: %s", perfOut.String())
		}
	}
	for j, name := range names {
		t.Logf("%-15s wall %6.2f ms  backend cpu %6.2f ms per commit", name,
			float64(wall[j].Microseconds())/1000/timed, float64(cpu[j])*1000/clockTicks/timed)
	}
	time.Sleep(1500 * time.Millisecond) // statistics reach pg_stat after a second
	rows, _ := conn.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, pg_relation_size(relid)/8192
FROM pg_stat_user_tables WHERE schemaname = current_schema() ORDER BY relname`)
	var name string
	var ins, upd, hot, pages int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &ins, &upd, &hot, &pages}, func() error {
		if ins+upd > 0 {
			t.Logf("%-15s ins %7d upd %7d hot %7d pages %6d", name, ins, upd, hot, pages)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
