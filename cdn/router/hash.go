package router

// Consistent hashing within a cluster: rendezvous (highest random weight)
// hashing. Each content name scores every eligible edge and goes to the
// edge with the highest score, so each object lives on one edge of the
// cluster, and when an edge leaves only the objects it held move (each
// to its next-highest edge): the others keep their edge and its warm
// cache (TestConsistentHashingKeepsObjects).

// hashBytes is FNV-1a over b, lower-casing ASCII letters (DNS names are
// case-insensitive).
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func hashString(s string) uint64 { return hashBytes([]byte(s)) }

// mix is splitmix64's finaliser: a well-spread score from a name's and an
// edge's hash.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// pick returns the index in edges of the edge the content named by its
// hash h goes to, among those ok accepts; -1 when none.
func pick(h uint64, edges []*edgeState, ok func(*edgeState) bool) int {
	best, bestScore := -1, uint64(0)
	for i, e := range edges {
		if !ok(e) {
			continue
		}
		if s := mix(h ^ e.hash); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}
