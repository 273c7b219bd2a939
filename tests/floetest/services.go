package floetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	miniogo "github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/postgres"
	"github.com/floebroker/floe/objstore/minio"
)

// PostgresURL returns a URL of a fresh schema on the test PostgreSQL
// (FLOE_TEST_POSTGRES_URL), dropped at cleanup. Without the variable the
// test skips, or fails under CI=true.
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := RequireEnv(t, "FLOE_TEST_POSTGRES_URL")
	schema := "floe_e2e_" + randHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("floetest: connect to PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("floetest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("floetest: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("floetest: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("floetest: parse FLOE_TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// PostgresCatalog opens a catalog on a fresh schema, closed at cleanup.
func PostgresCatalog(t testing.TB) catalog.Catalog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := postgres.Open(ctx, PostgresURL(t), catalog.Options{})
	if err != nil {
		t.Fatalf("floetest: open PostgreSQL catalog: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// MinIOConfig creates a fresh bucket on the test MinIO
// (FLOE_TEST_MINIO_*), emptied and removed at cleanup, and returns its
// config.
func MinIOConfig(t testing.TB) minio.Config {
	t.Helper()
	cfg := minio.Config{
		Endpoint:  RequireEnv(t, "FLOE_TEST_MINIO_ENDPOINT"),
		AccessKey: RequireEnv(t, "FLOE_TEST_MINIO_ACCESS_KEY"),
		SecretKey: RequireEnv(t, "FLOE_TEST_MINIO_SECRET_KEY"),
		Bucket:    "floe-e2e-" + randHex(6),
	}
	cl, err := miniogo.New(cfg.Endpoint, &miniogo.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, "")})
	if err != nil {
		t.Fatalf("floetest: MinIO client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.MakeBucket(ctx, cfg.Bucket, miniogo.MakeBucketOptions{}); err != nil {
		t.Fatalf("floetest: make bucket %s: %v", cfg.Bucket, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for obj := range cl.ListObjects(ctx, cfg.Bucket, miniogo.ListObjectsOptions{Recursive: true}) {
			if obj.Err == nil {
				_ = cl.RemoveObject(ctx, cfg.Bucket, obj.Key, miniogo.RemoveObjectOptions{})
			}
		}
		if err := cl.RemoveBucket(ctx, cfg.Bucket); err != nil {
			t.Errorf("floetest: remove bucket %s: %v", cfg.Bucket, err)
		}
	})
	return cfg
}

// MinIOBucket opens a fresh MinIO bucket, closed at cleanup.
func MinIOBucket(t testing.TB) *minio.Bucket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := minio.New(ctx, MinIOConfig(t))
	if err != nil {
		t.Fatalf("floetest: open MinIO bucket: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
