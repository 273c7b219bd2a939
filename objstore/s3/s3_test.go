package s3

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/objstoretest"
)

// minioConfig returns a Config for a fresh bucket on the test MinIO, which
// it creates now and removes when t ends, failing t if a multipart upload
// was left behind.
func minioConfig(t testing.TB) Config {
	endpoint := objstoretest.Env(t, "FLOE_TEST_MINIO_ENDPOINT")
	cfg := Config{
		Bucket:             objstoretest.BucketName(t),
		Endpoint:           "http://" + endpoint,
		PathStyle:          true,
		Region:             "us-east-1",
		AccessKeyID:        objstoretest.Env(t, "FLOE_TEST_MINIO_ACCESS_KEY"),
		SecretAccessKey:    objstoretest.Env(t, "FLOE_TEST_MINIO_SECRET_KEY"),
		MultipartThreshold: 6 << 20,
		PartSize:           5 << 20,
		ListPageSize:       7,
	}
	admin := cfg
	admin.SkipBucketCheck = true
	ctx := context.Background()
	ab, err := New(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	c := ab.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &cfg.Bucket}); err != nil {
		t.Fatalf("create bucket %s: %v", cfg.Bucket, err)
	}
	t.Cleanup(func() {
		defer ab.Close()
		ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &cfg.Bucket})
		if err != nil {
			t.Errorf("list multipart uploads: %v", err)
		} else if len(ups.Uploads) > 0 {
			t.Errorf("%d multipart uploads left behind", len(ups.Uploads))
			for _, u := range ups.Uploads {
				_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &cfg.Bucket, Key: u.Key, UploadId: u.UploadId})
			}
		}
		for info, err := range ab.List(ctx, "") {
			if err != nil {
				t.Errorf("cleanup list: %v", err)
				break
			}
			_ = ab.Delete(ctx, info.Key)
		}
		if _, err := c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: &cfg.Bucket}); err != nil {
			t.Errorf("delete bucket %s: %v", cfg.Bucket, err)
		}
	})
	return cfg
}

func newMinioBucket(t testing.TB, mutate func(*Config)) *Bucket {
	cfg := minioConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptanceMinIO(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket { return newMinioBucket(t, nil) })
}

func TestAcceptanceMinIOWithWrappers(t *testing.T) {
	objstoretest.Run(t, func(t *testing.T) objstore.Bucket {
		b := objstore.WithPrefix(newMinioBucket(t, nil), "some/prefix")
		return objstore.WithMetrics(objstore.WithRetry(b, objstore.RetryConfig{}), nil)
	})
}

func TestNewChecks(t *testing.T) {
	endpoint := objstoretest.Env(t, "FLOE_TEST_MINIO_ENDPOINT")
	good := minioConfig(t)
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"missing bucket", func(c *Config) { c.Bucket = "floe-no-such-bucket" }, "check bucket"},
		{"wrong secret", func(c *Config) { c.SecretAccessKey = "wrong" }, "check bucket"},
		{"no bucket name", func(c *Config) { c.Bucket = "" }, "no bucket name"},
		{"key without secret", func(c *Config) { c.SecretAccessKey = "" }, "given together"},
		{"endpoint without scheme", func(c *Config) { c.Endpoint = endpoint }, "want http"},
		{"small part", func(c *Config) { c.PartSize = 1 << 20 }, "part size"},
		{"nothing listening", func(c *Config) { c.Endpoint = "http://127.0.0.1:1"; c.CheckTimeout = 2 * time.Second }, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.mutate(&cfg)
			start := time.Now()
			b, err := New(t.Context(), cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Errorf("New = %v, want it to mention %q", err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("New took %s", d)
			}
		})
	}
}

func TestNoCredentialsFailsAtNew(t *testing.T) {
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(v, "")
	}
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	_, err := New(t.Context(), Config{Bucket: "b", Endpoint: "http://127.0.0.1:1", PathStyle: true, CheckTimeout: 3 * time.Second})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("no usable credentials")) {
		t.Fatalf("New = %v, want a no-credentials error", err)
	}
}

func TestEnvCredentials(t *testing.T) {
	cfg := minioConfig(t)
	t.Setenv("AWS_ACCESS_KEY_ID", cfg.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", cfg.SecretAccessKey)
	cfg.AccessKeyID, cfg.SecretAccessKey = "", ""
	b, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Put(t.Context(), "k", bytes.NewReader([]byte("v")), 1); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkPutGet(b *testing.B) {
	bk := newMinioBucket(b, func(c *Config) { c.MultipartThreshold, c.PartSize = 0, 0 })
	defer bk.Close()
	objstoretest.BenchmarkPutGet(b, bk)
}

// TestLargeObjectIsMultipart checks the threshold: S3 gives multipart
// objects an ETag ending in "-<parts>".
func TestLargeObjectIsMultipart(t *testing.T) {
	b := newMinioBucket(t, nil) // threshold 6 MiB, parts 5 MiB
	ctx := t.Context()
	for _, tt := range []struct {
		size  int
		parts string
	}{{6 << 20, ""}, {6<<20 + 1, "-2"}, {objstoretest.LargeSize, "-5"}} {
		key := fmt.Sprint(tt.size)
		if err := b.Put(ctx, key, bytes.NewReader(make([]byte, tt.size)), int64(tt.size)); err != nil {
			t.Fatal(err)
		}
		out, err := b.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.cfg.Bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		etag := strings.Trim(*out.ETag, `"`)
		if tt.parts == "" && strings.Contains(etag, "-") || tt.parts != "" && !strings.HasSuffix(etag, tt.parts) {
			t.Errorf("%d bytes: ETag %s, want parts suffix %q", tt.size, etag, tt.parts)
		}
	}
}
