package groups

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// TestAPIsMatchKafka41 checks the served versions against franz-go's record
// of what Kafka 4.1 serves, and that kmsg can encode them.
func TestAPIsMatchKafka41(t *testing.T) {
	kafka := kversion.V4_1_0()
	c := New(Config{}, newFakeCatalog(), &fakePlacement{}, nil, nil)
	for _, api := range c.APIs() {
		name := kmsg.NameForKey(api.Key)
		max, ok := kafka.LookupMaxKeyVersion(api.Key)
		if !ok || max != api.MaxVersion {
			t.Errorf("%s: max v%d, Kafka 4.1 serves v%d (%v)", name, api.MaxVersion, max, ok)
		}
		if req := kmsg.RequestForKey(api.Key); req.MaxVersion() < api.MaxVersion {
			t.Errorf("%s: kmsg knows up to v%d", name, req.MaxVersion())
		}
		if api.MinVersion < 0 || api.MinVersion > api.MaxVersion {
			t.Errorf("%s: versions %d-%d", name, api.MinVersion, api.MaxVersion)
		}
	}
	if len(c.APIs()) != 13 {
		t.Fatalf("%d APIs", len(c.APIs()))
	}
}
