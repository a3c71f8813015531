package main

import (
	"os"
	"slices"
	"testing"
)

// TestRedirectCPUCountsTheOrigin: the redirect flow's CPU is the
// origin's and the cache's (the origin authorizes, signs and redirects
// every blob, and proxies every fill), while its peak RSS stays the
// cache's (the origin's is reported apart).
func TestRedirectCPUCountsTheOrigin(t *testing.T) {
	e := &env{log: os.Stderr}
	start := func(name string) *proc {
		p, err := e.startProc(name, "sleep", "60")
		if err != nil {
			t.Skipf("no sleep here: %v", err)
		}
		t.Cleanup(p.stop)
		return p
	}
	origin, cache := start("origin"), start("dtrcache-redirect")
	s := &redirectSys{origin: origin, cache: &procSys{p: cache}}
	op, cp := origin.cmd.Process.Pid, cache.cmd.Process.Pid

	got := cpuPIDs(s)
	if !slices.Contains(got, op) || !slices.Contains(got, cp) || len(got) != 2 {
		t.Errorf("CPU counted over %v, want the origin (%d) and the cache (%d)", got, op, cp)
	}
	if got := s.pids(); !slices.Equal(got, []int{cp}) {
		t.Errorf("RSS sampled over %v, want the cache (%d) alone", got, cp)
	}
	if got := originPIDs(s)(); !slices.Equal(got, []int{op}) {
		t.Errorf("the origin's processes: %v, want %d", got, op)
	}
	if r := readCPU(s); !r.hasOrigin || r.total < r.origin {
		t.Errorf("CPU reading %+v: want the origin's part within the total", r)
	}

	// A system without an origin counts its own processes alone.
	m := &procSys{p: cache}
	if got := cpuPIDs(m); !slices.Equal(got, []int{cp}) {
		t.Errorf("a mirror's CPU counted over %v, want %d", got, cp)
	}
	if r := readCPU(m); r.hasOrigin {
		t.Errorf("a mirror's CPU reading has an origin part: %+v", r)
	}
}
