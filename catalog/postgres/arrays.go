package postgres

import (
	"encoding/binary"
	"reflect"
	"slices"

	"github.com/jackc/pgx/v5/pgtype"
)

// Array parameters of a commit are encoded by hand, in PostgreSQL's binary
// array format: pgx's generic array encoding boxes every element (an
// allocation each), which costs a commit of 2,000 partitions about 2 ms of
// client CPU and much garbage. Each connection's type map learns the
// types once (useBinaryArrays); pgx then calls binaryArrayPlan for them.
type (
	int8Array  []int64
	int4Array  []int32
	int2Array  []int16
	boolArray  []bool
	uuidArray  [][16]byte
	byteaArray [][]byte // nil elements are NULL
)

// binaryArray is one of the array types above.
type binaryArray interface {
	appendBinary(buf []byte) []byte
	encodedLen() int // what appendBinary appends
	plain() any      // the underlying slice, for pgx's (unused) fallback plan
}

// reservedArray is a binaryArray that, encoded first of a statement's
// arguments, makes room for all of them (reserveArrays). pgx encodes a
// statement's arguments one after the other into one buffer that starts
// small for each statement (pgx.ExtendedQueryBuilder): a commit of 2,000
// partitions encodes a few hundred KB per statement, and letting the
// buffer grow by doubling copied and allocated all of it about twice.
type reservedArray struct {
	binaryArray
	reserve int
}

func (a reservedArray) appendBinary(buf []byte) []byte {
	return a.binaryArray.appendBinary(slices.Grow(buf, a.reserve))
}

// reserveArrays replaces the first binaryArray of args, a statement's
// arguments in order, by a reservedArray making room for every array of
// args and slack for small arguments after them.
func reserveArrays(args []any) {
	const slack = 512
	first, total := -1, slack
	for i, a := range args {
		if b, ok := a.(binaryArray); ok {
			total += b.encodedLen()
			if first < 0 {
				first = i
			}
		}
	}
	if first >= 0 {
		args[first] = reservedArray{args[first].(binaryArray), total}
	}
}

// PostgreSQL element type oids.
const (
	oidBool  = 16
	oidBytea = 17
	oidInt8  = 20
	oidInt2  = 21
	oidInt4  = 23
	oidUUID  = 2950
)

// appendArrayHeader appends a one-dimensional array header of n elements.
func appendArrayHeader(buf []byte, elemOID uint32, n int, hasNull bool) []byte {
	if n == 0 {
		buf = binary.BigEndian.AppendUint32(buf, 0) // no dimensions: empty
		buf = binary.BigEndian.AppendUint32(buf, 0)
		return binary.BigEndian.AppendUint32(buf, elemOID)
	}
	flags := uint32(0)
	if hasNull {
		flags = 1
	}
	buf = binary.BigEndian.AppendUint32(buf, 1)
	buf = binary.BigEndian.AppendUint32(buf, flags)
	buf = binary.BigEndian.AppendUint32(buf, elemOID)
	buf = binary.BigEndian.AppendUint32(buf, uint32(n))
	return binary.BigEndian.AppendUint32(buf, 1) // lower bound
}

// arrayHeaderLen is appendArrayHeader's length for n elements.
func arrayHeaderLen(n int) int {
	if n == 0 {
		return 12
	}
	return 20
}

// The fixed-width encoders grow buf once and fill it element by element:
// each element is its length (4 bytes) and its value.

func (a int8Array) encodedLen() int { return arrayHeaderLen(len(a)) + 12*len(a) }

func (a int8Array) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(slices.Grow(buf, a.encodedLen()), oidInt8, len(a), false)
	n := len(buf)
	buf = buf[:n+12*len(a)]
	for i, v := range a {
		e := buf[n+12*i : n+12*i+12]
		binary.BigEndian.PutUint32(e, 8)
		binary.BigEndian.PutUint64(e[4:], uint64(v))
	}
	return buf
}

func (a int4Array) encodedLen() int { return arrayHeaderLen(len(a)) + 8*len(a) }

func (a int4Array) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(slices.Grow(buf, a.encodedLen()), oidInt4, len(a), false)
	n := len(buf)
	buf = buf[:n+8*len(a)]
	for i, v := range a {
		e := buf[n+8*i : n+8*i+8]
		binary.BigEndian.PutUint32(e, 4)
		binary.BigEndian.PutUint32(e[4:], uint32(v))
	}
	return buf
}

func (a int2Array) encodedLen() int { return arrayHeaderLen(len(a)) + 6*len(a) }

func (a int2Array) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(slices.Grow(buf, a.encodedLen()), oidInt2, len(a), false)
	n := len(buf)
	buf = buf[:n+6*len(a)]
	for i, v := range a {
		e := buf[n+6*i : n+6*i+6]
		binary.BigEndian.PutUint32(e, 2)
		binary.BigEndian.PutUint16(e[4:], uint16(v))
	}
	return buf
}

func (a boolArray) encodedLen() int { return arrayHeaderLen(len(a)) + 5*len(a) }

func (a boolArray) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(slices.Grow(buf, a.encodedLen()), oidBool, len(a), false)
	n := len(buf)
	buf = buf[:n+5*len(a)]
	for i, v := range a {
		e := buf[n+5*i : n+5*i+5]
		binary.BigEndian.PutUint32(e, 1)
		e[4] = 0
		if v {
			e[4] = 1
		}
	}
	return buf
}

func (a uuidArray) encodedLen() int { return arrayHeaderLen(len(a)) + 20*len(a) }

func (a uuidArray) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(slices.Grow(buf, a.encodedLen()), oidUUID, len(a), false)
	n := len(buf)
	buf = buf[:n+20*len(a)]
	for i, v := range a {
		e := buf[n+20*i : n+20*i+20]
		binary.BigEndian.PutUint32(e, 16)
		copy(e[4:], v[:])
	}
	return buf
}

func (a byteaArray) encodedLen() int {
	n := arrayHeaderLen(len(a)) + 4*len(a)
	for _, v := range a {
		n += len(v)
	}
	return n
}

func (a byteaArray) appendBinary(buf []byte) []byte {
	hasNull := false
	for _, v := range a {
		hasNull = hasNull || v == nil
	}
	buf = appendArrayHeader(slices.Grow(buf, a.encodedLen()), oidBytea, len(a), hasNull)
	for _, v := range a {
		if v == nil {
			buf = binary.BigEndian.AppendUint32(buf, 0xFFFFFFFF) // -1: NULL
			continue
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(v)))
		buf = append(buf, v...)
	}
	return buf
}

func (a int8Array) plain() any  { return []int64(a) }
func (a int4Array) plain() any  { return []int32(a) }
func (a int2Array) plain() any  { return []int16(a) }
func (a boolArray) plain() any  { return []bool(a) }
func (a uuidArray) plain() any  { return [][16]byte(a) }
func (a byteaArray) plain() any { return [][]byte(a) }

// tryWrapBinaryArray is a pgtype.TryWrapEncodePlanFunc for binaryArray
// values. pgx accepts a wrapper only if it can also plan the value it
// unwraps to, so it unwraps to the plain slice; binaryArrayPlan never
// calls that plan.
func tryWrapBinaryArray(value any) (pgtype.WrappedEncodePlanNextSetter, any, bool) {
	a, ok := value.(binaryArray)
	if !ok {
		return nil, nil, false
	}
	return binaryArrayPlan{}, a.plain(), true
}

type binaryArrayPlan struct{}

func (binaryArrayPlan) SetNext(pgtype.EncodePlan) {}

func (binaryArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return value.(binaryArray).appendBinary(buf), nil
}

// useBinaryArrays makes m encode binaryArray values with
// binaryArrayPlan, once per type map (one per connection).
func useBinaryArrays(m *pgtype.Map) {
	fs := m.TryWrapEncodePlanFuncs
	if len(fs) > 0 && reflect.ValueOf(fs[0]).Pointer() == reflect.ValueOf(tryWrapBinaryArray).Pointer() {
		return
	}
	m.TryWrapEncodePlanFuncs = append([]pgtype.TryWrapEncodePlanFunc{tryWrapBinaryArray}, fs...)
}
