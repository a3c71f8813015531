package wan

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// startServer runs a real TCP server on loopback that calls handle for every
// connection, and returns its address. The cleanup closes the listener and
// waits for the handlers.
func startServer(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// startLink starts a Link in front of target; the cleanup closes it.
func startLink(t *testing.T, target string, cfg Config) *Link {
	t.Helper()
	l, err := Listen(t.Context(), "127.0.0.1:0", target, cfg)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return l
}

// dial connects to addr over TCP.
func dial(ctx context.Context, addr string) (*net.TCPConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// writeN writes n zero bytes to w.
func writeN(w io.Writer, n int64) error {
	zeros := make([]byte, 64<<10)
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// upload is what a transfer server saw from one client.
type upload struct {
	bytes int64
	done  time.Time // when the client's end of stream arrived
}

// startTransferServer runs a server speaking a tiny protocol: the client
// sends an 8-byte big-endian count n, then any number of bytes, then closes
// its write half; the server meanwhile sends n bytes and closes. What the
// server received is reported on the returned channel.
func startTransferServer(t *testing.T) (string, <-chan upload) {
	t.Helper()
	uploads := make(chan upload, 64)
	addr := startServer(t, func(c *net.TCPConn) {
		var hdr [8]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int64(binary.BigEndian.Uint64(hdr[:]))
		var wg sync.WaitGroup
		wg.Go(func() {
			if writeN(c, n) == nil {
				_ = c.CloseWrite()
			}
		})
		got, _ := io.Copy(io.Discard, c)
		uploads <- upload{bytes: got, done: time.Now()}
		wg.Wait()
	})
	return addr, uploads
}

// transfer is one client's side of the transfer protocol.
type transfer struct {
	start    time.Time
	downDone time.Time
	down     int64
}

// doTransfer connects to addr, uploads up bytes and downloads down bytes at
// the same time, and returns when the download has ended.
func doTransfer(ctx context.Context, addr string, up, down int64) (transfer, error) {
	tr := transfer{start: time.Now()}
	c, err := dial(ctx, addr)
	if err != nil {
		return tr, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()

	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(down))
	if _, err := c.Write(hdr[:]); err != nil {
		return tr, err
	}
	upErr := make(chan error, 1)
	go func() {
		err := writeN(c, up)
		if err == nil {
			err = c.CloseWrite()
		}
		upErr <- err
	}()
	tr.down, err = io.Copy(io.Discard, c)
	tr.downDone = time.Now()
	return tr, errors.Join(err, <-upErr)
}
