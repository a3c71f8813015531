package wan

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestIntegrity sends 8 MiB of random bytes each way at once and checks
// that both arrive intact, and that each side's end of stream is passed on.
func TestIntegrity(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"transparent", Config{}},
		{"shaped", Config{Latency: 10 * time.Millisecond, PerConnBandwidth: 64 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const size = 8 << 20
			upData, downData := randomBytes(t, size), randomBytes(t, size)
			received := make(chan [32]byte, 1)
			target := startServer(t, func(c *net.TCPConn) {
				var wg sync.WaitGroup
				wg.Go(func() {
					if _, err := c.Write(downData); err == nil {
						_ = c.CloseWrite()
					}
				})
				h := sha256.New()
				_, _ = io.Copy(h, c) // ends only if the client's CloseWrite came through
				received <- [32]byte(h.Sum(nil))
				wg.Wait()
			})
			l := startLink(t, target, tc.cfg)
			before := runtime.NumGoroutine()

			c, err := dial(t.Context(), l.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			writeErr := make(chan error, 1)
			go func() {
				_, err := c.Write(upData)
				writeErr <- errors.Join(err, c.CloseWrite())
			}()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil {
				t.Fatalf("read after %d bytes: %v", n, err)
			}
			if err := <-writeErr; err != nil {
				t.Fatalf("write: %v", err)
			}
			if got, want := [32]byte(h.Sum(nil)), sha256.Sum256(downData); got != want {
				t.Errorf("downstream: got %d bytes with a different hash", n)
			}
			select {
			case got := <-received:
				if got != sha256.Sum256(upData) {
					t.Error("upstream: the target received different bytes")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the target never saw the end of the upstream")
			}
			// Both ends closed: the relay goroutines end without Close.
			_ = c.Close()
			waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
			if s := l.Stats(); s != (Stats{Conns: 1, BytesUp: size, BytesDown: size}) {
				t.Errorf("Stats = %+v", s)
			}
		})
	}
}

// TestLatency checks that Latency adds 2×Latency to a round trip, and that
// SetConfig changes it on an open connection.
func TestLatency(t *testing.T) {
	target := startServer(t, func(c *net.TCPConn) { _, _ = io.Copy(c, c) })
	l := startLink(t, target, Config{})
	c, err := dial(t.Context(), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	base := medianRTT(t, c, 9)
	const latency = 50 * time.Millisecond
	l.SetConfig(Config{Latency: latency})
	shaped := medianRTT(t, c, 9)

	added := shaped - base
	t.Logf("median RTT: %v without latency, %v with %v each way: added %v", base, shaped, latency, added)
	if want := 2 * latency; added < want*9/10 || added > want*11/10 {
		t.Errorf("added RTT %v, want %v ± 10%%", added, want)
	}
}

// medianRTT measures n one-byte round trips on c, after two to warm up.
func medianRTT(t *testing.T, c net.Conn, n int) time.Duration {
	t.Helper()
	var rtts []time.Duration
	buf := []byte{'x'}
	for i := range n + 2 {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("pong: %v", err)
		}
		if i >= 2 {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2]
}

// TestCloseEndsEverything opens idle and busy connections, closes the link,
// and checks that the clients are disconnected and no goroutine is left.
func TestCloseEndsEverything(t *testing.T) {
	target := startServer(t, func(c *net.TCPConn) { _, _ = io.Copy(c, c) })
	before := runtime.NumGoroutine()

	l, err := Listen(t.Context(), "127.0.0.1:0", target, Config{Latency: 20 * time.Millisecond, Bandwidth: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var clients []*net.TCPConn
	for i := range 4 {
		c, err := dial(t.Context(), l.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 { // busy: data queued in the delay line and buckets
			go func() { _ = writeN(c, 4<<20) }()
		}
		clients = append(clients, c)
	}
	waitFor(t, func() bool { return l.Stats().BytesUp > 0 })

	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Errorf("client %d still connected after Close", i)
		}
		_ = c.Close()
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := dial(t.Context(), l.Addr()); err == nil {
		t.Error("the link still accepts connections after Close")
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// TestContextCancelStopsLink checks that the link stops when the context
// passed to Listen is done.
func TestContextCancelStopsLink(t *testing.T) {
	target := startServer(t, func(c *net.TCPConn) { _, _ = io.Copy(c, c) })
	ctx, cancel := context.WithCancel(t.Context())
	l, err := Listen(ctx, "127.0.0.1:0", target, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := dial(t.Context(), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Error("client still connected after the context was cancelled")
	}
}

// TestDialFailureResetsClient checks that a client is disconnected when the
// target cannot be reached.
func TestDialFailureResetsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	_ = ln.Close() // nothing listens there now

	l := startLink(t, target, Config{})
	c, err := dial(t.Context(), l.Addr())
	if err == nil {
		// The reset may also arrive before the dial returns.
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read = %v, want the connection closed", err)
		}
	}
	if got := l.Stats().Conns; got != 1 {
		t.Errorf("Conns = %d, want 1", got)
	}
}

// TestResetStats checks that ResetStats zeroes the counters.
func TestResetStats(t *testing.T) {
	target := startServer(t, func(c *net.TCPConn) { _, _ = io.Copy(c, c) })
	l := startLink(t, target, Config{})
	c, err := dial(t.Context(), l.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("hello")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, %v", got, err)
	}
	waitFor(t, func() bool { return l.Stats() == Stats{Conns: 1, BytesUp: 5, BytesDown: 5} })
	l.ResetStats()
	if s := l.Stats(); s != (Stats{}) {
		t.Errorf("after ResetStats: %+v", s)
	}
}

// randomBytes returns n random bytes.
func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// waitFor polls cond until it holds, failing the test after 3 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
