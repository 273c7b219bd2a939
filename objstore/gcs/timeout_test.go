package gcs

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/api/option"
)

// TestHangingServerResponseTimeout: against a service that accepts
// requests and never answers, a call without a deadline of its own fails
// after ResponseHeaderTimeout, as on s3 and minio; the client library's
// transport sets no such bound, so every List, and the flusher's checks
// of replayed objects, waited forever.
func TestHangingServerResponseTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	b, err := New(t.Context(), Config{Bucket: "fake", Endpoint: srv.URL, SkipBucketCheck: true, ResponseHeaderTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for name, op := range map[string]func(ctx context.Context) error{
		"stat": func(ctx context.Context) error { _, err := b.Stat(ctx, "k"); return err },
		"list": func(ctx context.Context) error {
			for _, err := range b.List(ctx, "") {
				return err
			}
			return nil
		},
		"get range": func(ctx context.Context) error {
			rc, err := b.GetRange(ctx, "k", 0, 1)
			if err == nil {
				rc.Close()
			}
			return err
		},
		"put": func(ctx context.Context) error { return b.Put(ctx, "k", strings.NewReader("v"), 1) },
	} {
		t.Run(name, func(t *testing.T) {
			// Bounded here too, so that the test fails instead of hanging.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := op(ctx)
			if err == nil || ctx.Err() != nil || time.Since(start) > 3*time.Second {
				t.Errorf("against a server that never answers: err = %v after %v, want a timeout after 200ms", err, time.Since(start))
			}
		})
	}
}

// TestCredentialsOnRequests: the client New builds for Google (no
// emulator) sends the credentials ClientOptions name; given an HTTP client
// the storage library no longer adds them itself.
func TestCredentialsOnRequests(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	var gotAuth string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"floe-token","token_type":"Bearer","expires_in":3600}`)
	})
	mux.HandleFunc("GET /storage/v1/b/fake/o/k", func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"bucket":"fake","name":"k","size":"3","updated":"2026-01-01T00:00:00Z"}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "floe-test",
		"private_key_id": "1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		"client_email":   "floe@floe-test.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(t.Context(), Config{Bucket: "fake", SkipBucketCheck: true, ClientOptions: []option.ClientOption{
		option.WithAuthCredentialsJSON(option.ServiceAccount, creds),
		option.WithEndpoint(srv.URL + "/storage/v1/"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	info, err := b.Stat(t.Context(), "k")
	if err != nil || info.Size != 3 {
		t.Fatalf("Stat = %+v, %v", info, err)
	}
	if gotAuth != "Bearer floe-token" {
		t.Errorf("Authorization = %q, want the token from the credentials", gotAuth)
	}
}
