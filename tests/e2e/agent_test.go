package e2e

import (
	"encoding/binary"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/floebroker/floe/tests/floetest"
)

// TestAgentPostgresMinIO runs `floe agent` against the test PostgreSQL and
// MinIO: produce, consume, drain on SIGTERM, and a second agent process on
// the same catalog and bucket serves the same data.
func TestAgentPostgresMinIO(t *testing.T) {
	pg := floetest.PostgresURL(t)
	mc := floetest.MinIOConfig(t)
	bucket := fmt.Sprintf("minio://%s:%s@%s/%s?secure=false", url.QueryEscape(mc.AccessKey), url.QueryEscape(mc.SecretKey), mc.Endpoint, mc.Bucket)
	ctx := testCtx(t, 2*time.Minute)
	args := func() []string {
		return []string{"agent", "--catalog", pg, "--bucket", bucket, "--data", t.TempDir(),
			"--listen", "127.0.0.1:0", "--admin-listen", "", "--log-format", "text", "--log-level", "info",
			"--flush-interval", "10ms", "--auto-create-topics"}
	}
	p := startFloe(t, args()...)
	prod := newClient(t, p.Addr, kgo.DefaultProduceTopic("pgmin"), kgo.AllowAutoTopicCreation())
	const n = 5000
	for i := 0; i < n; i++ {
		prod.Produce(ctx, &kgo.Record{Value: binary.BigEndian.AppendUint64(nil, uint64(i))}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	prod.Close()
	p.Stop()

	p = startFloe(t, args()...)
	got := consumeAll(t, ctx, p.Addr, "pgmin")
	if len(got[0]) != n {
		t.Fatalf("read %d of %d records", len(got[0]), n)
	}
	for i, v := range got[0] {
		if v != uint64(i) {
			t.Fatalf("offset %d holds %d", i, v)
		}
	}
	p.Stop()
}
