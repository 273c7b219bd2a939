package postgres

import (
	"encoding/binary"
	"reflect"

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
	plain() any // the underlying slice, for pgx's (unused) fallback plan
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

func (a int8Array) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(buf, oidInt8, len(a), false)
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 8)
		buf = binary.BigEndian.AppendUint64(buf, uint64(v))
	}
	return buf
}

func (a int4Array) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(buf, oidInt4, len(a), false)
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 4)
		buf = binary.BigEndian.AppendUint32(buf, uint32(v))
	}
	return buf
}

func (a int2Array) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(buf, oidInt2, len(a), false)
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 2)
		buf = binary.BigEndian.AppendUint16(buf, uint16(v))
	}
	return buf
}

func (a boolArray) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(buf, oidBool, len(a), false)
	for _, v := range a {
		b := byte(0)
		if v {
			b = 1
		}
		buf = binary.BigEndian.AppendUint32(buf, 1)
		buf = append(buf, b)
	}
	return buf
}

func (a uuidArray) appendBinary(buf []byte) []byte {
	buf = appendArrayHeader(buf, oidUUID, len(a), false)
	for _, v := range a {
		buf = binary.BigEndian.AppendUint32(buf, 16)
		buf = append(buf, v[:]...)
	}
	return buf
}

func (a byteaArray) appendBinary(buf []byte) []byte {
	hasNull := false
	for _, v := range a {
		hasNull = hasNull || v == nil
	}
	buf = appendArrayHeader(buf, oidBytea, len(a), hasNull)
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
