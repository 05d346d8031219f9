package dht

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/applayer/applayer/internal/service"
	"github.com/applayer/applayer/internal/testkit"
)

func TestMain(m *testing.M) { testkit.VerifyNoLeaks(m) }

func TestKRPCRoundTrip(t *testing.T) {
	id, target := RandomID(), RandomID()
	msgs := []Msg{
		{T: "aa", Y: "q", Q: "ping", ID: id},
		{T: "ab", Y: "q", Q: "find_node", ID: id, Target: target},
		{T: "ac", Y: "q", Q: "get_peers", ID: id, InfoHash: target},
		{T: "ad", Y: "q", Q: "announce_peer", ID: id, InfoHash: target, Port: 6881, Token: "tok", ImpliedPort: true},
		{T: "ae", Y: "r", ID: id, Nodes: []NodeInfo{{ID: target, Addr: netip.MustParseAddrPort("127.0.0.2:6881")}}, Token: "x"},
		{T: "af", Y: "r", ID: id, Values: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.3:1"), netip.MustParseAddrPort("127.0.0.4:2")}},
		{T: "ag", Y: "e", ErrCode: 201, ErrMsg: "generic"},
	}
	for _, m := range msgs {
		got, err := Parse(m.Bytes())
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("%s: %+v %v", m.Q+m.Y, got, err)
		}
	}
	// BEP 5's example ping, byte for byte.
	ping := "d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
	m, err := Parse([]byte(ping))
	if err != nil || m.Q != "ping" || string(m.ID[:]) != "abcdefghij0123456789" || string(m.Bytes()) != ping {
		t.Errorf("BEP 5 ping: %+v %v %q", m, err, m.Bytes())
	}
	for _, bad := range []string{"i1e", "d1:t2:aa1:y1:qe", "d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", "d1:t2:aa1:y1:xe", "d1:eli201ee1:t2:aa1:y1:ee"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTable(t *testing.T) {
	var self ID
	tab := table{self: self}
	now := time.Unix(1e9, 0)
	// 10 nodes all in bucket 0 (first bit differs from self's).
	for i := range 10 {
		var id ID
		id[0] = 0x80
		id[19] = byte(i)
		tab.seen(NodeInfo{ID: id, Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(1000+i))}, now.Add(time.Duration(i)*time.Second))
	}
	if n := len(tab.buckets[0]); n != K {
		t.Fatalf("bucket 0 holds %d, want K=%d", n, K)
	}
	// A fresh node replaces a stale one only.
	var nid ID
	nid[0], nid[19] = 0x80, 0xff
	tab.seen(NodeInfo{ID: nid, Addr: netip.MustParseAddrPort("127.0.0.1:2000")}, now.Add(time.Minute))
	if tab.size() != K || contains(tab.closest(nid, 20), nid) {
		t.Error("full bucket of good nodes took a newcomer")
	}
	tab.seen(NodeInfo{ID: nid, Addr: netip.MustParseAddrPort("127.0.0.1:2000")}, now.Add(20*time.Minute))
	if !contains(tab.closest(nid, 20), nid) {
		t.Error("stale node not replaced")
	}
	var near ID
	near[0], near[19] = 0x80, 3
	if got := tab.closest(near, 1); got[0].ID != near {
		t.Errorf("closest = %x", got[0].ID)
	}
}

func contains(l []NodeInfo, id ID) bool {
	for _, n := range l {
		if n.ID == id {
			return true
		}
	}
	return false
}

// TestDHTNetwork: ten nodes join through one bootstrap node; one announces
// an info-hash and another finds it by get_peers; a bad token is refused.
func TestDHTNetwork(t *testing.T) {
	block := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	start := func(host int, boot []string) *Node {
		n, err := New(Config{Addr: fmt.Sprintf("%s%d:0", block, host), Bootstrap: boot, QueryTimeout: time.Second}, service.Deps{Logger: testkit.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return testkit.Start(t, n)
	}
	boot := start(1, nil)
	var nodes []*Node
	for i := range 10 {
		nodes = append(nodes, start(10+i, []string{boot.AddrPort().String()}))
	}
	ctx := testkit.Context(t, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.TableSize() < 3 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	ih := RandomID()
	_, stored := nodes[0].Announce(ctx, ih, 6881)
	if stored == 0 {
		t.Fatal("announce reached no node")
	}
	peers := nodes[9].GetPeers(ctx, ih)
	want := netip.AddrPortFrom(nodes[0].AddrPort().Addr(), 6881)
	if !reflect.DeepEqual(peers, []netip.AddrPort{want}) {
		t.Fatalf("get_peers found %v, want [%v]", peers, want)
	}
	// announce_peer with a made-up token is refused.
	if _, err := nodes[1].query(ctx, boot.AddrPort(), Msg{Y: "q", Q: "announce_peer", InfoHash: ih, Port: 1, Token: "forged!!"}); err == nil {
		t.Error("forged token accepted")
	}
	if got := boot.GetPeers(ctx, ih); len(got) != 1 {
		t.Errorf("peers after the forged announce: %v", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"))
	f.Add(Msg{T: "ae", Y: "r", ID: RandomID(), Nodes: []NodeInfo{{ID: RandomID(), Addr: netip.MustParseAddrPort("127.0.0.2:6881")}}}.Bytes())
	f.Add(Msg{T: "ag", Y: "e", ErrCode: 201, ErrMsg: "generic"}.Bytes())
	n, err := New(Config{Addr: "127.0.0.1:0"}, service.Deps{})
	if err != nil {
		f.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.9:7000")
	f.Fuzz(func(t *testing.T, b []byte) {
		// The node answers any datagram with a well-formed message or not
		// at all.
		if r := n.Handle(b, from); r != nil {
			if _, err := Parse(r); err != nil {
				t.Fatalf("answer %q does not parse: %v", r, err)
			}
		}
		m, err := Parse(b)
		if err != nil {
			return
		}
		again, err := Parse(m.Bytes())
		if err != nil || again.T != m.T || again.ID != m.ID || len(again.Nodes) != len(m.Nodes) {
			t.Fatalf("re-encoded message: %v", err)
		}
	})
}

// TestLookupAfterTableEmptied: a node whose routing table has emptied
// (every entry removed after one timeout, as under load) still finds the
// peers of an info-hash, starting again from its bootstrap nodes instead
// of answering nothing until the next periodic re-join (minutes away).
func TestLookupAfterTableEmptied(t *testing.T) {
	block := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), rand.IntN(250))
	start := func(host int, boot []string) *Node {
		n, err := New(Config{Addr: fmt.Sprintf("%s%d:0", block, host), Bootstrap: boot, QueryTimeout: time.Second}, service.Deps{Logger: testkit.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return testkit.Start(t, n)
	}
	boot := start(1, nil)
	seed := start(2, []string{boot.AddrPort().String()})
	leech := start(3, []string{boot.AddrPort().String()})
	ctx := testkit.Context(t, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for (seed.TableSize() == 0 || leech.TableSize() == 0) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ih := RandomID()
	if _, stored := seed.Announce(ctx, ih, 6881); stored == 0 {
		t.Fatal("announce reached no node")
	}
	leech.mu.Lock()
	for _, in := range leech.tab.closest(ih, 1000) {
		leech.tab.remove(in.ID)
	}
	leech.mu.Unlock()
	if n := leech.TableSize(); n != 0 {
		t.Fatalf("table still holds %d nodes", n)
	}
	want := netip.AddrPortFrom(seed.AddrPort().Addr(), 6881)
	if peers := leech.GetPeers(ctx, ih); !reflect.DeepEqual(peers, []netip.AddrPort{want}) {
		t.Fatalf("get_peers with an emptied table found %v, want [%v]", peers, want)
	}
}
