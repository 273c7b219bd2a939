package groups

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The stored form of a group's stable state (persist.go writes it to the
// catalog, which keeps it as an opaque blob). The blob may come from an
// older or newer Floe, or be damaged: decoding checks every length against
// what is left, never allocates more than the blob's size, validates the
// group's invariants, and answers an error for anything it does not know.
//
// Format 1, integers big-endian, strings and byte strings as a uvarint
// length and the bytes:
//
//	format    byte (1)
//	kind      byte (0: classic; no other kind is stored yet)
//	generation int32
//	protocolType, protocol, leader string
//	seq       uint64 (join order counter)
//	members   uvarint count, each:
//	  id string; flags byte (bit 0: static); instanceID string if static
//	  clientID, clientHost string
//	  sessionTimeout, rebalanceTimeout int32 (ms)
//	  seq uint64
//	  protocols uvarint count, each: name string, metadata bytes
//	  assignment bytes
const stateFormat byte = 1

var errBadState = errors.New("groups: undecodable group state")

// storedClassic is the part of a classic group the catalog keeps: what a
// new coordinator needs to let members go on with their generation and
// assignment.
type storedClassic struct {
	generation   int32
	protocolType string
	protocol     string
	leader       string
	seq          uint64
	members      []storedMember
}

type storedMember struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	seq              uint64
	protocols        []protocol
	assignment       []byte
}

// encodeClassic is cl's stored form; the caller holds the group's lock.
func encodeClassic(cl *classicGroup) []byte {
	b := []byte{stateFormat, byte(kindClassic)}
	b = binary.BigEndian.AppendUint32(b, uint32(cl.generation))
	b = appendString(b, cl.protocolType)
	b = appendString(b, cl.protocol)
	b = appendString(b, cl.leader)
	b = binary.BigEndian.AppendUint64(b, cl.seq)
	ms := cl.sortedMembers()
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = appendString(b, m.id)
		if m.instanceID != nil {
			b = append(b, 1)
			b = appendString(b, *m.instanceID)
		} else {
			b = append(b, 0)
		}
		b = appendString(b, m.clientID)
		b = appendString(b, m.clientHost)
		b = binary.BigEndian.AppendUint32(b, uint32(m.sessionTimeout.Milliseconds()))
		b = binary.BigEndian.AppendUint32(b, uint32(m.rebalanceTimeout.Milliseconds()))
		b = binary.BigEndian.AppendUint64(b, m.seq)
		b = binary.AppendUvarint(b, uint64(len(m.protocols)))
		for _, p := range m.protocols {
			b = appendString(b, p.name)
			b = appendString(b, string(p.metadata))
		}
		b = appendString(b, string(m.assignment))
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeClassic decodes a stored classic group, checking that it is one
// the state machine can run: unique member and instance ids, a leader that
// is a member, a selected protocol every member supports, positive
// timeouts.
func decodeClassic(blob []byte) (*storedClassic, error) {
	r := stateReader{b: blob}
	if f := r.byte(); r.err == nil && f != stateFormat {
		return nil, fmt.Errorf("%w: format %d", errBadState, f)
	}
	if k := r.byte(); r.err == nil && k != byte(kindClassic) {
		return nil, fmt.Errorf("%w: group kind %d", errBadState, k)
	}
	s := &storedClassic{}
	s.generation = int32(r.uint32())
	s.protocolType = r.string()
	s.protocol = r.string()
	s.leader = r.string()
	s.seq = r.uint64()
	n := r.count(4) // a member takes at least a few bytes
	ids := make(map[string]bool)
	instances := make(map[string]bool)
	for i := 0; i < n && r.err == nil; i++ {
		m := storedMember{id: r.string()}
		switch r.byte() {
		case 0:
		case 1:
			inst := r.string()
			m.instanceID = &inst
		default:
			r.fail("member flags")
		}
		m.clientID = r.string()
		m.clientHost = r.string()
		m.sessionTimeout = time.Duration(int32(r.uint32())) * time.Millisecond
		m.rebalanceTimeout = time.Duration(int32(r.uint32())) * time.Millisecond
		m.seq = r.uint64()
		np := r.count(2)
		for j := 0; j < np && r.err == nil; j++ {
			m.protocols = append(m.protocols, protocol{name: r.string(), metadata: []byte(r.string())})
		}
		m.assignment = []byte(r.string())
		if r.err != nil {
			break
		}
		switch {
		case m.id == "" || ids[m.id]:
			r.fail("member id")
		case m.instanceID != nil && (*m.instanceID == "" || instances[*m.instanceID]):
			r.fail("instance id")
		case m.sessionTimeout <= 0 || m.rebalanceTimeout <= 0:
			r.fail("timeouts")
		case len(m.protocols) == 0:
			r.fail("protocols")
		}
		ids[m.id] = true
		if m.instanceID != nil {
			instances[*m.instanceID] = true
		}
		s.members = append(s.members, m)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	if s.generation < 0 {
		return nil, fmt.Errorf("%w: generation %d", errBadState, s.generation)
	}
	if len(s.members) > 0 {
		if !ids[s.leader] || s.protocolType == "" || s.protocol == "" {
			return nil, fmt.Errorf("%w: leader or protocol", errBadState)
		}
		for _, m := range s.members {
			if !(&classicMember{protocols: m.protocols}).hasProtocol(s.protocol) {
				return nil, fmt.Errorf("%w: member without the selected protocol", errBadState)
			}
		}
	}
	return s, nil
}

// stateReader reads a stored state; the first error sticks and every
// later read returns zero values.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", errBadState, what)
	}
	r.b = nil
}

func (r *stateReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("length")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) byte() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *stateReader) uint32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *stateReader) uint64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *stateReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads an element count, refusing one that the remaining bytes
// cannot hold at min bytes per element (so a forged count cannot make the
// decoder loop or allocate beyond the blob).
func (r *stateReader) count(min int) int {
	v := r.uvarint()
	if r.err == nil && v > uint64(len(r.b)/min) {
		r.fail("count")
		return 0
	}
	return int(v)
}

func (r *stateReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.b)) {
		r.fail("length")
		return ""
	}
	return string(r.take(int(n)))
}

// The KIP-848 form (kind 1), after the same format byte:
//
//	epoch, assignmentEpoch int32
//	assignor string; subsHash uint64
//	target    uvarint count, each: member id string, partitions
//	members   uvarint count, each:
//	  id string; flags byte (bit 0: static, 1: rack, 2: left)
//	  instanceID string if static; rackID string if rack
//	  clientID, clientHost string
//	  epoch, prevEpoch int32; state byte; rebalance int32 (ms)
//	  names uvarint count of strings; regex, assignor string
//	  assigned, revoking partitions
//	partitions: uvarint count, each: topic id [16]byte, partition int32
type storedConsumer struct {
	epoch, assignmentEpoch int32
	assignor               string
	subsHash               uint64
	target                 map[string]tpSet
	members                []*consumerMember
}

// encodeConsumer is cg's stored form; the caller holds the group's lock.
func encodeConsumer(cg *consumerGroup) []byte {
	b := []byte{stateFormat, byte(kindConsumer)}
	b = binary.BigEndian.AppendUint32(b, uint32(cg.epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(cg.assignmentEpoch))
	b = appendString(b, cg.assignor)
	b = binary.BigEndian.AppendUint64(b, cg.subsHash)
	ids := make([]string, 0, len(cg.target))
	for id := range cg.target {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendString(b, id)
		b = appendParts(b, cg.target[id])
	}
	ms := cg.sortedConsumers()
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = appendString(b, m.id)
		var flags byte
		if m.instanceID != nil {
			flags |= 1
		}
		if m.rackID != nil {
			flags |= 2
		}
		if m.left {
			flags |= 4
		}
		b = append(b, flags)
		if m.instanceID != nil {
			b = appendString(b, *m.instanceID)
		}
		if m.rackID != nil {
			b = appendString(b, *m.rackID)
		}
		b = appendString(b, m.clientID)
		b = appendString(b, m.clientHost)
		b = binary.BigEndian.AppendUint32(b, uint32(m.epoch))
		b = binary.BigEndian.AppendUint32(b, uint32(m.prevEpoch))
		b = append(b, byte(m.state))
		b = binary.BigEndian.AppendUint32(b, uint32(m.rebalance.Milliseconds()))
		b = binary.AppendUvarint(b, uint64(len(m.names)))
		for _, n := range m.names {
			b = appendString(b, n)
		}
		b = appendString(b, m.regex)
		b = appendString(b, m.assignor)
		b = appendParts(b, m.assigned)
		b = appendParts(b, m.revoking)
	}
	return b
}

func appendParts(b []byte, s tpSet) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	for _, tp := range s.sorted() {
		b = append(b, tp.id[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(tp.p))
	}
	return b
}

func (r *stateReader) parts() tpSet {
	n := r.count(20)
	s := make(tpSet, n)
	for i := 0; i < n && r.err == nil; i++ {
		var tp topicPartition
		copy(tp.id[:], r.take(16))
		tp.p = int32(r.uint32())
		if tp.p < 0 {
			r.fail("partition")
		}
		s[tp] = struct{}{}
	}
	return s
}

// decodeConsumer decodes a stored KIP-848 group, checking the invariants
// the state machine relies on: unique member and instance ids, epochs in
// order, known member states, compilable regexes, no partition held by two
// members, a target only for members.
func decodeConsumer(blob []byte) (*storedConsumer, error) {
	r := stateReader{b: blob}
	if f := r.byte(); r.err == nil && f != stateFormat {
		return nil, fmt.Errorf("%w: format %d", errBadState, f)
	}
	if k := r.byte(); r.err == nil && k != byte(kindConsumer) {
		return nil, fmt.Errorf("%w: group kind %d", errBadState, k)
	}
	s := &storedConsumer{target: make(map[string]tpSet)}
	s.epoch = int32(r.uint32())
	s.assignmentEpoch = int32(r.uint32())
	s.assignor = r.string()
	s.subsHash = r.uint64()
	nt := r.count(2)
	for i := 0; i < nt && r.err == nil; i++ {
		id := r.string()
		if _, dup := s.target[id]; dup {
			r.fail("target")
		}
		s.target[id] = r.parts()
	}
	nm := r.count(8)
	ids := make(map[string]bool)
	instances := make(map[string]bool)
	held := make(map[topicPartition]bool)
	for i := 0; i < nm && r.err == nil; i++ {
		m := &consumerMember{id: r.string()}
		flags := r.byte()
		if flags&^7 != 0 {
			r.fail("member flags")
		}
		if flags&1 != 0 {
			v := r.string()
			m.instanceID = &v
		}
		if flags&2 != 0 {
			v := r.string()
			m.rackID = &v
		}
		m.left = flags&4 != 0
		m.clientID = r.string()
		m.clientHost = r.string()
		m.epoch = int32(r.uint32())
		m.prevEpoch = int32(r.uint32())
		m.state = memberState(r.byte())
		m.rebalance = time.Duration(int32(r.uint32())) * time.Millisecond
		nn := r.count(1)
		for j := 0; j < nn && r.err == nil; j++ {
			m.names = append(m.names, r.string())
		}
		m.regex = r.string()
		m.assignor = r.string()
		m.assigned = r.parts()
		m.revoking = r.parts()
		if r.err != nil {
			break
		}
		switch {
		case m.id == "" || ids[m.id]:
			r.fail("member id")
		case m.instanceID != nil && (*m.instanceID == "" || instances[*m.instanceID]):
			r.fail("instance id")
		case m.epoch < 0 || m.prevEpoch < 0 || m.epoch > s.assignmentEpoch || m.rebalance < 0:
			r.fail("member epoch")
		case m.state > memberUnreleased:
			r.fail("member state")
		case len(m.regex) > maxRegexBytes:
			r.fail("regex")
		}
		if m.regex != "" && r.err == nil {
			re, err := compileSubscription(m.regex)
			if err != nil {
				r.fail("regex")
			}
			m.re = re
		}
		for _, set := range []tpSet{m.assigned, m.revoking} {
			for tp := range set {
				if held[tp] {
					r.fail("partition held twice")
				}
				held[tp] = true
			}
		}
		ids[m.id] = true
		if m.instanceID != nil {
			instances[*m.instanceID] = true
		}
		if len(m.revoking) == 0 {
			m.revoking = nil
		}
		s.members = append(s.members, m)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return nil, r.err
	}
	if s.epoch < 0 || s.assignmentEpoch < 0 || s.assignmentEpoch > s.epoch {
		return nil, fmt.Errorf("%w: group epochs %d/%d", errBadState, s.epoch, s.assignmentEpoch)
	}
	for id := range s.target {
		if !ids[id] {
			return nil, fmt.Errorf("%w: target for a member that is not one", errBadState)
		}
	}
	return s, nil
}

// decodeState decodes a stored group of either kind.
func decodeState(blob []byte) (groupKind, *storedClassic, *storedConsumer, error) {
	if len(blob) >= 2 && blob[0] == stateFormat && blob[1] == byte(kindConsumer) {
		s, err := decodeConsumer(blob)
		return kindConsumer, nil, s, err
	}
	s, err := decodeClassic(blob)
	return kindClassic, s, nil, err
}
