// Command wan runs the WAN emulator (testenv/wan) as a program, between
// the office and the origin in the compose stack and the benchmarks:
//
//	wan --listen 0.0.0.0:8443 --target origin:5443 --latency 90ms --bandwidth 200Mbit [--stats 0.0.0.0:9000]
//
// GET /stats on the stats address returns the link's counters as JSON,
// POST /reset zeroes them, GET /healthz answers 200.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dtrcache/dtrcache/testenv/wan"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address the office side connects to")
	target := flag.String("target", "", "origin side host:port")
	latency := flag.Duration("latency", 90*time.Millisecond, "one-way delay, each direction")
	bandwidth := flag.String("bandwidth", "200Mbit", "bandwidth per direction shared by all connections (0: unlimited)")
	perConn := flag.String("per-conn-bandwidth", "0", "bandwidth cap of each connection (0: none)")
	cutAfter := flag.Int64("cut-after", 0, "cut each connection after this many bytes downstream (0: never)")
	stats := flag.String("stats", "", "address for /stats, /reset and /healthz (empty: none)")
	flag.Parse()
	if *target == "" {
		fail(fmt.Errorf("--target is required"))
	}
	bw, err := wan.ParseBandwidth(*bandwidth)
	if err != nil {
		fail(err)
	}
	pc, err := wan.ParseBandwidth(*perConn)
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	link, err := wan.Listen(ctx, *listen, *target, wan.Config{Latency: *latency, Bandwidth: bw, PerConnBandwidth: pc, CutAfter: *cutAfter})
	if err != nil {
		fail(err)
	}
	defer link.Close()
	fmt.Printf("wan: %s -> %s, %s each way, %d B/s shared, %d B/s per connection\n", link.Addr(), *target, *latency, bw, pc)
	if *stats != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(link.Stats())
		})
		mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) { link.ResetStats() })
		srv := &http.Server{Addr: *stats, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.ListenAndServe()
		defer srv.Close()
	}
	<-ctx.Done()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wan:", err)
	os.Exit(2)
}
