package rendezvous

import (
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"testing"
)

// digests returns n distinct sha256 digests, as the origin sees them.
func digests(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sha256:%x", sha256.Sum256(fmt.Appendf(nil, "blob %d", i)))
	}
	return out
}

func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("https://cache-%d.office.example.org", i+1)
	}
	return out
}

func TestPick(t *testing.T) {
	three := nodes(3)
	key := "sha256:" + fmt.Sprintf("%x", sha256.Sum256([]byte("x")))
	first := New(three...).Rank(key)
	for _, tc := range []struct {
		name     string
		nodes    []string
		eligible func(string) bool
		want     string
		ok       bool
	}{
		{name: "no nodes", nodes: nil, ok: false},
		{name: "one node", nodes: three[:1], want: three[0], ok: true},
		{name: "all eligible", nodes: three, want: first[0], ok: true},
		{name: "first choice down", nodes: three, eligible: func(n string) bool { return n != first[0] }, want: first[1], ok: true},
		{name: "only the last left", nodes: three, eligible: func(n string) bool { return n == first[2] }, want: first[2], ok: true},
		{name: "none eligible", nodes: three, eligible: func(string) bool { return false }, ok: false},
		{name: "duplicates ignored", nodes: append(slices.Clone(three), three...), want: first[0], ok: true},
		{name: "order does not matter", nodes: []string{three[2], three[0], three[1]}, want: first[0], ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := New(tc.nodes...).Pick(key, tc.eligible)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Pick = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestRank(t *testing.T) {
	s := New(nodes(5)...)
	for _, key := range digests(200) {
		r := s.Rank(key)
		if len(r) != 5 {
			t.Fatalf("Rank(%s) has %d nodes", key, len(r))
		}
		if p, _ := s.Pick(key, nil); r[0] != p {
			t.Fatalf("Rank(%s)[0] = %s, Pick = %s", key, r[0], p)
		}
		got := slices.Clone(r)
		slices.Sort(got)
		if !slices.Equal(got, s.Nodes()) && !slices.Equal(got, sorted(s.Nodes())) {
			t.Fatalf("Rank(%s) = %v is not a permutation of %v", key, r, s.Nodes())
		}
		// Skipping the first choice gives the second: where a lost node's
		// keys go.
		if p, _ := s.Pick(key, func(n string) bool { return n != r[0] }); p != r[1] {
			t.Fatalf("without %s, Pick = %s, want Rank[1] = %s", r[0], p, r[1])
		}
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestKnownChoices pins a few choices, so that a change of the hash (which
// would move every blob of every fleet at an upgrade, and make replicas of
// two versions disagree) cannot go unnoticed.
func TestKnownChoices(t *testing.T) {
	s := New("http://a", "http://b", "http://c")
	got := []string{}
	for _, k := range []string{"", "sha256:00", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "x"} {
		p, _ := s.Pick(k, nil)
		got = append(got, p)
	}
	want := []string{"http://b", "http://a", "http://c", "http://a"}
	if !slices.Equal(got, want) {
		t.Errorf("choices %v, want %v: the weights changed", got, want)
	}
}

// TestDistribution: 100,000 digests over 3 and 10 nodes, each node's share
// within 5 % of even.
func TestDistribution(t *testing.T) {
	keys := digests(100_000)
	for _, n := range []int{3, 10} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			s := New(nodes(n)...)
			count := map[string]int{}
			for _, k := range keys {
				p, _ := s.Pick(k, nil)
				count[p]++
			}
			even := float64(len(keys)) / float64(n)
			worst := 0.0
			for _, node := range s.Nodes() {
				dev := math.Abs(float64(count[node])-even) / even
				worst = max(worst, dev)
				if dev > 0.05 {
					t.Errorf("%s has %d digests, %.1f %% from even (%.0f)", node, count[node], 100*dev, even)
				}
			}
			t.Logf("%d nodes: worst node %.2f %% from even", n, 100*worst)
		})
	}
}

// TestRemoveNode: one node of 10 removed moves its own digests and no
// other (≤ 11 % of all); one added takes about 1/11 from the others.
func TestRemoveNode(t *testing.T) {
	keys := digests(100_000)
	all := nodes(11)
	ten := New(all[:10]...)
	for _, gone := range []int{0, 4, 9} {
		t.Run(fmt.Sprintf("remove node %d", gone+1), func(t *testing.T) {
			nine := New(slices.Delete(slices.Clone(all[:10]), gone, gone+1)...)
			moved, movedOthers := 0, 0
			for _, k := range keys {
				before, _ := ten.Pick(k, nil)
				after, _ := nine.Pick(k, nil)
				if before != after {
					moved++
					if before != all[gone] {
						movedOthers++
					}
				}
			}
			frac := float64(moved) / float64(len(keys))
			if frac > 0.11 {
				t.Errorf("removing one node of 10 moved %.2f %% of digests, want ≤ 11 %%", 100*frac)
			}
			if movedOthers != 0 {
				t.Errorf("%d digests of nodes still there moved", movedOthers)
			}
			t.Logf("moved %.2f %% of digests", 100*frac)
		})
	}
	t.Run("add an eleventh node", func(t *testing.T) {
		eleven := New(all...)
		moved := 0
		for _, k := range keys {
			before, _ := ten.Pick(k, nil)
			after, _ := eleven.Pick(k, nil)
			if before != after {
				moved++
				if after != all[10] {
					t.Fatalf("%s moved from %s to %s, not to the new node", k, before, after)
				}
			}
		}
		if frac := float64(moved) / float64(len(keys)); math.Abs(frac-1.0/11) > 0.05/11 {
			t.Errorf("the new node took %.2f %% of digests, want %.2f %% ± 5 %%", 100*frac, 100.0/11)
		}
	})
	t.Run("filtered like removed", func(t *testing.T) {
		down := all[3]
		nine := New(slices.Delete(slices.Clone(all[:10]), 3, 4)...)
		for _, k := range keys[:10_000] {
			a, _ := ten.Pick(k, func(n string) bool { return n != down })
			b, _ := nine.Pick(k, nil)
			if a != b {
				t.Fatalf("%s: a node filtered out gives %s, the node removed gives %s", k, a, b)
			}
		}
	})
}

func FuzzPick(f *testing.F) {
	f.Add("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "http://a", "http://b", "http://c", uint8(1))
	f.Add("", "", "", "", uint8(0))
	f.Add("k", "same", "same", "other", uint8(7))
	f.Fuzz(func(t *testing.T, key, a, b, c string, mask uint8) {
		s := New(a, b, c)
		rev := New(c, b, a)
		p1, ok1 := s.Pick(key, nil)
		p2, ok2 := rev.Pick(key, nil)
		if p1 != p2 || ok1 != ok2 || !ok1 {
			t.Fatalf("Pick depends on order: %q,%v vs %q,%v", p1, ok1, p2, ok2)
		}
		if !slices.Contains(s.Nodes(), p1) {
			t.Fatalf("Pick = %q, not a node of %v", p1, s.Nodes())
		}
		eligible := func(n string) bool {
			i := slices.Index(s.Nodes(), n)
			return mask&(1<<i) != 0
		}
		p, ok := s.Pick(key, eligible)
		if ok != slices.ContainsFunc(s.Nodes(), eligible) || ok && !eligible(p) {
			t.Fatalf("Pick with a filter = %q, %v", p, ok)
		}
		if ok {
			// The eligible node chosen is the first eligible in the rank.
			for _, n := range s.Rank(key) {
				if eligible(n) {
					if n != p {
						t.Fatalf("Pick = %q, first eligible in rank %q", p, n)
					}
					break
				}
			}
		}
		// Removing a node that was not chosen changes nothing.
		var rest []string
		for _, n := range s.Nodes() {
			if n != p1 && len(rest) == 0 {
				continue // drop the first node that is not the choice
			}
			rest = append(rest, n)
		}
		if q, _ := New(rest...).Pick(key, nil); q != p1 {
			t.Fatalf("removing a node that was not chosen moved %q from %q to %q", key, p1, q)
		}
	})
}

func BenchmarkPick(b *testing.B) {
	keys := digests(1024)
	for _, n := range []int{3, 10, 50} {
		s := New(nodes(n)...)
		b.Run(fmt.Sprintf("%d nodes", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				s.Pick(keys[i%len(keys)], nil)
				i++
			}
		})
	}
}
