package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/floebroker/floe/tests/floetest"
)

// TestStopLeaksNoGoroutines starts an agent, serves a producer, a consumer
// and a raw connection left open, stops the agent and checks every
// goroutine it started is gone.
func TestStopLeaksNoGoroutines(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	func() {
		a := floetest.Start(t, floetest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cl, err := kgo.NewClient(kgo.SeedBrokers(a.Addr), kgo.DefaultProduceTopic("leak"), kgo.AllowAutoTopicCreation(),
			kgo.ConsumeTopics("leak"), kgo.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		cl.PollFetches(ctx) // leaves a long poll in flight at Stop
		raw := floetest.Dial(t, a.Addr)
		_ = raw.WriteRaw([]byte{0, 0}) // half a frame size
		stopped := make(chan error, 1)
		go func() { stopped <- a.Stop() }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Fatalf("stop: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("stop did not finish: the drain hangs")
		}
		cl.Close()
		raw.Close()
	}()
	goleak.VerifyNone(t, opts...)
}
