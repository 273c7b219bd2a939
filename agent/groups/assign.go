package groups

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/floebroker/floe/catalog"
)

// Server-side assignors for KIP-848 groups. Both are deterministic: the
// same members, subscriptions and topics give the same assignment, so a
// coordinator that recomputes after a move does not shuffle partitions for
// nothing.

type topicPartition struct {
	id catalog.TopicID
	p  int32
}

func compareTP(a, b topicPartition) int {
	if c := bytes.Compare(a.id[:], b.id[:]); c != 0 {
		return c
	}
	return cmp.Compare(a.p, b.p)
}

// tpSet is a set of partitions.
type tpSet map[topicPartition]struct{}

func (s tpSet) has(tp topicPartition) bool { _, ok := s[tp]; return ok }

func (s tpSet) sorted() []topicPartition {
	out := make([]topicPartition, 0, len(s))
	for tp := range s {
		out = append(out, tp)
	}
	slices.SortFunc(out, compareTP)
	return out
}

func (s tpSet) equal(o tpSet) bool {
	if len(s) != len(o) {
		return false
	}
	for tp := range s {
		if !o.has(tp) {
			return false
		}
	}
	return true
}

// byTopic groups s by topic, topics and partitions ascending.
func (s tpSet) byTopic() ([]catalog.TopicID, map[catalog.TopicID][]int32) {
	m := make(map[catalog.TopicID][]int32)
	var ids []catalog.TopicID
	for _, tp := range s.sorted() {
		if _, ok := m[tp.id]; !ok {
			ids = append(ids, tp.id)
		}
		m[tp.id] = append(m[tp.id], tp.p)
	}
	return ids, m
}

// memberSpec is one member as an assignor sees it.
type memberSpec struct {
	id       string
	instance *string                  // static members' instance id
	topics   map[catalog.TopicID]bool // subscribed topics that exist
}

// rangeOrder is the order in which the range assignor hands out ranges,
// Kafka's: static members first, by instance id, then the others by
// member id. A static member that restarts comes back under a new member
// id; ordered by member id it would take another member's place, and
// every range would move.
func rangeOrder(a, b memberSpec) int {
	switch {
	case a.instance != nil && b.instance != nil:
		if c := cmp.Compare(*a.instance, *b.instance); c != 0 {
			return c
		}
	case a.instance != nil:
		return -1
	case b.instance != nil:
		return 1
	}
	return cmp.Compare(a.id, b.id)
}

// assign runs the named assignor. members must be sorted by id; partitions
// holds every subscribed topic's partition count; prev is the previous
// target assignment.
func assign(name string, members []memberSpec, partitions map[catalog.TopicID]int32, prev map[string]tpSet) map[string]tpSet {
	if name == AssignorRange {
		return assignRange(members, partitions)
	}
	return assignUniform(members, partitions, prev)
}

// subscribers returns, per topic, the members subscribed to it in the
// order of members.
func subscribers(members []memberSpec, partitions map[catalog.TopicID]int32) ([]catalog.TopicID, map[catalog.TopicID][]string) {
	subs := make(map[catalog.TopicID][]string)
	for _, m := range members {
		for id := range m.topics {
			if _, ok := partitions[id]; ok {
				subs[id] = append(subs[id], m.id)
			}
		}
	}
	ids := make([]catalog.TopicID, 0, len(subs))
	for id := range subs {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b catalog.TopicID) int { return bytes.Compare(a[:], b[:]) })
	return ids, subs
}

// assignRange gives each topic's subscribers contiguous ranges of its
// partitions, in rangeOrder, the first (partitions % members) one more:
// members subscribed to co-partitioned topics get the same partition
// numbers of each.
func assignRange(members []memberSpec, partitions map[catalog.TopicID]int32) map[string]tpSet {
	out := make(map[string]tpSet, len(members))
	for _, m := range members {
		out[m.id] = tpSet{}
	}
	ordered := slices.Clone(members)
	slices.SortFunc(ordered, rangeOrder)
	ids, subs := subscribers(ordered, partitions)
	for _, id := range ids {
		ms := subs[id]
		n, k := int(partitions[id]), len(ms)
		per, extra := n/k, n%k
		p := 0
		for i, m := range ms {
			cnt := per
			if i < extra {
				cnt++
			}
			for range cnt {
				out[m][topicPartition{id, int32(p)}] = struct{}{}
				p++
			}
		}
	}
	return out
}

// assignUniform spreads partitions so that no member subscribed to a
// partition's topic has two fewer partitions than the partition's owner,
// keeping partitions where they were (prev) as far as that allows.
func assignUniform(members []memberSpec, partitions map[catalog.TopicID]int32, prev map[string]tpSet) map[string]tpSet {
	out := make(map[string]tpSet, len(members))
	for _, m := range members {
		out[m.id] = tpSet{}
	}
	ids, subs := subscribers(members, partitions)
	for _, ms := range subs {
		slices.Sort(ms) // for subscribed's binary search
	}
	owner := make(map[topicPartition]string)
	count := make(map[string]int, len(members))
	var all []topicPartition
	for _, id := range ids {
		for p := range partitions[id] {
			all = append(all, topicPartition{id, p})
		}
	}
	subscribed := func(m string, id catalog.TopicID) bool {
		_, ok := slices.BinarySearch(subs[id], m)
		return ok
	}
	// Sticky: keep what members had, where still valid.
	for _, m := range members {
		for _, tp := range prev[m.id].sorted() {
			if tp.p < partitions[tp.id] && subscribed(m.id, tp.id) && owner[tp] == "" {
				owner[tp] = m.id
				count[m.id]++
			}
		}
	}
	least := func(id catalog.TopicID) string {
		best := ""
		for _, m := range subs[id] {
			if best == "" || count[m] < count[best] {
				best = m
			}
		}
		return best
	}
	for _, tp := range all {
		if owner[tp] == "" {
			m := least(tp.id)
			owner[tp] = m
			count[m]++
		}
	}
	// Balance: move a partition to a less loaded eligible member while that
	// narrows a gap of two or more. Each move lowers the sum of squared
	// counts, so this ends.
	for moved := true; moved; {
		moved = false
		for _, tp := range all {
			from := owner[tp]
			to := least(tp.id)
			if count[from]-count[to] > 1 {
				owner[tp] = to
				count[from]--
				count[to]++
				moved = true
			}
		}
	}
	for tp, m := range owner {
		out[m][tp] = struct{}{}
	}
	return out
}
