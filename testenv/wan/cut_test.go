package wan

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestCutAfter checks that a cut connection delivers exactly CutAfter bytes
// and then a reset, that CutOnce lets later connections pass, and that Stats
// counts it all exactly.
func TestCutAfter(t *testing.T) {
	const (
		size     = 1 << 20
		cutAfter = 123_457 // not a multiple of any buffer size
		header   = 8       // the request each client sends upstream
	)
	data := randomBytes(t, size)
	target := startServer(t, func(c *net.TCPConn) {
		var hdr [header]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		_, _ = c.Write(data[:binary.BigEndian.Uint64(hdr[:])])
	})

	for _, tc := range []struct {
		name string
		once bool
		// cut says which of three connections are cut; SetConfig runs
		// before the third.
		cut [3]bool
	}{
		{"every connection", false, [3]bool{true, true, true}},
		{"once", true, [3]bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{CutAfter: cutAfter, CutOnce: tc.once, Latency: 5 * time.Millisecond}
			l := startLink(t, target, cfg)
			var want Stats
			for i, cut := range tc.cut {
				if i == 2 {
					l.SetConfig(cfg)
				}
				got, err := fetch(t, l.Addr(), size)
				want.Conns++
				want.BytesUp += header
				if !cut {
					if err != nil || !bytes.Equal(got, data) {
						t.Fatalf("connection %d: got %d bytes, %v; want all %d", i, len(got), err, size)
					}
					want.BytesDown += size
					continue
				}
				want.BytesDown += cutAfter
				want.Cuts++
				if len(got) != cutAfter || !bytes.Equal(got, data[:cutAfter]) {
					t.Errorf("connection %d: got %d bytes, want the first %d", i, len(got), cutAfter)
				}
				if err == nil {
					t.Errorf("connection %d: clean end of stream after a cut", i)
				} else if runtime.GOOS == "linux" && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("connection %d: %v, want a connection reset", i, err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := l.Stats(); got != want {
				t.Errorf("Stats = %+v, want %+v", got, want)
			}
		})
	}
}

// TestCutAtLinkBytes checks that the link-wide cut breaks exactly one of
// several concurrent connections, once the link has carried more than the
// set number of bytes, that the others complete, and that SetConfig
// re-arms it.
func TestCutAtLinkBytes(t *testing.T) {
	const (
		size  = 256 << 10
		conns = 4
		limit = 3*size/2 + 12_345 // reached while all four are running; not a buffer multiple
	)
	data := randomBytes(t, size)
	target := startServer(t, func(c *net.TCPConn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		_, _ = c.Write(data[:binary.BigEndian.Uint64(hdr[:])])
	})
	cfg := Config{CutAtLinkBytes: limit, Latency: time.Millisecond, Bandwidth: 32 << 20}
	l := startLink(t, target, cfg)
	for round := 0; round < 2; round++ {
		l.SetConfig(cfg)
		l.ResetStats()
		type res struct {
			n   int
			err error
		}
		results := make(chan res, conns)
		for i := 0; i < conns; i++ {
			go func() {
				got, err := fetch(t, l.Addr(), size)
				if !bytes.Equal(got, data[:len(got)]) {
					err = errors.Join(err, errors.New("bytes differ"))
				}
				results <- res{len(got), err}
			}()
		}
		cut, whole := 0, 0
		for i := 0; i < conns; i++ {
			r := <-results
			switch {
			case r.err == nil && r.n == size:
				whole++
			case r.err != nil && r.n < size:
				cut++
			default:
				t.Errorf("round %d: a connection got %d bytes, %v", round, r.n, r.err)
			}
		}
		if cut != 1 || whole != conns-1 {
			t.Errorf("round %d: %d connections cut, %d whole; want 1 and %d", round, cut, whole, conns-1)
		}
		s := l.Stats()
		if s.Cuts != 1 {
			t.Errorf("round %d: Stats.Cuts = %d, want 1", round, s.Cuts)
		}
		// The cut connection stopped at the limit's byte; the others kept
		// going, so all together they carried the limit plus the rest of
		// the whole ones.
		if s.BytesDown <= limit || s.BytesDown >= conns*size {
			t.Errorf("round %d: %d bytes down, want between %d and %d", round, s.BytesDown, limit, conns*size)
		}
	}
}

// fetch asks the cut test's server for n bytes through addr and reads until
// the end of the stream or an error, which it returns (nil for a clean end).
func fetch(t *testing.T, addr string, n uint64) ([]byte, error) {
	t.Helper()
	c, err := dial(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], n)
	if _, err := c.Write(hdr[:]); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err = io.Copy(&buf, c)
	return buf.Bytes(), err
}

// TestCutUpAtLinkBytes checks the upload cut: the target receives exactly
// the set number of bytes of the one connection that carried them, the
// connection is reset, and a later connection passes.
func TestCutUpAtLinkBytes(t *testing.T) {
	const (
		size  = 1 << 20
		limit = 8 + 300_001 // the 8-byte header counts too
	)
	target, uploads := startTransferServer(t)
	l := startLink(t, target, Config{CutUpAtLinkBytes: limit, Latency: time.Millisecond})
	_, _ = doTransfer(t.Context(), l.Addr(), size, 0) // the client may or may not see the reset
	if got := <-uploads; got.bytes != limit-8 {
		t.Fatalf("target received %d bytes, want %d", got.bytes, limit-8)
	}
	if _, err := doTransfer(t.Context(), l.Addr(), size, 0); err != nil {
		t.Fatalf("second upload: %v", err)
	}
	if got := <-uploads; got.bytes != size {
		t.Fatalf("second upload: target received %d bytes, want %d", got.bytes, size)
	}
	if s := l.Stats(); s.Cuts != 1 || s.BytesUp != limit+8+size {
		t.Fatalf("Stats = %+v, want 1 cut and %d bytes up", s, limit+8+size)
	}
}
