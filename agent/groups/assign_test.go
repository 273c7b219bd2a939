package groups

import (
	"fmt"
	"slices"
	"testing"

	"github.com/floebroker/floe/catalog"
)

func tid(b byte) catalog.TopicID { return catalog.TopicID{b} }

func specs(n int, topics ...catalog.TopicID) []memberSpec {
	out := make([]memberSpec, n)
	for i := range out {
		out[i] = memberSpec{id: fmt.Sprintf("m%02d", i), topics: map[catalog.TopicID]bool{}}
		for _, t := range topics {
			out[i].topics[t] = true
		}
	}
	return out
}

// checkValid fails unless every partition of a subscribed topic is assigned
// exactly once, to a member subscribed to its topic.
func checkValid(t *testing.T, members []memberSpec, partitions map[catalog.TopicID]int32, got map[string]tpSet) {
	t.Helper()
	owner := make(map[topicPartition]string)
	byID := make(map[string]memberSpec)
	for _, m := range members {
		byID[m.id] = m
	}
	for m, set := range got {
		for tp := range set {
			if o, ok := owner[tp]; ok {
				t.Fatalf("partition %v assigned to %s and %s", tp, o, m)
			}
			if !byID[m].topics[tp.id] {
				t.Fatalf("%s got a partition of a topic it does not subscribe to", m)
			}
			owner[tp] = m
		}
	}
	for id, n := range partitions {
		subscribed := false
		for _, m := range members {
			subscribed = subscribed || m.topics[id]
		}
		for p := range n {
			if _, ok := owner[topicPartition{id, p}]; subscribed && !ok {
				t.Fatalf("partition %v unassigned", topicPartition{id, p})
			}
		}
	}
}

func counts(got map[string]tpSet) []int {
	var out []int
	for _, s := range got {
		out = append(out, len(s))
	}
	slices.Sort(out)
	return out
}

func TestAssignRange(t *testing.T) {
	parts := map[catalog.TopicID]int32{tid(1): 7, tid(2): 7}
	ms := specs(3, tid(1), tid(2))
	got := assignRange(ms, parts)
	checkValid(t, ms, parts, got)
	want := map[string][]int32{"m00": {0, 1, 2}, "m01": {3, 4}, "m02": {5, 6}}
	for m, ps := range want {
		_, byTopic := got[m].byTopic()
		for _, id := range []catalog.TopicID{tid(1), tid(2)} {
			if !slices.Equal(byTopic[id], ps) {
				t.Fatalf("%s topic %d: %v, want %v", m, id[0], byTopic[id], ps)
			}
		}
	}
	// More members than partitions: the last ones get nothing.
	got = assignRange(specs(4, tid(1)), map[catalog.TopicID]int32{tid(1): 2})
	if !slices.Equal(counts(got), []int{0, 0, 1, 1}) {
		t.Fatalf("counts %v", counts(got))
	}
}

func TestAssignRangeStaticFirst(t *testing.T) {
	parts := map[catalog.TopicID]int32{tid(1): 8}
	ms := specs(4, tid(1))
	ia, ib := "a", "b"
	ms[3].instance, ms[2].instance = &ia, &ib
	got := assignRange(ms, parts)
	checkValid(t, ms, parts, got)
	// Static a (m03), static b (m02), then m00 and m01 by member id.
	want := map[string][]int32{"m03": {0, 1}, "m02": {2, 3}, "m00": {4, 5}, "m01": {6, 7}}
	for m, ps := range want {
		if _, byTopic := got[m].byTopic(); !slices.Equal(byTopic[tid(1)], ps) {
			t.Fatalf("%s: %v, want %v", m, byTopic[tid(1)], ps)
		}
	}
}

func TestAssignUniformBalanced(t *testing.T) {
	for members := 1; members <= 7; members++ {
		for p := int32(0); p <= 20; p += 3 {
			parts := map[catalog.TopicID]int32{tid(1): p, tid(2): p / 2}
			ms := specs(members, tid(1), tid(2))
			got := assignUniform(ms, parts, nil)
			checkValid(t, ms, parts, got)
			c := counts(got)
			if c[len(c)-1]-c[0] > 1 {
				t.Fatalf("%d members, %d partitions: unbalanced %v", members, p+p/2, c)
			}
		}
	}
}

func TestAssignUniformSticky(t *testing.T) {
	parts := map[catalog.TopicID]int32{tid(1): 12}
	three := specs(3, tid(1))
	before := assignUniform(three, parts, nil)
	four := specs(4, tid(1))
	after := assignUniform(four, parts, before)
	checkValid(t, four, parts, after)
	if !slices.Equal(counts(after), []int{3, 3, 3, 3}) {
		t.Fatalf("counts %v", counts(after))
	}
	for _, m := range three {
		for tp := range after[m.id] {
			if !before[m.id].has(tp) {
				t.Fatalf("%s got a partition another old member had: moves beyond the new member's share", m.id)
			}
		}
	}
	// A member leaves: only its partitions move.
	two := specs(3, tid(1))[1:]
	again := assignUniform(two, parts, before)
	checkValid(t, two, parts, again)
	for _, m := range two {
		for tp := range before[m.id] {
			if !again[m.id].has(tp) {
				t.Fatalf("%s lost a partition it could keep", m.id)
			}
		}
	}
	// Deterministic.
	if fmt.Sprint(assignUniform(four, parts, before)) != fmt.Sprint(after) {
		t.Fatal("the same input gave another assignment")
	}
}

func TestAssignUniformHeterogeneous(t *testing.T) {
	parts := map[catalog.TopicID]int32{tid(1): 6, tid(2): 6, tid(3): 3}
	ms := []memberSpec{
		{id: "a", topics: map[catalog.TopicID]bool{tid(1): true}},
		{id: "b", topics: map[catalog.TopicID]bool{tid(1): true, tid(2): true}},
		{id: "c", topics: map[catalog.TopicID]bool{tid(2): true, tid(9): true}}, // 9 does not exist
		{id: "d", topics: map[catalog.TopicID]bool{}},
	}
	got := assignUniform(ms, parts, nil)
	checkValid(t, ms, parts, got)
	if len(got["a"]) != 4 || len(got["b"]) != 4 || len(got["c"]) != 4 || len(got["d"]) != 0 {
		t.Fatalf("counts a=%d b=%d c=%d d=%d", len(got["a"]), len(got["b"]), len(got["c"]), len(got["d"]))
	}
	for tp := range got["a"] {
		if tp.id == tid(3) {
			t.Fatal("an unsubscribed topic was assigned")
		}
	}
}
