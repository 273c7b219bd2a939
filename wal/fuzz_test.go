package wal

import (
	"hash/crc32"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

func crc32Of(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FuzzReplay feeds hostile buffer files to the decoder and to Open: no
// panic; an intact prefix re-encodes to exactly the bytes it came from;
// Open either replays (what decodeFile accepted) or moves the file aside,
// and it always replays an unsealed file whose header is intact, up to its
// first bad record.
func FuzzReplay(f *testing.F) {
	id := ulid.MustNew(1, strings.NewReader(strings.Repeat("f", 16)))
	full := fileBytes(0, id, 3)
	f.Add(full, false)
	f.Add(full, true)
	f.Add(full[:len(full)-2], false)
	f.Add(full[:fileHeaderSize+3], false)
	huge := slices.Clone(full)
	le.PutUint32(huge[fileHeaderSize:], 0xffffffff)
	f.Add(huge, false)
	f.Add(append(slices.Clone(full), make([]byte, 64)...), false)
	f.Add([]byte(fileMagic), true)
	hole := slices.Clone(full)
	clear(hole[len(fileBytes(0, id, 1)):len(fileBytes(0, id, 2))])
	f.Add(hole, false)
	f.Add(hole, true)

	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		h, entries, valid, err := decodeFile(data, sealed)
		if valid > int64(len(data)) {
			t.Fatalf("valid %d > %d", valid, len(data))
		}
		_, herr := decodeFileHeader(data)
		// What replay keeps: all of a file that decodes, the prefix
		// before the first bad record of an unsealed one.
		kept := err == nil || (!sealed && herr == nil)
		if kept {
			re := appendFileHeader(nil, h)
			for i := range entries {
				re = appendEntry(re, &entries[i])
			}
			if !slices.Equal(re, data[:valid]) {
				t.Fatal("decoded entries do not re-encode to the intact prefix")
			}
		}
		if err == nil && sealed && valid != int64(len(data)) {
			t.Fatal("sealed file with an ignored tail")
		}
		// Through Open, under the name the header claims (or a fixed one).
		seq, fid := uint64(0), id
		if herr == nil {
			seq, fid = h.seq, h.id
		}
		ext := "tmp"
		if sealed {
			ext = "wal"
		}
		fs := NewMemFS()
		fs.MkdirAll("/wal", 0o755)
		fs.WriteFile(fileName(seq, fid, ext), data)
		l, oerr := Open(testConfig(fs), newFakeSink())
		if oerr != nil {
			t.Fatalf("Open: %v", oerr)
		}
		n := 0
		for _, b := range l.mu.sealed {
			n += len(b.sealed.Entries)
		}
		if names := walFiles(t, fs, "/wal"); len(names) == 1 && strings.HasSuffix(names[0], corruptSuffix) {
			if !sealed && herr == nil {
				t.Fatal("moved aside an unsealed file whose header is intact")
			}
			if n != 0 {
				t.Fatalf("replayed %d entries of a file moved aside", n)
			}
			return
		}
		if sealed && err != nil {
			t.Fatalf("replayed a damaged sealed file: %v", err)
		}
		if kept && n != len(entries) {
			t.Fatalf("Open replayed %d entries, decoder %d", n, len(entries))
		}
	})
}
