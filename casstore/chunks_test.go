package casstore

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func TestNewChunkMap(t *testing.T) {
	tests := []struct {
		size, firstLen int64
		parallel       bool
		chunk          int64
		chunks         int
	}{
		{100, 30, true, 30, 4},                       // 30+30+30+10
		{90, 30, true, 30, 3},                        // exact
		{100, 100, true, 100, 1},                     // the source sent it all
		{100, -1, true, 100, 1},                      // a 200 to the range request
		{100, 30, false, 100, 1},                     // one stream
		{0, -1, true, 1, 1},                          // empty blob
		{-1, -1, true, math.MaxInt64, 1},             // size unknown
		{100, 0, true, 100, 1},                       // an empty first range is not a layout
		{1 << 30, 4 << 20, true, 4 << 20, 256},       // 1 GiB in 4 MiB chunks
		{1<<30 + 1, 4 << 20, true, 4 << 20, 256 + 1}, // one byte more
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d/%v", tt.size, tt.firstLen, tt.parallel), func(t *testing.T) {
			m := newChunkMap(tt.size, tt.firstLen, tt.parallel)
			if m.chunk != tt.chunk || m.chunks() != tt.chunks || m.next != 1 {
				t.Fatalf("chunk %d × %d, next %d; want %d × %d, next 1", m.chunk, m.chunks(), m.next, tt.chunk, tt.chunks)
			}
			var total int64
			for c := range m.chunks() {
				start, l := m.span(c)
				if start != total {
					t.Fatalf("chunk %d starts at %d, want %d", c, start, total)
				}
				if tt.size < 0 {
					if l != math.MaxInt64 {
						t.Fatalf("unknown size: chunk length %d", l)
					}
					return
				}
				total += l
			}
			if total != tt.size {
				t.Fatalf("chunks cover %d bytes, want %d", total, tt.size)
			}
		})
	}
}

func TestChunkMapTake(t *testing.T) {
	m := newChunkMap(100, 30, true)
	for _, want := range []int{1, 2, 3, -1, -1} { // chunk 0 belongs to the first stream
		if got := m.take(); got != want {
			t.Fatalf("take() = %d, want %d", got, want)
		}
	}
}

// TestChunkMapProgress: writes in any order move the contiguous prefix
// only across completed chunks.
func TestChunkMapProgress(t *testing.T) {
	m := newChunkMap(100, 30, true)
	steps := []struct {
		c      int
		n      int64
		contig int64
		first  int
	}{
		{1, 30, 0, 0},  // chunk 1 complete, chunk 0 empty
		{0, 10, 10, 0}, // the prefix is chunk 0's progress
		{3, 10, 10, 0}, // the last (short) chunk complete
		{0, 20, 60, 2}, // chunk 0 complete: the prefix runs through chunk 1
		{2, 29, 89, 2}, // one byte short
		{2, 1, 100, 4}, // all done: the prefix is the size
	}
	for i, s := range steps {
		m.add(s.c, s.n)
		if m.contig != s.contig || m.first != s.first {
			t.Fatalf("step %d (chunk %d +%d): contig %d first %d, want %d %d", i, s.c, s.n, m.contig, m.first, s.contig, s.first)
		}
	}
	if m.done(2) != 30 {
		t.Fatalf("done(2) = %d", m.done(2))
	}
}

func TestChunkMapSetEOF(t *testing.T) {
	m := newChunkMap(-1, -1, true)
	m.add(0, 70)
	if m.contig != 70 || m.readable(0, false) != 69 {
		t.Fatalf("before EOF: contig %d, readable %d", m.contig, m.readable(0, false))
	}
	m.setEOF(70)
	if m.size != 70 || m.chunk != 70 || m.contig != 70 || m.first != 1 {
		t.Fatalf("after EOF: %+v", m)
	}
	if _, l := m.span(0); l != 70 {
		t.Fatalf("span after EOF: %d", l)
	}
}

// TestChunkMapReadable: what a reader at an offset may read now, the last
// byte held back until the blob is verified.
func TestChunkMapReadable(t *testing.T) {
	m := newChunkMap(100, 30, true)
	m.add(0, 30)
	m.add(1, 12)
	m.add(3, 10)
	tests := []struct {
		off      int64
		verified bool
		want     int64
	}{
		{0, false, 30},  // the whole first chunk
		{29, false, 1},  // its last byte
		{30, false, 12}, // chunk 1's written front
		{42, false, 0},  // chunk 1 past its front
		{60, false, 0},  // chunk 2, nothing yet
		{90, false, 9},  // the last chunk: its last byte held back
		{99, false, 0},  // the blob's last byte, unverified
		{99, true, 1},   // verified
		{100, true, 0},  // past the end
		{1000, true, 0}, // far past the end
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%v", tt.off, tt.verified), func(t *testing.T) {
			if got := m.readable(tt.off, tt.verified); got != tt.want {
				t.Fatalf("readable(%d, %v) = %d, want %d", tt.off, tt.verified, got, tt.want)
			}
		})
	}
	if got := (&chunkMap{size: -1}).readable(0, false); got != 0 {
		t.Fatalf("no layout yet: readable %d", got)
	}
}

// TestChunkMapFar: a read waits for bytes about to land, and is served
// on its own when it starts well ahead of where the fill writes.
func TestChunkMapFar(t *testing.T) {
	m := newChunkMap(100, 30, true)
	m.take() // chunk 1 taken; chunk 2 is next
	m.add(1, 5)
	tests := []struct {
		off, limit int64
		far        bool
	}{
		{36, 10, false},  // taken chunk, 1 byte past its front (35)
		{46, 10, true},   // 11 bytes past it
		{65, 10, false},  // the next chunk, near its start
		{75, 10, true},   // the next chunk, 15 bytes in
		{95, 1000, true}, // a chunk after the next: always far
		{100, 0, false},  // past the last chunk
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.off, tt.limit), func(t *testing.T) {
			if got := m.far(tt.off, tt.limit); got != tt.far {
				t.Fatalf("far(%d, %d) = %v, want %v", tt.off, tt.limit, got, tt.far)
			}
		})
	}
	if (&chunkMap{size: -1}).far(0, 0) {
		t.Fatal("no layout yet: far")
	}
}

// TestChunkMapLead: the bytes a stream must still move before an offset
// lands, with the chunks handed out in order.
func TestChunkMapLead(t *testing.T) {
	m := newChunkMap(100, 10, true) // ten 10-byte chunks
	m.take()                        // chunk 1 taken; chunk 2 is next
	m.add(0, 10)                    // chunk 0 complete
	m.add(1, 4)                     // chunk 1 at 14
	tests := []struct {
		off     int64
		streams int
		want    int64
	}{
		{5, 2, 0},           // written
		{14, 2, 0},          // at the front of chunk 1
		{18, 2, 4},          // 4 past it
		{20, 2, 6},          // next chunk: chunk 1's 6 left, then its start
		{27, 2, 13},         // 6 + 7 into it
		{45, 2, 6 + 10 + 5}, // two chunks after the next, shared by 2 streams
		{100, 2, -1},        // outside
	}
	for _, tt := range tests {
		if got := m.lead(tt.off, tt.streams); got != tt.want {
			t.Errorf("lead(%d, %d) = %d, want %d", tt.off, tt.streams, got, tt.want)
		}
	}
}

// TestChunkMapFarAt: beyond the byte limit, a read gets its own request
// only when the fill, at its rate, will not reach it within reach.
func TestChunkMapFarAt(t *testing.T) {
	m := newChunkMap(100<<20, 4<<20, true) // 25 chunks of 4 MiB
	m.add(0, 1<<20)                        // the first stream is 1 MiB in
	reach := 200 * time.Millisecond
	tests := []struct {
		name string
		off  int64
		rate float64 // bytes/s over all streams
		far  bool
	}{
		{"near the front: waits", 2 << 20, 1 << 20, false},
		{"rate unknown, far by bytes", 8 << 20, 0, true},
		{"slow fill, 7 MiB ahead", 8 << 20, 1 << 20, true},
		{"fast fill reaches it within reach", 6 << 20, 100 << 20, false},
		{"fast fill, but 90 % of the blob away", 90 << 20, 100 << 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.farAt(tt.off, 1<<20, tt.rate, 1, reach); got != tt.far {
				t.Fatalf("farAt(%d, rate %.0f) = %v, want %v", tt.off, tt.rate, got, tt.far)
			}
		})
	}
}
