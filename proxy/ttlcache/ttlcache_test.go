package ttlcache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestExpiry(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	c := New[string, int](10, clk.now)
	c.Set("a", 1, clk.now().Add(time.Minute))
	c.Set("b", 2, clk.now().Add(2*time.Minute))
	c.Set("past", 3, clk.now()) // expires now: not stored
	tests := []struct {
		after   time.Duration
		key     string
		want    int
		present bool
	}{
		{0, "a", 1, true},
		{0, "b", 2, true},
		{0, "past", 0, false},
		{59 * time.Second, "a", 1, true},
		{time.Second, "a", 0, false}, // exactly at its expiry
		{0, "b", 2, true},
		{time.Minute, "b", 0, false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i, tt.key), func(t *testing.T) {
			clk.advance(tt.after)
			if v, ok := c.Get(tt.key); v != tt.want || ok != tt.present {
				t.Fatalf("Get(%q) = %d, %v; want %d, %v", tt.key, v, ok, tt.want, tt.present)
			}
		})
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("Len = %d after every entry expired and was read", n)
	}
}

// TestBound: a full cache drops its expired entries to make room, and
// starts over when every entry is live; it never holds more than max.
func TestBound(t *testing.T) {
	clk := &clock{t: time.Unix(1e9, 0)}
	c := New[int, int](3, clk.now)
	c.Set(1, 1, clk.now().Add(time.Second))
	c.Set(2, 2, clk.now().Add(time.Hour))
	c.Set(3, 3, clk.now().Add(time.Hour))
	clk.advance(2 * time.Second)
	c.Set(4, 4, clk.now().Add(time.Hour)) // 1 has expired: dropped for 4
	for k, want := range map[int]bool{1: false, 2: true, 3: true, 4: true} {
		if _, ok := c.Get(k); ok != want {
			t.Fatalf("after a sweep, key %d present %v, want %v", k, ok, want)
		}
	}
	c.Set(2, 20, clk.now().Add(time.Hour)) // replacing a key needs no room
	if v, _ := c.Get(2); v != 20 || c.Len() != 3 {
		t.Fatalf("replace: %d, len %d", v, c.Len())
	}
	c.Set(5, 5, clk.now().Add(time.Hour)) // all live: start over
	if c.Len() != 1 {
		t.Fatalf("Len = %d, want 1 after starting over", c.Len())
	}
	if v, ok := c.Get(5); !ok || v != 5 {
		t.Fatal("the new entry was lost")
	}
}

func TestDeleteFunc(t *testing.T) {
	c := New[string, string](10, nil)
	exp := c.Now().Add(time.Hour)
	c.Set("r.test/a", "a", exp)
	c.Set("r.test/b", "b", exp)
	c.Set("s.test/a", "a", exp)
	c.DeleteFunc(func(k, v string) bool { return v == "a" })
	if _, ok := c.Get("r.test/b"); !ok || c.Len() != 1 {
		t.Fatalf("DeleteFunc left %d entries", c.Len())
	}
}

// TestConcurrent is for the race detector.
func TestConcurrent(t *testing.T) {
	c := New[int, int](100, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				c.Set(g*1000+i, i, c.Now().Add(time.Minute))
				c.Get(i)
				if i%100 == 0 {
					c.DeleteFunc(func(k, _ int) bool { return k%2 == 0 })
				}
			}
		})
	}
	wg.Wait()
	if n := c.Len(); n > 100 {
		t.Fatalf("Len = %d, above the bound", n)
	}
}
