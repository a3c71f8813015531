package health

import (
	"strings"
	"testing"
	"time"
)

func TestParseBeat(t *testing.T) {
	tests := []struct {
		name, body string
		ok         bool
		interval   time.Duration
	}{
		{"a beat", `{"node":"https://c1:5000","ready":true,"version":"v1","storeBytes":10,"storeBlobs":2,"intervalMs":1000}`, true, time.Second},
		{"unknown fields are ignored", `{"ready":true,"intervalMs":500,"future":{"x":1}}`, true, 500 * time.Millisecond},
		{"interval clamped up", `{"ready":true,"intervalMs":1}`, true, 100 * time.Millisecond},
		{"interval clamped down", `{"ready":true,"intervalMs":999999999}`, true, 30 * time.Second},
		{"no interval: one second", `{"ready":true}`, true, time.Second},
		{"not JSON", `ready`, false, 0},
		{"two values", `{"ready":true}{"ready":false}`, false, 0},
		{"negative store", `{"ready":true,"storeBytes":-1}`, false, 0},
		{"node too long", `{"node":"` + strings.Repeat("x", 3000) + `"}`, false, 0},
		{"too large", `{"reason":"` + strings.Repeat("x", 70<<10) + `"}`, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ParseBeat(strings.NewReader(tt.body))
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && b.Interval() != tt.interval {
				t.Fatalf("interval %s, want %s", b.Interval(), tt.interval)
			}
		})
	}
}

func FuzzParseBeat(f *testing.F) {
	f.Add(`{"node":"https://c1:5000","ready":true,"version":"v1","storeBytes":10,"intervalMs":1000}`)
	f.Add(`{"ready":false,"reason":"draining"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, body string) {
		b, err := ParseBeat(strings.NewReader(body))
		if err != nil {
			return
		}
		if iv := b.Interval(); iv < minBeatInterval || iv > maxBeatInterval {
			t.Fatalf("interval %s outside the limits", iv)
		}
		if len(b.Reason) > maxBeatText || len(b.Version) > maxBeatText || len(b.Node) > maxBeatNodeBytes || b.StoreBytes < 0 {
			t.Fatalf("limits not kept: %+v", b)
		}
	})
}
