package casstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
)

// fileSender is a TCP connection whose ReadFrom records what it was handed
// (sendfile(2) from a file, or anything else), as a served client's
// connection.
type fileSender struct {
	*net.TCPConn
	mu   sync.Mutex
	srcs map[string]int
}

func (c *fileSender) ReadFrom(r io.Reader) (int64, error) {
	kind := fmt.Sprintf("%T", r)
	if lr, ok := r.(*io.LimitedReader); ok {
		kind = fmt.Sprintf("limited %T", lr.R)
	}
	c.mu.Lock()
	c.srcs[kind]++
	c.mu.Unlock()
	return c.TCPConn.ReadFrom(r)
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// TestSectionSendsLandedBytesFromTheFile: a section of a running fill
// written to a connection that can send a file (io.ReaderFrom) hands it
// the fill's file for each run of landed bytes, and the client receives
// every byte of the section exactly once; a fill that fails verification
// still cuts the client's copy short of its last byte; a fill whose disk
// fails mid-way has the section finish from the source. Without
// ReadFrom the section copies through its buffer, with the same bytes.
func TestSectionSendsLandedBytesFromTheFile(t *testing.T) {
	data, d := randomBlob(t, 3<<20+17)
	size := int64(len(data))
	cases := []struct {
		name     string
		off, n   int64
		corrupt  bool
		diskFull bool
		parallel int
	}{
		{name: "whole blob", off: 0, n: -1},
		{name: "whole blob, parallel chunks", off: 0, n: -1, parallel: 4},
		{name: "range across the fill's front", off: 1<<20 - 3, n: 2 << 20},
		{name: "last byte", off: size - 1, n: 1},
		{name: "corrupt blob", off: 0, n: -1, corrupt: true},
		{name: "disk full mid-fill", off: 0, n: -1, diskFull: true},
	}
	for _, tc := range cases {
		for _, sendfile := range []bool{true, false} {
			name := tc.name + map[bool]string{true: ", ReadFrom", false: ", no ReadFrom"}[sendfile]
			t.Run(name, func(t *testing.T) {
				var opt Options
				if tc.diskFull {
					opt.createTemp = func(dir string) (fillFile, error) {
						f, err := os.CreateTemp(dir, "fill-*")
						if err != nil {
							return nil, err
						}
						ff := &faultyFile{File: f, err: syscall.ENOSPC}
						ff.budget.Store(1536 << 10)
						return ff, nil
					}
				}
				s := newTestStore(t, opt)
				src := newTestSource(data)
				if tc.corrupt {
					src.corruptAt = 2 << 20
				}
				src.gate, src.gateAt = make(chan struct{}), 1<<20 // the copy starts mid-fill
				b, _, err := s.Fill(context.Background(), d, src, FillOptions{Parallel: max(tc.parallel, 1), ChunkSize: 512 << 10})
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				server, client := tcpPair(t)
				conn := &fileSender{TCPConn: server, srcs: map[string]int{}}
				var w io.Writer = conn
				if !sendfile {
					w = onlyWriter{conn}
				}
				received := make(chan []byte, 1)
				go func() {
					got, _ := io.ReadAll(client)
					received <- got
				}()
				sec := b.Section(tc.off, tc.n)
				wt, ok := sec.(io.WriterTo)
				if !ok {
					t.Fatalf("section of a running fill is a %T, not an io.WriterTo", sec)
				}
				done := make(chan struct{})
				var written int64
				var werr error
				go func() {
					defer close(done)
					written, werr = wt.WriteTo(w)
				}()
				close(src.gate)
				<-done
				sec.Close()
				server.CloseWrite()
				got := <-received

				end := size
				if tc.n >= 0 {
					end = tc.off + tc.n
				}
				want := data[tc.off:end]
				if tc.corrupt {
					if !errors.Is(werr, ErrDigestMismatch) {
						t.Fatalf("WriteTo of a corrupt blob = %v, want ErrDigestMismatch", werr)
					}
					if int64(len(got)) >= end-tc.off || written != int64(len(got)) {
						t.Fatalf("client got %d bytes (WriteTo says %d) of a corrupt blob of %d: want it cut", len(got), written, end-tc.off)
					}
					return
				}
				if werr != nil || written != int64(len(want)) || !bytes.Equal(got, want) {
					t.Fatalf("WriteTo = %d, %v; client got %d bytes (equal: %v); want %d bytes [%d, %d)",
						written, werr, len(got), bytes.Equal(got, want), len(want), tc.off, end)
				}
				conn.mu.Lock()
				defer conn.mu.Unlock()
				if !sendfile {
					if len(conn.srcs) != 0 {
						t.Fatalf("ReadFrom called through a writer without it: %v", conn.srcs)
					}
					return
				}
				for kind := range conn.srcs {
					if kind != "limited *os.File" {
						t.Fatalf("ReadFrom handed %s (all: %v), want only the fill's file", kind, conn.srcs)
					}
				}
				if conn.srcs["limited *os.File"] == 0 {
					t.Fatalf("the connection was never handed the file: %v", conn.srcs)
				}
			})
		}
	}
}
