package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/floebroker/floe/internal/testenv"
	"github.com/floebroker/floe/tests/floetest"
)

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
			testenv.RunKcat(t, kcat, nil, args...)
			out := testenv.RunKcat(t, kcat, nil, "-C", "-b", a.Addr, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k:%s\n")
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

// TestKcatRecreatedTopicStartsOver: deleting a topic deletes the offsets
// groups committed for it, as in Kafka, so a balanced consumer (kcat -G)
// reads a topic created again under the same name from its start rather
// than skipping as many records as the group had read of the old one.
func TestKcatRecreatedTopicStartsOver(t *testing.T) {
	kcat := testenv.Kcat(t)
	a := floetest.Start(t, floetest.Options{})
	const topic = "recreated"
	produce := func(from, n int) {
		var b bytes.Buffer
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, "%d\n", i)
		}
		testenv.RunKcat(t, kcat, b.Bytes(), "-P", "-b", a.Addr, "-t", topic)
	}
	consume := func() []string {
		out := testenv.RunKcat(t, kcat, nil, "-b", a.Addr, "-G", "again", "-e", "-q", "-f", "%s\n",
			"-X", "auto.offset.reset=earliest", topic)
		return strings.Fields(string(out))
	}
	produce(0, 10)
	if got := consume(); len(got) != 10 {
		t.Fatalf("the group read %d records of the first topic, want 10", len(got))
	}
	resp, err := kadm.NewClient(a.Client(t)).DeleteTopics(context.Background(), topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete topic: %v", err)
	}
	produce(100, 20)
	if got := consume(); len(got) != 20 || got[0] != "100" {
		t.Fatalf("the group read %d records of the re-created topic (%v), want all 20 from 100", len(got), got)
	}
}

// TestKcatTransactionalProducerFailsAtOnce: Floe has no transactions, and
// a transactional producer must learn so at once from FindCoordinator
// (as from a Kafka that does not authorize its transactional id) with a
// fatal error, not by retrying COORDINATOR_NOT_AVAILABLE until its
// init_transactions timeout (a retriable error that applications retry).
func TestKcatTransactionalProducerFailsAtOnce(t *testing.T) {
	kcat := testenv.Kcat(t)
	a := floetest.Start(t, floetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-P", "-b", a.Addr, "-t", "txn", "-X", "transactional.id=tx")
	cmd.Stdin = bytes.NewReader([]byte("x\n"))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err == nil {
		t.Fatalf("kcat with a transactional id succeeded:\n%s", out)
	}
	// kcat gives init_transactions 5 s; a fatal error comes at once.
	if !bytes.Contains(out, []byte("no transaction coordinator")) || took > 4*time.Second {
		t.Fatalf("kcat with a transactional id failed after %v with:\n%s", took.Round(time.Millisecond), out)
	}
}
