package flush

import (
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
)

// TestIsClusterObject: only keys exactly as ObjectKey makes them for the
// cluster are its own; other clusters' keys sharing the bucket never are,
// however their names and prefixes relate.
func TestIsClusterObject(t *testing.T) {
	id := ulid.Make().String()
	own := ObjectKey("prod", id)
	if !IsClusterObject(own, "prod") {
		t.Fatalf("%s is not prod's", own)
	}
	hashDir := strings.Split(ObjectKey("team", id), "/")[1]
	for _, k := range []struct{ key, cluster string }{
		{ObjectKey("team", id), "prod"},
		{ObjectKey("team", id), hashDir},                       // a cluster named like a hash directory
		{"v1/0000/team/prod/" + id + ".seg", "prod"},           // a cluster whose name has a "/"
		{"v1/staging/" + own, "prod"},                          // a prefix starting with v1/
		{"v1/" + hashDir + "/prod/" + id + ".seg.bak", "prod"}, // not a segment
		{strings.Replace(own, hashDir, "ffff", 1), "prod"},     // a hash that does not match the id
		{"v1/" + hashDir + "/prod/.seg", "prod"},
	} {
		if k.key != own && IsClusterObject(k.key, k.cluster) {
			t.Errorf("%s counted as cluster %q's", k.key, k.cluster)
		}
	}
}

func TestValidCluster(t *testing.T) {
	for _, ok := range []string{"floe", "prod-eu_1.2", strings.Repeat("a", 64)} {
		if err := ValidCluster(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "team/prod", "a b", "prod\n", strings.Repeat("a", 65), "é"} {
		if ValidCluster(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
