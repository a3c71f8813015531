package casstore

import (
	"math"
	"time"
)

// chunkMap is the layout and progress of one fill: the blob cut into
// chunks, how many bytes of each have landed, which chunks workers have
// taken, and the contiguous prefix the hasher may read. It does no I/O and
// takes no lock (the fill guards it with its mutex), so its rules are
// table-tested on their own.
type chunkMap struct {
	size   int64   // -1 while unknown
	chunk  int64   // bytes per chunk; MaxInt64 while the size is unknown
	prog   []int64 // bytes written in each chunk
	next   int     // chunks [0,next) were taken by a worker
	first  int     // first chunk not yet complete
	contig int64   // length of the written contiguous prefix
	total  int64   // bytes written in all chunks
}

// newChunkMap lays a blob of size bytes (-1: unknown) out in chunks. When
// the fill is parallel and the source answered the first range request
// with firstLen < size bytes, the chunks are firstLen long; otherwise the
// blob is one chunk. Chunk 0 is taken: the first stream fetches it.
func newChunkMap(size, firstLen int64, parallel bool) chunkMap {
	chunk, n := int64(math.MaxInt64), 1
	if size >= 0 {
		chunk = max(size, 1)
		if parallel && firstLen > 0 && firstLen < size {
			chunk = firstLen // the source honoured the first range: fetch in chunks
			n = int((size + chunk - 1) / chunk)
		}
	}
	return chunkMap{size: size, chunk: chunk, prog: make([]int64, n), next: 1}
}

// chunks returns the number of chunks (0 before the layout is known).
func (m *chunkMap) chunks() int { return len(m.prog) }

// span returns where chunk c starts and its length (MaxInt64 while the
// size is unknown).
func (m *chunkMap) span(c int) (start, length int64) {
	start = int64(c) * m.chunk
	if m.size < 0 {
		return start, math.MaxInt64
	}
	return start, min(m.chunk, m.size-start)
}

// take hands out the next chunk, or -1 when all are taken.
func (m *chunkMap) take() int {
	if m.next >= len(m.prog) {
		return -1
	}
	m.next++
	return m.next - 1
}

// done returns the bytes of chunk c written so far.
func (m *chunkMap) done(c int) int64 { return m.prog[c] }

// add records n more bytes written in chunk c.
func (m *chunkMap) add(c int, n int64) {
	m.prog[c] += n
	m.total += n
	m.advance()
}

// setEOF fixes the size of a blob whose source did not announce it: the
// single chunk ends where the stream ended.
func (m *chunkMap) setEOF(size int64) {
	m.size = size
	m.chunk = max(size, 1)
	m.advance()
}

// advance recomputes the contiguous prefix.
func (m *chunkMap) advance() {
	for m.first < len(m.prog) {
		if _, l := m.span(m.first); m.prog[m.first] < l {
			break
		}
		m.first++
	}
	if m.first < len(m.prog) {
		m.contig = int64(m.first)*m.chunk + m.prog[m.first]
	} else {
		m.contig = m.size
	}
}

// readable returns how many bytes at off have landed: the written run of
// off's chunk from off on. Until the blob is verified its last byte is
// held back (a reader must not see a clean end of unverified bytes).
func (m *chunkMap) readable(off int64, verified bool) int64 {
	if len(m.prog) == 0 || m.size >= 0 && off >= m.size {
		return 0
	}
	c := int(off / m.chunk)
	if c >= len(m.prog) {
		return 0
	}
	front := int64(c)*m.chunk + m.prog[c]
	if off >= front {
		return 0
	}
	n := front - off
	if !verified {
		last := m.size - 1
		if m.size < 0 {
			last = front - 1
		}
		n = max(min(n, last-off), 0)
	}
	return n
}

// far reports whether a read at off (inside the blob, where nothing is
// readable yet) starts more than limit bytes ahead of where the fill
// writes: beyond
// the written front of a chunk being fetched, beyond the start of the
// next chunk to be taken, or in a chunk after that.
func (m *chunkMap) far(off, limit int64) bool {
	if len(m.prog) == 0 || m.size >= 0 && off >= m.size {
		return false
	}
	c := int(off / m.chunk)
	if c >= len(m.prog) {
		return false
	}
	cstart := int64(c) * m.chunk
	switch {
	case c < m.next:
		return off-(cstart+m.prog[c]) > limit
	case c == m.next:
		return off-cstart > limit
	}
	return true
}

// lead returns how many bytes a stream of the fill must still move before
// the byte at off lands, with streams workers sharing the chunks: the gap
// to the written front of off's chunk if a worker has it; otherwise the
// rest of the taken chunk that ends first (when its worker frees up), the
// chunks to be taken before off's shared by the streams, and off's place
// in its chunk. -1 when off is outside the layout.
func (m *chunkMap) lead(off int64, streams int) int64 {
	if len(m.prog) == 0 || m.size >= 0 && off >= m.size {
		return -1
	}
	c := int(off / m.chunk)
	if c >= len(m.prog) {
		return -1
	}
	cstart := int64(c) * m.chunk
	if c < m.next {
		return max(off-(cstart+m.prog[c]), 0)
	}
	free := int64(-1) // the least left of a chunk being fetched
	for i := m.first; i < m.next; i++ {
		if _, l := m.span(i); m.prog[i] < l && (free < 0 || l-m.prog[i] < free) {
			free = l - m.prog[i]
		}
	}
	return max(free, 0) + int64(c-m.next)*m.chunk/int64(max(streams, 1)) + off - cstart
}

// farAt decides whether a read at off, where nothing has landed yet, gets
// its own source request instead of waiting for the fill: only when it
// starts more than limit bytes ahead of where the fill writes (far) and,
// at the fill's rate (bytes per second over its streams; 0 while not
// measured yet), the fill will not write it within reach — about the time
// a source request of its own would take to answer. A read the fill is
// about to reach waits for it, so its bytes cross the WAN once.
func (m *chunkMap) farAt(off, limit int64, rate float64, streams int, reach time.Duration) bool {
	if !m.far(off, limit) {
		return false
	}
	if rate <= 0 {
		return true
	}
	perStream := rate / float64(max(streams, 1))
	return float64(m.lead(off, streams)) > perStream*reach.Seconds()
}
