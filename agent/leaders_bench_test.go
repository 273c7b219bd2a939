package agent

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/floebroker/floe/catalog"
)

// benchView is a view of 20 agents in 3 zones.
func benchView() *membership {
	var agents []catalog.Agent
	for i := range 20 {
		agents = append(agents, catalog.Agent{ID: fmt.Sprintf("01JAGENT%018d", i), NodeID: int32(i + 1), Zone: fmt.Sprintf("z%d", i%3)})
	}
	return &membership{self: agents[0], registered: true, agents: agents, generation: 7}
}

// BenchmarkMetadataLeaders is the leaders part of an all-topics Metadata
// answer, per topic of 1,000 partitions, and of a rack-aware Fetch of
// those partitions.
func BenchmarkMetadataLeaders(b *testing.B) {
	m := benchView()
	a := &Agent{}
	a.members.Store(m)
	tp := catalog.Topic{ID: catalog.TopicID{7, 1, 2, 3}, Name: "t", Partitions: 1000}
	for _, zone := range []string{"", "z1"} {
		b.Run(fmt.Sprintf("metadata/zone=%q", zone), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = a.topicMetadata(m, tp, zone)
			}
		})
	}
	b.Run("fetch/rack", func(b *testing.B) {
		parts := [][]fetchPart{make([]fetchPart, tp.Partitions)}
		for p := range parts[0] {
			parts[0][p] = fetchPart{tp: catalog.TopicPartition{TopicID: tp.ID, Partition: int32(p)}, preferred: -1}
		}
		req := kmsg.NewPtrFetchRequest()
		req.Version, req.Rack = 11, "z1"
		r := &request{conn: &conn{}}
		b.ReportAllocs()
		for b.Loop() {
			a.steerToZone(r, req, parts)
		}
	})
}
