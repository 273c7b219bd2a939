package objstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floebroker/floe/objstore"
	"github.com/floebroker/floe/objstore/mem"
)

// slowPuts delays each Put by the next duration of delays (then none).
type slowPuts struct {
	objstore.Bucket
	mu     sync.Mutex
	delays []time.Duration
	fail   []error
	puts   atomic.Int32
}

func (s *slowPuts) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	s.puts.Add(1)
	s.mu.Lock()
	var d time.Duration
	var err error
	if len(s.delays) > 0 {
		d, s.delays = s.delays[0], s.delays[1:]
	}
	if len(s.fail) > 0 {
		err, s.fail = s.fail[0], s.fail[1:]
	}
	s.mu.Unlock()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	return s.Bucket.Put(ctx, key, r, size)
}

func TestHedgedPut(t *testing.T) {
	ctx := context.Background()
	data := []byte("segment bytes")
	for _, tc := range []struct {
		name     string
		delays   []time.Duration
		fail     []error
		body     io.Reader
		wantPuts int32
		wantErr  bool
		maxTime  time.Duration
	}{
		{name: "fast put, no hedge", delays: []time.Duration{0}, body: bytes.NewReader(data), wantPuts: 1, maxTime: 40 * time.Millisecond},
		{name: "slow put is hedged", delays: []time.Duration{5 * time.Second, 0}, body: bytes.NewReader(data), wantPuts: 2, maxTime: 2 * time.Second},
		{name: "failed first attempt, hedge succeeds", delays: []time.Duration{100 * time.Millisecond, 0}, fail: []error{errors.New("boom"), nil}, body: bytes.NewReader(data), wantPuts: 2, maxTime: 2 * time.Second},
		{name: "early failure returns without waiting", delays: []time.Duration{0}, fail: []error{errors.New("boom")}, body: bytes.NewReader(data), wantPuts: 1, wantErr: true, maxTime: 40 * time.Millisecond},
		{name: "non-ReaderAt body is not hedged", delays: []time.Duration{200 * time.Millisecond}, body: struct{ io.Reader }{bytes.NewReader(data)}, wantPuts: 1, maxTime: 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &slowPuts{Bucket: mem.New(nil), delays: tc.delays, fail: tc.fail}
			b := objstore.WithHedgedPut(inner, 20*time.Millisecond, nil)
			start := time.Now()
			err := b.Put(ctx, "k", tc.body, int64(len(data)))
			if el := time.Since(start); el > tc.maxTime {
				t.Errorf("Put took %v, want < %v", el, tc.maxTime)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("Put: %v", err)
			}
			if got := inner.puts.Load(); got != tc.wantPuts {
				t.Errorf("%d puts, want %d", got, tc.wantPuts)
			}
			if tc.wantErr {
				return
			}
			rc, err := b.Get(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("stored %q", got)
			}
		})
	}
}
