package health

import (
	"testing"
	"time"
)

func TestTrackerTransitions(t *testing.T) {
	good := Result{OK: true, Class: ClassOK}
	refused := Result{Class: ClassRefused, Reason: "connection refused"}
	notReady := Result{Class: ClassNotReady, Reason: "draining"}
	timeout := Result{Class: ClassTimeout, Reason: "timeout"}
	type step struct {
		r       Result
		up      bool
		changed bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first good probe decides at once", []step{{good, true, true}, {good, true, false}}},
		{"first failure decides at once", []step{{timeout, false, true}}},
		{"refused takes it down at once", []step{{good, true, true}, {refused, false, true}}},
		{"not ready takes it down at once", []step{{good, true, true}, {notReady, false, true}}},
		{"a timeout alone does not", []step{{good, true, true}, {timeout, true, false}, {good, true, false}, {timeout, true, false}, {timeout, false, true}}},
		{"back only after three good in a row", []step{{good, true, true}, {refused, false, true}, {good, false, false}, {good, false, false}, {good, true, true}}},
		{"a flap restarts the count", []step{{good, true, true}, {refused, false, true}, {good, false, false}, {good, false, false}, {refused, false, false}, {good, false, false}, {good, false, false}, {good, true, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tr Tracker
			k := Key{Cache: "asia", Node: "http://n1"}
			for i, s := range tt.steps {
				up, changed, _ := tr.Observe(k, s.r)
				if up != s.up || changed != s.changed {
					t.Fatalf("step %d (%s): up=%v changed=%v, want %v %v", i, s.r.Class, up, changed, s.up, s.changed)
				}
			}
		})
	}
}

func TestTrackerCountsRedirectsToADownNode(t *testing.T) {
	var tr Tracker
	k := Key{Cache: "asia", Node: "http://n1"}
	tr.Observe(k, Result{OK: true, Class: ClassOK})
	tr.Redirected(k)
	tr.Observe(k, Result{OK: true, Class: ClassOK}) // a good probe: those were fine
	for range 4 {
		tr.Redirected(k)
	}
	if _, changed, n := tr.Observe(k, Result{Class: ClassRefused}); !changed || n != 4 {
		t.Fatalf("changed=%v redirects since the last good probe %d, want 4", changed, n)
	}
}

func TestBeatExpiry(t *testing.T) {
	at := time.Unix(1000, 0)
	b := &Beat{IntervalMillis: 1000, At: at}
	for _, tt := range []struct {
		after time.Duration
		want  bool
	}{{time.Second, false}, {2 * time.Second, false}, {2200 * time.Millisecond, false}, {2300 * time.Millisecond, true}} {
		if got := b.Expired(at.Add(tt.after)); got != tt.want {
			t.Errorf("%s after the beat: expired %v, want %v", tt.after, got, tt.want)
		}
	}
	if !(*Beat)(nil).Expired(at) {
		t.Error("no beat is not expired")
	}
}
