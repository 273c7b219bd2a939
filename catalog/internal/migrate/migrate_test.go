package migrate

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    int
		wantErr bool
	}{
		{"ordered", fstest.MapFS{"m/0002_b.sql": {Data: []byte("b")}, "m/0001_a.sql": {Data: []byte("a")}, "m/README": {}}, 2, false},
		{"gap", fstest.MapFS{"m/0001_a.sql": {}, "m/0003_c.sql": {}}, 0, true},
		{"bad name", fstest.MapFS{"m/first.sql": {}}, 0, true},
		{"zero", fstest.MapFS{"m/0000_a.sql": {}}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Load(tt.files, "m")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err == nil && (Latest(ms) != tt.want || ms[0].SQL != "a") {
				t.Fatalf("got %+v", ms)
			}
		})
	}
}
