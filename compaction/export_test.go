package compaction

import "testing"

// SetMergeRowsPerPass makes merge passes read pages of n rows for the
// rest of t.
func SetMergeRowsPerPass(t testing.TB, n int) {
	old := mergeRowsPerPass
	mergeRowsPerPass = n
	t.Cleanup(func() { mergeRowsPerPass = old })
}

// SetMaxRowBytes caps the rows compaction joins at n bytes for the rest
// of t.
func SetMaxRowBytes(t testing.TB, n int64) {
	old := maxRowBytes
	maxRowBytes = n
	t.Cleanup(func() { maxRowBytes = old })
}
