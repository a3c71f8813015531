// Package rendezvous chooses one node of a set for a key by rendezvous
// (highest-random-weight) hashing: every node gets a pseudo-random weight
// for the key, and the key goes to the node with the highest weight.
//
// The choice depends only on the key and the node names, never on the
// order of the nodes or on who computes it, so every origin replica sends
// a digest to the same cache node without talking to the others. Removing
// a node moves only the keys that node had (each to the node that was
// second for it), adding one takes an even share from every other node,
// and the keys spread evenly: for N nodes each gets 1/N of the keys, up to
// the randomness of the hash (tested: 100,000 digests over 3 and 10 nodes
// within 5 % of even; one node of 10 removed moves no key of the others).
//
// Choosing among the healthy nodes is choosing the highest-weighted node
// that is eligible (Set.Pick with a filter): a node that is down gives its
// keys to their second choices, and gets them back when it comes back.
//
// Weights are the 64-bit xxhash of the key (github.com/cespare/xxhash/v2)
// combined with a precomputed hash of the node name and mixed by
// splitmix64's finalizer. The package imports nothing of HTTP and keeps no
// state but the Set it returns.
package rendezvous

import (
	"sort"

	"github.com/cespare/xxhash/v2"
)

// Set is an immutable set of nodes to choose among. It is safe for
// concurrent use.
type Set struct {
	nodes  []string
	hashes []uint64
}

// New returns the set of nodes (duplicates are kept once; the order does
// not matter).
func New(nodes ...string) *Set {
	s := &Set{}
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if seen[n] {
			continue
		}
		seen[n] = true
		s.nodes = append(s.nodes, n)
		s.hashes = append(s.hashes, xxhash.Sum64String(n))
	}
	return s
}

// Len returns the number of nodes.
func (s *Set) Len() int { return len(s.nodes) }

// Nodes returns the nodes of the set, in the order New was given them.
func (s *Set) Nodes() []string { return append([]string(nil), s.nodes...) }

// weight is node i's weight for a key hashed to k.
func (s *Set) weight(i int, k uint64) uint64 {
	return mix(k ^ s.hashes[i])
}

// mix is splitmix64's finalizer: a bijection whose every output bit
// depends on every input bit.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// better reports whether node i outranks node j for a key hashed to k.
// Equal weights (a 2^-64 chance) are broken by name, so the order is
// total and the same everywhere.
func (s *Set) better(i, j int, k uint64) bool {
	wi, wj := s.weight(i, k), s.weight(j, k)
	if wi != wj {
		return wi > wj
	}
	return s.nodes[i] < s.nodes[j]
}

// Pick returns the node with the highest weight for key among those for
// which eligible returns true (all nodes when eligible is nil); ok is
// false when no node is eligible.
func (s *Set) Pick(key string, eligible func(node string) bool) (node string, ok bool) {
	k := xxhash.Sum64String(key)
	best := -1
	for i := range s.nodes {
		if eligible != nil && !eligible(s.nodes[i]) {
			continue
		}
		if best < 0 || s.better(i, best, k) {
			best = i
		}
	}
	if best < 0 {
		return "", false
	}
	return s.nodes[best], true
}

// Rank returns every node ordered by its weight for key, highest first:
// Rank(key)[0] is Pick(key, nil), and the node after a lost one is where
// its keys go.
func (s *Set) Rank(key string) []string {
	k := xxhash.Sum64String(key)
	idx := make([]int, len(s.nodes))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return s.better(idx[a], idx[b], k) })
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = s.nodes[j]
	}
	return out
}
