package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func TestCompactionConformance(t *testing.T) {
	catalogtest.RunCompaction(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, filepath.Join(t.TempDir(), "catalog.db"), catalog.Options{})
	})
}
