package app

import (
	"strings"
	"testing"
)

// TestCDNMapFromFlags: cdn route's --edge/--network/--origin build the
// network map the router validates; bad flags name themselves.
func TestCDNMapFromFlags(t *testing.T) {
	m, err := mapFromFlags([]string{"umass/e1=192.0.2.11@127.0.0.1:8089", "umass/e2=192.0.2.12", "nyu/e1=192.0.2.21"},
		[]string{"10.1.0.0/16,10.9.0.0/16=umass:1,nyu:4"}, []string{"192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Clusters) != 2 || len(m.Clusters[0].Edges) != 2 || m.Clusters[0].Edges[0].Control != "127.0.0.1:8089" || m.Clusters[1].Name != "nyu" {
		t.Errorf("clusters %+v", m.Clusters)
	}
	if len(m.Networks) != 1 || len(m.Networks[0].Prefixes) != 2 || m.Networks[0].Distances["nyu"] != 4 || m.Origin[0] != "192.0.2.1" {
		t.Errorf("networks %+v origin %v", m.Networks, m.Origin)
	}
	for _, tc := range []struct {
		edges, nets []string
		want        string
	}{
		{[]string{"e1=192.0.2.1"}, nil, "want CLUSTER/NAME=ADDR"},
		{[]string{"a/e1=nope"}, nil, "addr"},
		{[]string{"a/e1=192.0.2.1"}, []string{"10.0.0.0/8=a"}, "is not CLUSTER:DISTANCE"},
		{[]string{"a/e1=192.0.2.1"}, []string{"10.0.0.0/8=b:1"}, "no such cluster"},
		{nil, nil, "at least one cluster"},
	} {
		if _, err := mapFromFlags(tc.edges, tc.nets, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want %q", tc.edges, tc.nets, err, tc.want)
		}
	}
}
