package postgres

import (
	"testing"

	"github.com/floebroker/floe/catalog"
	"github.com/floebroker/floe/catalog/catalogtest"
)

func TestConformance(t *testing.T) {
	testURL(t)
	catalogtest.Run(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, freshSchema(t), catalog.Options{})
	})
}

func TestStress(t *testing.T) {
	url := freshSchema(t)
	catalogtest.Stress(t, func(t *testing.T) catalog.Catalog {
		return openTest(t, url, catalog.Options{MaxConns: 4})
	}, catalogtest.StressConfig{Commits: catalogtest.CommitsFromEnv(1000)})
}
