package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/twmb/franz-go/pkg/kfake"
)

// setup is one system under test.
type setup struct {
	name        string
	note        string
	unavailable func() string
	start       func(ctx context.Context) (*target, error)
	// latencyRuns: the latency phase lasts this many times
	// Options.LatencyD (0: once).
	latencyRuns int
}

// target is a started system: where clients connect and how to observe it.
type target struct {
	bootstrap  []string
	metricsURL string // empty for kfake
	pid        int    // 0 for in-process kfake
	stop       func()
}

func allSetups(o Options) []setup {
	always := func() string { return "" }
	needFloe := func() string {
		if o.FloeBin == "" {
			return "no floe binary"
		}
		return ""
	}
	needServices := func() string {
		if why := needFloe(); why != "" {
			return why
		}
		if o.PostgresURL == "" || o.MinIOAddr == "" {
			return "PostgreSQL/MinIO not configured (run scripts/services.sh start)"
		}
		return ""
	}
	return []setup{
		{
			name:        "kfake",
			note:        "franz-go's in-memory kfake cluster, one broker, in the harness's process (the baseline)",
			unavailable: always,
			start:       startKfake,
		},
		{
			name:        "floe-embedded",
			note:        "`floe dev`: file bucket + SQLite catalog in a temp dir, 10 ms flush; it compacts every 3 s, and its merge PUTs are subtracted from PUTs/GiB and PUTs/flush rather than compaction turned off, which would change what catch-up reads and what shares the CPU",
			unavailable: needFloe,
			start: func(ctx context.Context) (*target, error) {
				return startFloe(ctx, o, "dev", nil)
			},
		},
		{
			name:        "floe-pg-minio",
			note:        "`floe agent` on PostgreSQL + MinIO (S3 API), default flush (250 ms / 8 MiB)",
			unavailable: needServices,
			start: func(ctx context.Context) (*target, error) {
				return startFloeS3(ctx, o, "", nil)
			},
		},
		{
			name:        "floe-pg-minio-10ms",
			note:        "as floe-pg-minio with a 10 ms flush interval (the latency target)",
			unavailable: needServices,
			start: func(ctx context.Context) (*target, error) {
				return startFloeS3(ctx, o, "", []string{"--flush-interval", "10ms"})
			},
		},
		{
			name:        "floe-s3-standard",
			note:        "as floe-pg-minio with every PUT and GET made to take S3 Standard-like latency (PUT p50 100 ms / p99 400 ms, MinIO's own time included), 250 ms flush; its latency phase lasts three times as long, because its p99 is made by the slowest PUTs, of which 20 s holds only a handful (one run's p99 ranged from 385 to 516 ms over 8 runs of 20 s)",
			unavailable: needServices,
			latencyRuns: 3,
			start: func(ctx context.Context) (*target, error) {
				return startFloeS3(ctx, o, "latency=s3-standard", nil)
			},
		},
	}
}

func startKfake(context.Context) (*target, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(0))
	if err != nil {
		return nil, err
	}
	return &target{bootstrap: c.ListenAddrs(), stop: c.Close}, nil
}

var bucketSeq int

// startFloeS3 starts `floe agent` on a fresh schema of the shared PostgreSQL
// and a fresh MinIO bucket reached through the S3 backend.
func startFloeS3(ctx context.Context, o Options, extraQuery string, extra []string) (*target, error) {
	e, err := newS3Env(ctx, o, extraQuery)
	if err != nil {
		return nil, err
	}
	t, err := e.start(ctx, o, extra...)
	if err != nil {
		e.drop()
		return nil, err
	}
	stop := t.stop
	t.stop = func() {
		stop()
		e.drop()
	}
	return t, nil
}

// s3Env is a fresh catalog schema and MinIO bucket: every agent started on
// it joins the same fleet.
type s3Env struct {
	args []string // --catalog, --bucket, --cluster
	env  []string // the S3 credentials
	drop func()   // drops the schema
}

func newS3Env(ctx context.Context, o Options, extraQuery string) (*s3Env, error) {
	bucketSeq++
	bucket := fmt.Sprintf("floe-bench-%d-%d", time.Now().Unix(), bucketSeq)
	catalogURL, dropSchema, err := freshSchema(ctx, o.PostgresURL, fmt.Sprintf("floe_bench_%d_%d_%d", time.Now().Unix(), os.Getpid(), bucketSeq))
	if err != nil {
		return nil, err
	}
	mc, err := minio.New(o.MinIOAddr, &minio.Options{Creds: credentials.NewStaticV4(o.MinIOKey, o.MinIOSecret, "")})
	if err != nil {
		dropSchema()
		return nil, err
	}
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		dropSchema()
		return nil, fmt.Errorf("make bucket: %w", err)
	}
	q := url.Values{}
	q.Set("region", "us-east-1")
	q.Set("endpoint", "http://"+o.MinIOAddr)
	q.Set("path_style", "true")
	u := "s3://" + bucket + "/bench?" + q.Encode()
	if extraQuery != "" {
		u += "&" + extraQuery
	}
	return &s3Env{
		args: []string{"--catalog", catalogURL, "--bucket", u, "--cluster", bucket},
		env:  []string{"AWS_ACCESS_KEY_ID=" + o.MinIOKey, "AWS_SECRET_ACCESS_KEY=" + o.MinIOSecret, "AWS_REGION=us-east-1"},
		drop: dropSchema,
	}, nil
}

// start starts one `floe agent` on the environment with extra flags.
func (e *s3Env) start(ctx context.Context, o Options, extra ...string) (*target, error) {
	args := append(append([]string(nil), e.args...), extra...)
	return startFloe(ctx, o, "agent", args, e.env...)
}

// freshSchema creates schema in the database base names and returns a URL
// whose connections use it, and a func that drops it. Agents sharing one
// catalog form one fleet (Metadata lists them all, partitions are spread
// over them), so a run on the database itself would join the agents of any
// other run on it — a harness someone else started on the same services —
// and send fetches to an agent that cannot read this run's bucket.
func freshSchema(ctx context.Context, base, schema string) (string, func(), error) {
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("bench: create schema %s: %w", schema, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = exec(ctx, "DROP SCHEMA "+schema+" CASCADE")
	}
	u, err := url.Parse(base)
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("bench: parse the PostgreSQL URL: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}

func startFloe(ctx context.Context, o Options, mode string, args []string, env ...string) (*target, error) {
	dir, err := os.MkdirTemp("", "floe-bench-")
	if err != nil {
		return nil, err
	}
	kport, err := freePort()
	if err != nil {
		return nil, err
	}
	aport, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(kport))
	admin := net.JoinHostPort("127.0.0.1", strconv.Itoa(aport))
	full := []string{mode, "--data", filepath.Join(dir, "data"), "--listen", listen, "--admin-listen", admin, "--log-level", "warn"}
	full = append(full, args...)
	cmd := exec.Command(o.FloeBin, full...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, "floe.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t := &target{
		bootstrap:  []string{listen},
		metricsURL: "http://" + admin + "/metrics",
		pid:        cmd.Process.Pid,
	}
	t.stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		os.RemoveAll(dir)
	}
	// Ready when the admin port answers /readyz.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return t, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.stop()
			logb, _ := os.ReadFile(filepath.Join(dir, "floe.log"))
			return nil, fmt.Errorf("floe %s did not become ready: %s", mode, tail(string(logb), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// peakRSSMiB reads the process's high-water resident set size.
func peakRSSMiB(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
