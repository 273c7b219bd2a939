package postgres

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestBinaryArrayBytes: each hand encoder appends exactly encodedLen bytes,
// the bytes pgx's generic binary encoding of the same slice produces —
// except for an empty array, which they encode with no dimensions, as
// PostgreSQL itself does, where pgx writes one of length 0
// (TestBinaryArrays checks the meaning of both on a server) — and a
// reservedArray encodes as the array it wraps.
func TestBinaryArrayBytes(t *testing.T) {
	m := pgtype.NewMap()
	for _, tt := range []struct {
		oid  uint32
		fast binaryArray
	}{
		{pgtype.Int8ArrayOID, int8Array{0, -1, 1 << 62, -1 << 63}},
		{pgtype.Int8ArrayOID, int8Array{}},
		{pgtype.Int4ArrayOID, int4Array{7, -7, 1 << 30}},
		{pgtype.Int2ArrayOID, int2Array{1, -1, 32767}},
		{pgtype.BoolArrayOID, boolArray{true, false, true}},
		{pgtype.UUIDArrayOID, uuidArray{{1, 2, 3}, {15: 0xff}}},
		{pgtype.ByteaArrayOID, byteaArray{{1, 2}, nil, {}, {0xff}}},
		{pgtype.ByteaArrayOID, byteaArray{}},
	} {
		want, err := m.Encode(tt.oid, pgtype.BinaryFormatCode, tt.fast.plain(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) == 20 && bytes.Equal(want[12:], []byte{0, 0, 0, 0, 0, 0, 0, 1}) {
			// Empty: no dimensions.
			want = append(append([]byte{}, 0, 0, 0, 0, 0, 0, 0, 0), want[8:12]...)
		}
		prefix := []byte("prefix")
		got := tt.fast.appendBinary(bytes.Clone(prefix))
		if !bytes.Equal(got[len(prefix):], want) || !bytes.Equal(got[:len(prefix)], prefix) {
			t.Errorf("%T %v: encoded\n%x\nwant\n%x", tt.fast, tt.fast, got[len(prefix):], want)
		}
		if n := tt.fast.encodedLen(); n != len(want) {
			t.Errorf("%T %v: encodedLen %d, encodes %d bytes", tt.fast, tt.fast, n, len(want))
		}
		args := []any{"key", tt.fast, int64(1)}
		reserveArrays(args)
		r, ok := args[1].(reservedArray)
		if !ok || r.reserve < len(want) {
			t.Fatalf("reserveArrays: %#v", args[1])
		}
		if got := r.appendBinary(nil); !bytes.Equal(got, want) || cap(got) < r.reserve {
			t.Errorf("reserved %T: %x (cap %d), want %x", tt.fast, got, cap(got), want)
		}
	}
}
