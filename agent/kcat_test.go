package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

func runKcat(t *testing.T, kcat string, stdin []byte, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat %v: %v\nstderr:\n%s", args, err, errb.String())
	}
	if errb.Len() > 0 {
		t.Logf("kcat %v stderr:\n%s", args, errb.String())
	}
	return out.Bytes()
}

// TestKcatRoundTrip produces a file of keyed lines with kcat, with each
// compression codec, and consumes it from the beginning: the output must be
// byte-identical to the input.
func TestKcatRoundTrip(t *testing.T) {
	kcat := testenv.Kcat(t)
	a := floetest.Start(t, floetest.Options{})
	var lines bytes.Buffer
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&lines, "key-%d:value %d with some text so that compression has something to do %d\n", i%37, i, i*i)
	}
	file := filepath.Join(t.TempDir(), "lines.txt")
	if err := os.WriteFile(file, lines.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		codec string
		extra []string
	}{
		{"none", nil},
		{"gzip", nil},
		{"snappy", nil},
		{"lz4", nil},
		{"zstd", nil},
		{"zstd-idempotent", []string{"-X", "enable.idempotence=true"}},
	} {
		t.Run(tc.codec, func(t *testing.T) {
			topic := "kcat-" + tc.codec
			codec := tc.codec
			if codec == "zstd-idempotent" {
				codec = "zstd"
			}
			args := append([]string{"-P", "-b", a.Addr, "-t", topic, "-K", ":", "-z", codec, "-X", "linger.ms=5", "-l", file}, tc.extra...)
			runKcat(t, kcat, nil, args...)
			out := runKcat(t, kcat, nil, "-C", "-b", a.Addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k:%s\n")
			if !bytes.Equal(out, lines.Bytes()) {
				t.Fatalf("consumed %d bytes differ from the %d produced:\nfirst out line %q", len(out), lines.Len(), firstLine(out))
			}
		})
	}
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}
