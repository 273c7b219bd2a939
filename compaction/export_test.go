package compaction

import "testing"

// SetMergeRowsPerPass makes merge passes read pages of n rows for the
// rest of t.
func SetMergeRowsPerPass(t testing.TB, n int) {
	old := mergeRowsPerPass
	mergeRowsPerPass = n
	t.Cleanup(func() { mergeRowsPerPass = old })
}
