package dht

import (
	"math/bits"
	"net/netip"
	"sort"
	"time"
)

// K is the bucket size (BEP 5: 8).
const K = 8

// Distance is the XOR of two ids.
func Distance(a, b ID) ID {
	var d ID
	for i := range d {
		d[i] = a[i] ^ b[i]
	}
	return d
}

// less reports whether distance a is smaller than b.
func less(a, b ID) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// bucketIndex is the length of the common prefix of self and id (0..159;
// 160 for self).
func bucketIndex(self, id ID) int {
	for i := range self {
		if x := self[i] ^ id[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return 160
}

type entry struct {
	NodeInfo
	lastSeen time.Time
}

// table is the routing table: one bucket of at most K nodes per common
// prefix length with our id. A full bucket takes a new node only in place
// of one not heard from for staleAfter (good nodes are kept, as Kademlia
// prefers long-lived nodes).
type table struct {
	self    ID
	buckets [161][]entry
}

const staleAfter = 15 * time.Minute

// seen records that a node answered or queried us.
func (t *table) seen(n NodeInfo, now time.Time) {
	if n.ID == t.self || !n.Addr.IsValid() || n.Addr.Port() == 0 {
		return
	}
	i := bucketIndex(t.self, n.ID)
	b := t.buckets[i]
	for k := range b {
		if b[k].ID == n.ID {
			b[k].Addr, b[k].lastSeen = n.Addr, now
			return
		}
	}
	if len(b) < K {
		t.buckets[i] = append(b, entry{NodeInfo: n, lastSeen: now})
		return
	}
	oldest := 0
	for k := range b {
		if b[k].lastSeen.Before(b[oldest].lastSeen) {
			oldest = k
		}
	}
	if now.Sub(b[oldest].lastSeen) > staleAfter {
		b[oldest] = entry{NodeInfo: n, lastSeen: now}
	}
}

// remove drops a node that failed to answer.
func (t *table) remove(id ID) {
	i := bucketIndex(t.self, id)
	b := t.buckets[i]
	for k := range b {
		if b[k].ID == id {
			t.buckets[i] = append(b[:k], b[k+1:]...)
			return
		}
	}
}

// closest returns up to n known nodes closest to target.
func (t *table) closest(target ID, n int) []NodeInfo {
	var all []NodeInfo
	for _, b := range t.buckets {
		for _, e := range b {
			all = append(all, e.NodeInfo)
		}
	}
	sortByDistance(all, target)
	if len(all) > n {
		all = all[:n]
	}
	return all
}

func (t *table) size() int {
	n := 0
	for _, b := range t.buckets {
		n += len(b)
	}
	return n
}

func sortByDistance(nodes []NodeInfo, target ID) {
	sort.Slice(nodes, func(i, j int) bool { return less(Distance(nodes[i].ID, target), Distance(nodes[j].ID, target)) })
}

// peerStore keeps the peers announced for each info-hash.
type peerStore struct {
	m map[ID]map[netip.AddrPort]time.Time
}

const (
	peerTTL            = 30 * time.Minute
	maxPeersPerHash    = 500
	maxHashes          = 10000
	maxValuesPerAnswer = 50
)

func (s *peerStore) add(h ID, ap netip.AddrPort, now time.Time) {
	if s.m == nil {
		s.m = map[ID]map[netip.AddrPort]time.Time{}
	}
	ps := s.m[h]
	if ps == nil {
		if len(s.m) >= maxHashes {
			return
		}
		ps = map[netip.AddrPort]time.Time{}
		s.m[h] = ps
	}
	if _, ok := ps[ap]; !ok && len(ps) >= maxPeersPerHash {
		return
	}
	ps[ap] = now
}

func (s *peerStore) get(h ID, now time.Time) []netip.AddrPort {
	var out []netip.AddrPort
	for ap, at := range s.m[h] {
		if now.Sub(at) > peerTTL {
			delete(s.m[h], ap)
			continue
		}
		if len(out) < maxValuesPerAnswer {
			out = append(out, ap)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
}
