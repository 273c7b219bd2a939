package postgres

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

// backendCPU measures the server CPU of the backends serving one
// application_name, for benchmarks against a PostgreSQL on the same
// machine: it reads utime+stime of each backend from /proc. Backends
// that appear between start and stop count from zero.
type backendCPU struct {
	url, app string
	start    map[int32]int64 // pid → clock ticks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func startBackendCPU(tb testing.TB, url, app string) *backendCPU {
	m := &backendCPU{url: url, app: app}
	m.start = m.sample(tb)
	return m
}

// sample returns each backend's CPU ticks, or nil if /proc does not show
// them (another machine or container).
func (m *backendCPU) sample(tb testing.TB) map[int32]int64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, m.url)
	if err != nil {
		tb.Fatalf("backend cpu: %v", err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, m.app)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatalf("backend cpu: %v", err)
	}
	out := make(map[int32]int64, len(pids))
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		// Fields after the command's closing parenthesis: state is 3,
		// utime 14, stime 15.
		f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
		ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
		st, _ := strconv.ParseInt(string(f[12]), 10, 64)
		out[pid] = ut + st
	}
	return out
}

// stop returns the CPU milliseconds the backends used since start, or -1
// if they could not be measured.
func (m *backendCPU) stop(tb testing.TB) float64 {
	end := m.sample(tb)
	if m.start == nil || end == nil {
		return -1
	}
	var ticks int64
	for pid, t := range end {
		ticks += t - m.start[pid]
	}
	return float64(ticks) * 1000 / clockTicks
}
