package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/objstoretest"
)

// fakeS3 is just enough of S3 for fault tests: one bucket, whole-object
// PUT, GET and HEAD, and scripted 503 SlowDown answers.
type fakeS3 struct {
	mu        sync.Mutex
	objects   map[string][]byte
	failPuts  int
	failGets  int
	puts      int
	gets      int
	putBodies [][]byte
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if bucket != "fake" {
		s3Error(w, http.StatusNotFound, "NoSuchBucket")
		return
	}
	switch {
	case key == "" && r.Method == http.MethodHead:
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		f.puts++
		f.putBodies = append(f.putBodies, body)
		if f.failPuts > 0 {
			f.failPuts--
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
			return
		}
		f.objects[key] = body
		w.Header().Set("ETag", `"etag"`)
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		f.gets++
		if f.failGets > 0 {
			f.failGets--
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
			return
		}
		data, ok := f.objects[key]
		if !ok {
			s3Error(w, http.StatusNotFound, "NoSuchKey")
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	default:
		s3Error(w, http.StatusNotImplemented, "NotImplemented")
	}
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>`+code+`</Code><Message>fake says `+code+`</Message><RequestId>1</RequestId></Error>`)
}

func fakeConfig(endpoint string) Config {
	return Config{
		Bucket: "fake", Endpoint: endpoint, PathStyle: true, Region: "us-east-1",
		AccessKeyID: "k", SecretAccessKey: "s",
	}
}

func TestSlowDownRetriedThroughRealBackend(t *testing.T) {
	data := bytes.Repeat([]byte("segment!"), 4096)
	for _, tt := range []struct {
		name string
		body func() io.Reader
	}{
		{"seekable", func() io.Reader { return bytes.NewReader(data) }},
		{"stream", func() io.Reader { return struct{ io.Reader }{bytes.NewReader(data)} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeS3{objects: map[string][]byte{}, failPuts: 2, failGets: 2}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			raw, err := New(t.Context(), fakeConfig(srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			b := objstore.WithRetry(raw, objstore.RetryConfig{InitialBackoff: 10 * time.Millisecond})
			if err := b.Put(t.Context(), "seg", tt.body(), int64(len(data))); err != nil {
				t.Fatalf("Put: %v", err)
			}
			rc, err := b.Get(t.Context(), "seg")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			fake.mu.Lock()
			defer fake.mu.Unlock()
			if !bytes.Equal(got, data) {
				t.Errorf("Get returned %d bytes, want %d", len(got), len(data))
			}
			if fake.puts != 3 || fake.gets != 3 {
				t.Errorf("server saw %d PUTs and %d GETs, want 3 and 3", fake.puts, fake.gets)
			}
			for i, body := range fake.putBodies {
				if !bytes.Equal(body, data) {
					t.Errorf("PUT %d carried %d bytes, want the whole body", i+1, len(body))
				}
			}
		})
	}
}

func TestSDKDoesNotRetry(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}, failPuts: 100}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	b, err := New(t.Context(), fakeConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.Put(t.Context(), "k", strings.NewReader("v"), 1)
	var se *objstore.StatusError
	if !errors.As(err, &se) || se.Status != 503 || se.Code != "SlowDown" || !objstore.IsTransient(err) {
		t.Fatalf("Put = %v, want a transient 503 SlowDown StatusError", err)
	}
	if _, err := b.Get(t.Context(), "missing"); !errors.Is(err, objstore.ErrNotExist) || objstore.IsTransient(err) {
		t.Errorf("Get missing = %v", err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.puts != 1 {
		t.Errorf("SDK sent %d PUTs, want 1 (its retries must be off)", fake.puts)
	}
}

// hangingServer accepts requests and never answers until the test ends.
func hangingServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var requests atomic.Int32
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Trim(r.URL.Path, "/") == "fake" {
			w.WriteHeader(http.StatusOK) // let New's bucket check pass
			return
		}
		requests.Add(1)
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	return srv, &requests
}

func TestHangingServerHonoursDeadline(t *testing.T) {
	srv, _ := hangingServer(t)
	raw, err := New(t.Context(), fakeConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	b := objstore.WithRetry(raw, objstore.RetryConfig{})
	ops := map[string]func(ctx context.Context) error{
		"put": func(ctx context.Context) error { return b.Put(ctx, "k", strings.NewReader("v"), 1) },
		"get": func(ctx context.Context) error {
			rc, err := b.Get(ctx, "k")
			if err == nil {
				rc.Close()
			}
			return err
		},
		"stat": func(ctx context.Context) error { _, err := b.Stat(ctx, "k"); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := op(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %s, want promptly after the 200ms deadline", d)
			}
		})
	}
}

func TestHangingServerResponseTimeoutIsRetriedBoundedly(t *testing.T) {
	srv, requests := hangingServer(t)
	cfg := fakeConfig(srv.URL)
	cfg.ResponseHeaderTimeout = 100 * time.Millisecond
	raw, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	b := objstore.WithRetry(raw, objstore.RetryConfig{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond})
	start := time.Now()
	err = b.Put(t.Context(), "k", strings.NewReader("v"), 1)
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Put = %v, want a timeout after 3 attempts", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
}

// counting counts the calls that reach the backend.
type counting struct {
	objstore.Bucket
	puts, gets atomic.Int32
}

func (c *counting) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.puts.Add(1)
	return c.Bucket.Put(ctx, key, r, size)
}

func (c *counting) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.gets.Add(1)
	return c.Bucket.Get(ctx, key)
}

func TestStoppedMinIO(t *testing.T) {
	m := objstoretest.StartMinIO(t)
	cfg := Config{
		Bucket: "floe-stopped", Endpoint: "http://" + m.Endpoint, PathStyle: true, Region: "us-east-1",
		AccessKeyID: m.AccessKey, SecretAccessKey: m.SecretKey, SkipBucketCheck: true,
	}
	ctx := t.Context()
	raw, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket}); err != nil {
		t.Fatal(err)
	}
	c := &counting{Bucket: raw}
	b := objstore.WithRetry(c, objstore.RetryConfig{}) // the defaults Open uses
	if err := b.Put(ctx, "before", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
	m.Stop()
	c.puts.Store(0)

	start := time.Now()
	err = b.Put(ctx, "after", strings.NewReader("v"), 1)
	took := time.Since(start)
	t.Logf("Put to stopped MinIO: %v (after %s, %d attempts)", err, took.Round(time.Millisecond), c.puts.Load())
	if err == nil || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Errorf("Put = %v, want connection refused after 5 attempts", err)
	}
	if n := c.puts.Load(); n != 5 {
		t.Errorf("%d attempts, want 5", n)
	}
	if took > 5*time.Second {
		t.Errorf("took %s, want a few seconds at most", took)
	}

	start = time.Now()
	_, err = b.Get(ctx, "before")
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Get = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Get took %s", took)
	}
	if _, err := New(ctx, Config{Bucket: cfg.Bucket, Endpoint: cfg.Endpoint, PathStyle: true, AccessKeyID: "a", SecretAccessKey: "b", CheckTimeout: time.Second}); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("New against stopped MinIO = %v", err)
	}
}

// A server or proxy may ignore Range and answer 200 with the whole object
// (HTTP allows it). Readers take the body's first length bytes as the
// range, so that answer must be cut to the range or refused, never passed
// on as the bytes at off.
func TestGetRangeIgnoredByServer(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{"seg": []byte("0123456789")}}
	srv := httptest.NewServer(fake) // answers every GET with the whole object
	defer srv.Close()
	b, err := New(t.Context(), fakeConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objstoretest.CheckRangeIgnored(t, b, "seg")
}

// TestListTruncatedWithoutToken: a listing page marked truncated but
// without a continuation token is an error, not the end of the listing
// (the SDK's paginator stops there): the orphan sweep must not take a cut
// listing for the whole bucket.
func TestListTruncatedWithoutToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead { // the bucket check
			return
		}
		if r.Method != http.MethodGet || r.URL.Query().Get("list-type") != "2" {
			w.WriteHeader(http.StatusNotImplemented)
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>fake</Name><Prefix>v1/</Prefix><KeyCount>1</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>true</IsTruncated><Contents><Key>v1/a.seg</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><Size>3</Size></Contents></ListBucketResult>`)
	}))
	defer srv.Close()
	b, err := New(t.Context(), fakeConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var keys []string
	var lerr error
	for o, err := range b.List(t.Context(), "v1/") {
		if err != nil {
			lerr = err
			break
		}
		keys = append(keys, o.Key)
	}
	if lerr == nil {
		t.Fatalf("listed %v and no error from a truncated page without a token", keys)
	}
}

// TestListStallBounded: a listing page that stops midway, after its
// headers (where ResponseHeaderTimeout no longer applies), fails after the
// bound of the bucket compaction builds; it hung the orphan sweep, and the
// agent's whole compaction loop, until TCP gave up.
func TestListStallBounded(t *testing.T) {
	srv := objstoretest.ListStallingServer(t)
	b, err := New(t.Context(), fakeConfig(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	objstoretest.CheckListStallBounded(t, b)
}
