package objstoretest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
)

// Env returns the value of the environment variable name, which a test
// needs to reach a service (scripts/services.sh sets them). When it is
// unset the test fails under CI=true and is skipped otherwise, saying so.
func Env(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v != "" {
		return v
	}
	msg := name + " is not set: start the test services with `eval \"$(scripts/services.sh env)\"` (scripts/services.sh start)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("skipping: " + msg)
	return ""
}

// BucketName returns a fresh bucket name valid on S3, MinIO and GCS, so
// each test owns its bucket.
func BucketName(t testing.TB) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "floe-test-" + hex.EncodeToString(b[:])
}
