package bucket

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	miniogo "github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/floebroker/floe/compaction"
	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/gcs"
	"github.com/floebroker/floe/objstore/minio"
	"github.com/floebroker/floe/objstore/objstoretest"
	"github.com/floebroker/floe/wal"
)

func TestOpenErrors(t *testing.T) {
	t.Setenv("MINIO_ACCESS_KEY", "")
	t.Setenv("MINIO_ROOT_USER", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	for _, tt := range []struct {
		url, want string
	}{
		{"", "no scheme"},
		{"/tmp/x", "no scheme"},
		{"ftp://x", `unknown scheme "ftp"`},
		{"mem://name", "no name"},
		{"mem://?latency=bogus", "want op=p50"},
		{"mem://?latency=put=p50:1ms,p99:fast", "bad duration"},
		{"mem://?retry_attempts=x", "want an integer"},
		{"mem://?retry_max_elapsed=-1s", "want a duration"},
		{"mem://?retry_initial_backoff=5s&retry_max_backoff=1s", "initial backoff"},
		{"mem://?color=blue", "unknown parameter(s) color"},
		{"mem://?hedge_put=soon", "want a duration or a percentile"},
		{"mem://?hedge_put=p100", "want a duration or a percentile"},
		{"mem://?hedge_put=-1s", "want a duration or a percentile"},
		{"mem://?hedge_put=p90&hedge_max_extra=2", "want a fraction"},
		{"mem://?hedge_max_extra=none", "want a fraction"},
		{"mem://?hedge_max_extra=NaN", "want a fraction"},
		{"mem://?hedge_put=pNaN", "want a duration or a percentile"},
		{"file://host/x", "want file:///absolute"},
		{"file:///tmp/x?part_size=1", "unknown parameter(s) part_size"},
		{"s3://?region=x", "no bucket name"},
		{"s3://b?endpoint=localhost:9000", "want http"},
		{"s3://b?path_style=maybe", "want true or false"},
		{"s3://b?part_size=8MB", "want a byte count"},
		{"s3://b?part_size=1MiB", "part size"},
		{"s3://b?regoin=eu-west-1", "unknown parameter(s) regoin"},
		{"gs://?x=1", "unknown parameter(s) x"},
		{"gs://b?chunk_size=1KiB", "chunk size"},
		{"minio://host:9000", "want minio://host:port/bucket"},
		{"minio://host:9000/b", "no credentials"},
		{"minio://a:b@host:9000/b?secure=perhaps", "want true or false"},
		{"%zz://x", "parse URL"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			b, err := Open(t.Context(), tt.url, Options{})
			if err == nil {
				b.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open(%q) = %v, want it to mention %q", tt.url, err, tt.want)
			}
		})
	}
}

// TestMalformedURLHidesCredentials: a secret key holding '/' or '%' (AWS
// keys often hold '/') makes the URL unparsable; the error must not quote it.
func TestMalformedURLHidesCredentials(t *testing.T) {
	for _, u := range []string{
		"s3://AKIAEXAMPLE:wJalr/XUtnFEMI+K7MDENG@my-bucket/floe",
		"minio://AKIAEXAMPLE:wJalr%XUtnFEMI@127.0.0.1:1/b",
		"minio://AKIAEXAMPLE:wJalr/XUtnFEMI@127.0.0.1:1/b",
		// These parse, the key's tail landing in the path or query.
		"s3://AKIAEXAMPLE:/wJalrXUtnFEMI@my-bucket/floe",
		"minio://AKIAEXAMPLE:12/wJalrXUtnFEMI@127.0.0.1:1/b",
		"s3://AKIAEXAMPLE:12?wJalrXUtnFEMI@my-bucket/floe",
	} {
		_, err := Open(t.Context(), u, Options{})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", u)
		}
		for _, part := range []string{"wJalr", "XUtnFEMI", "K7MDENG"} {
			if strings.Contains(err.Error(), part) {
				t.Errorf("Open error leaks the secret key (%q): %v", part, err)
			}
		}
	}
}

func TestRedacted(t *testing.T) {
	got := Redacted("minio://key:supersecret@host:9000/b")
	if strings.Contains(got, "supersecret") {
		t.Errorf("Redacted = %q", got)
	}
	b, err := Open(t.Context(), "minio://key:supersecret@127.0.0.1:1/b?secure=false&check=true", Options{})
	if err == nil {
		b.Close()
		t.Fatal("Open succeeded with nothing listening")
	}
	if strings.Contains(err.Error(), "supersecret") {
		t.Errorf("error leaks the secret: %v", err)
	}
}

func roundTrip(t *testing.T, b objstore.Bucket, key string) {
	t.Helper()
	ctx := t.Context()
	if err := b.Put(ctx, key, strings.NewReader("payload"), 7); err != nil {
		t.Fatal(err)
	}
	rc, err := b.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, _ := io.ReadAll(rc); string(got) != "payload" {
		t.Fatalf("Get = %q", got)
	}
}

func TestOpenLocal(t *testing.T) {
	dir := t.TempDir()
	rel, err := filepath.Rel(mustGetwd(t), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"mem://",
		"mem://?latency=s3-express&retry_attempts=1",
		"mem://?hedge_put=p95",
		"mem://?hedge_put=100ms",
		"mem://?hedge_put=off",
		"mem://?hedge_put=p90&hedge_max_extra=0.1",
		"file://" + dir,
		"file://localhost" + dir,
		"file:" + rel,
		"file:///" + strings.TrimPrefix(dir, "/") + "/sub?latency=put=p50:1ms",
	} {
		t.Run(u, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			b, err := Open(t.Context(), u, Options{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			roundTrip(t, b, "a/b")
			if n := testenv.Metric(t, reg, "floe_objstore_operations_total", map[string]string{"op": "put"}); n != 1 {
				t.Errorf("put count = %v, want 1", n)
			}
			if n := testenv.Metric(t, reg, "floe_objstore_requests_total", map[string]string{"op": "put"}); n != 1 {
				t.Errorf("put requests = %v, want 1", n)
			}
		})
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// TestOpenServices opens every remote scheme against the test services,
// with a prefix, and checks the prefix lands in the bucket.
func TestOpenServices(t *testing.T) {
	endpoint := objstoretest.Env(t, "FLOE_TEST_MINIO_ENDPOINT")
	access := objstoretest.Env(t, "FLOE_TEST_MINIO_ACCESS_KEY")
	secret := objstoretest.Env(t, "FLOE_TEST_MINIO_SECRET_KEY")
	gcsEndpoint := objstoretest.Env(t, "FLOE_TEST_GCS_ENDPOINT")
	ctx := context.Background()

	name, admin := newTestBucket(t, endpoint, access, secret)

	t.Run("s3 env credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", access)
		t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
		b, err := Open(ctx, "s3://"+name+"/pre/fix?region=us-east-1&path_style=true&endpoint="+url.QueryEscape("http://"+endpoint), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		roundTrip(t, b, "s3key")
		if _, err := admin.Stat(ctx, "pre/fix/s3key"); err != nil {
			t.Errorf("prefix not applied: %v", err)
		}
	})
	t.Run("s3 URL credentials", func(t *testing.T) {
		b, err := Open(ctx, "s3://"+access+":"+secret+"@"+name+"?path_style=true&endpoint=http://"+endpoint, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		roundTrip(t, b, "s3key2")
	})
	t.Run("s3 missing bucket", func(t *testing.T) {
		_, err := Open(ctx, "s3://"+access+":"+secret+"@floe-missing-bucket?path_style=true&endpoint=http://"+endpoint, Options{})
		if err == nil || !strings.Contains(err.Error(), "check bucket") {
			t.Fatalf("Open = %v", err)
		}
	})
	t.Run("minio URL credentials", func(t *testing.T) {
		b, err := Open(ctx, "minio://"+access+":"+secret+"@"+endpoint+"/"+name+"/m/p?secure=false", Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		roundTrip(t, b, "mkey")
		if _, err := admin.Stat(ctx, "m/p/mkey"); err != nil {
			t.Errorf("prefix not applied: %v", err)
		}
	})
	t.Run("minio env credentials", func(t *testing.T) {
		t.Setenv("MINIO_ACCESS_KEY", access)
		t.Setenv("MINIO_SECRET_KEY", secret)
		b, err := Open(ctx, "minio://"+endpoint+"/"+name+"?secure=false", Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		roundTrip(t, b, "mkey2")
	})
	t.Run("gs", func(t *testing.T) {
		gname := objstoretest.BucketName(t)
		if _, err := Open(ctx, "gs://"+gname+"?endpoint="+url.QueryEscape(gcsEndpoint), Options{}); err == nil || !strings.Contains(err.Error(), "no such bucket") {
			t.Fatalf("Open of a missing GCS bucket = %v", err)
		}
		gb, err := gcs.New(ctx, gcs.Config{Bucket: gname, Endpoint: gcsEndpoint, SkipBucketCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		defer gb.Close()
		if err := gb.Client().Bucket(gname).Create(ctx, "floe-test", nil); err != nil {
			t.Fatal(err)
		}
		defer gb.Client().Bucket(gname).Delete(ctx)
		b, err := Open(ctx, "gs://"+gname+"/g?endpoint="+url.QueryEscape(gcsEndpoint), Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		roundTrip(t, b, "gkey")
		if _, err := b.Stat(ctx, "gkey"); err != nil {
			t.Fatal(err)
		}
		_ = b.Delete(ctx, "gkey")
		if err := gb.Delete(ctx, "g/gkey"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSegmentPutIsOneRequest checks that with default settings an object
// as large as a WAL segment gets when uploads back up (between the old 16
// MiB thresholds and the WAL's 64 MiB bound) goes up in one request on the
// s3 and minio backends, and that the request counter counts each request
// of a multipart upload.
func TestSegmentPutIsOneRequest(t *testing.T) {
	endpoint := objstoretest.Env(t, "FLOE_TEST_MINIO_ENDPOINT")
	access := objstoretest.Env(t, "FLOE_TEST_MINIO_ACCESS_KEY")
	secret := objstoretest.Env(t, "FLOE_TEST_MINIO_SECRET_KEY")
	ctx := context.Background()
	name, admin := newTestBucket(t, endpoint, access, secret)
	// The defaults the threshold was chosen for.
	if wal.DefaultMaxBufferedBytes >= objstore.DefaultSingleRequestBytes || compaction.DefaultTargetBytes >= objstore.DefaultSingleRequestBytes {
		t.Errorf("WAL bound %d or compaction target %d not below the single-request size %d",
			wal.DefaultMaxBufferedBytes, compaction.DefaultTargetBytes, objstore.DefaultSingleRequestBytes)
	}
	const segment = 40 << 20
	data := make([]byte, segment)
	// Hedging off: a slow PUT hedged is rightly two requests.
	s3URL := "s3://" + access + ":" + secret + "@" + name + "/s3?hedge_put=0&path_style=true&endpoint=http://" + endpoint
	minioURL := "minio://" + access + ":" + secret + "@" + endpoint + "/" + name + "/minio?secure=false"
	for _, tt := range []struct {
		name, url, key string
		size           int
		requests       float64
	}{
		{"s3 default", s3URL, "s3/seg", segment, 1},
		{"minio default", minioURL, "minio/seg", segment, 1},
		// create + 3 parts + complete
		{"s3 multipart", s3URL + "&multipart_threshold=6MiB&part_size=5MiB", "s3/mp", 11 << 20, 5},
		{"minio multipart", minioURL + "&multipart_threshold=6MiB&part_size=5MiB", "minio/mp", 11 << 20, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			b, err := Open(ctx, tt.url, Options{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			_, key, _ := strings.Cut(tt.key, "/") // the URL has the prefix
			if err := b.Put(ctx, key, bytes.NewReader(data[:tt.size]), int64(tt.size)); err != nil {
				t.Fatal(err)
			}
			if n := testenv.Metric(t, reg, "floe_objstore_requests_total", map[string]string{"op": "put"}); n != tt.requests {
				t.Errorf("put requests = %v, want %v", n, tt.requests)
			}
			if n := testenv.Metric(t, reg, "floe_objstore_operations_total", map[string]string{"op": "put"}); n != 1 {
				t.Errorf("put calls = %v, want 1", n)
			}
			// S3 gives a multipart object an ETag ending in -<parts>.
			oi, err := admin.Client().StatObject(ctx, name, tt.key, miniogo.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if multipart := strings.Contains(oi.ETag, "-"); multipart != (tt.requests > 1) {
				t.Errorf("ETag %s: multipart = %v, want %v", oi.ETag, multipart, tt.requests > 1)
			}
		})
	}
}

// newTestBucket creates a bucket on the test MinIO, emptied and removed
// when t ends, and returns its name and a client of it.
func newTestBucket(t *testing.T, endpoint, access, secret string) (string, *minio.Bucket) {
	t.Helper()
	ctx := context.Background()
	name := objstoretest.BucketName(t)
	admin, err := minio.New(ctx, minio.Config{Endpoint: endpoint, Bucket: name, AccessKey: access, SecretKey: secret, SkipBucketCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Client().MakeBucket(ctx, name, miniogo.MakeBucketOptions{}); err != nil {
		admin.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		for info, err := range admin.List(ctx, "") {
			if err == nil {
				_ = admin.Delete(ctx, info.Key)
			}
		}
		_ = admin.Client().RemoveBucket(ctx, name)
	})
	return name, admin
}

// TestCheckBucketMissing: the readiness probe's check fails on a bucket
// that does not exist, through Open's wrappers. It was a Stat of a key
// that never exists, taking not-found for "the bucket answers", and S3
// (a HEAD has no body to name NoSuchBucket) and GCS (every 404 of an
// object is ErrObjectNotExist) answer it so for a missing bucket: /readyz
// stayed ready after the bucket was deleted while every produce failed.
func TestCheckBucketMissing(t *testing.T) {
	endpoint := objstoretest.Env(t, "FLOE_TEST_MINIO_ENDPOINT")
	access := objstoretest.Env(t, "FLOE_TEST_MINIO_ACCESS_KEY")
	secret := objstoretest.Env(t, "FLOE_TEST_MINIO_SECRET_KEY")
	gcsEndpoint := objstoretest.Env(t, "FLOE_TEST_GCS_ENDPOINT")
	ctx := t.Context()
	name, _ := newTestBucket(t, endpoint, access, secret)
	gname := objstoretest.BucketName(t)
	gb, err := gcs.New(ctx, gcs.Config{Bucket: gname, Endpoint: gcsEndpoint, SkipBucketCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gb.Close()
	if err := gb.Client().Bucket(gname).Create(ctx, "floe-test", nil); err != nil {
		t.Fatal(err)
	}
	defer gb.Client().Bucket(gname).Delete(context.Background())

	missing := objstoretest.BucketName(t)
	for scheme, urlOf := range map[string]func(bucket string) string{
		"s3": func(bucket string) string {
			return "s3://" + access + ":" + secret + "@" + bucket + "/p?check=false&path_style=true&endpoint=http://" + endpoint
		},
		"minio": func(bucket string) string {
			return "minio://" + access + ":" + secret + "@" + endpoint + "/" + bucket + "/p?check=false&secure=false"
		},
		"gs": func(bucket string) string {
			return "gs://" + bucket + "/p?check=false&endpoint=" + url.QueryEscape(gcsEndpoint)
		},
	} {
		t.Run(scheme, func(t *testing.T) {
			existing := name
			if scheme == "gs" {
				existing = gname
			}
			for bucket, wantOK := range map[string]bool{existing: true, missing: false} {
				b, err := Open(ctx, urlOf(bucket), Options{Registerer: prometheus.NewRegistry()})
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				if err := objstore.CheckBucket(ctx, b); (err == nil) != wantOK || errors.Is(err, objstore.ErrNotExist) {
					t.Errorf("CheckBucket on bucket %s (exists: %v) = %v", bucket, wantOK, err)
				}
			}
		})
	}
}
