package main

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestRedactURLHidesSecrets: the "floe started" log line and catalog URL
// errors print redactURL's output, so no form of a secret may survive it.
func TestRedactURLHidesSecrets(t *testing.T) {
	for _, tt := range []struct{ url, keep string }{
		{"postgres://floe:s3cretpw@db:5432/floe?sslmode=verify-full", "db:5432/floe"},
		{"postgres://floe@db:5432/floe?password=s3cretpw&sslmode=require", "sslmode=require"},
		{"postgres://floe@db/floe?sslpassword=s3cretpw&sslkey=/k.pem", "sslkey="},
		{"minio://key:s3cret@pw@minio:9000/floe", "minio:9000/floe"},
		{"s3://AKIAEXAMPLE:/s3cretpw@my-bucket/floe", "s3:"},
		{"minio://key:s3c%zzretpw@minio:9000/b", "minio:"},
		{"sqlite:///var/lib/floe/catalog.db", "sqlite:///var/lib/floe/catalog.db"},
		{"sqlite::memory:", "sqlite::memory:"},
		{"file:///var/lib/floe/bucket", "file:///var/lib/floe/bucket"},
	} {
		got := redactURL(tt.url)
		for _, secret := range []string{"s3cret", "retpw", "@pw"} {
			if strings.Contains(got, secret) {
				t.Errorf("redactURL(%q) = %q: leaks %q", tt.url, got, secret)
			}
		}
		if !strings.Contains(got, tt.keep) {
			t.Errorf("redactURL(%q) = %q: want it to keep %q", tt.url, got, tt.keep)
		}
	}
}

// TestAdminHidesCommandLine: the unauthenticated admin port must not serve
// the command line, which can carry --catalog postgres://user:password@….
func TestAdminHidesCommandLine(t *testing.T) {
	addr, stop, err := startAdminHTTP("127.0.0.1:0", prometheus.NewRegistry(), health{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if code, body := get(t, "http://"+addr+"/debug/pprof/cmdline"); code == http.StatusOK {
		t.Errorf("/debug/pprof/cmdline served: %q", body)
	}
	if code, _ := get(t, "http://"+addr+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK {
		t.Errorf("/debug/pprof/goroutine: %d, want the other profiles still served", code)
	}
}
