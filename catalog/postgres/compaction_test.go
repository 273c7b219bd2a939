package postgres

import (
	"testing"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func TestCompactionConformance(t *testing.T) {
	testURL(t)
	catalogtest.RunCompaction(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, freshSchema(t), catalog.Options{})
	})
}
