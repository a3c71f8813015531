// Command registry runs distribution v3 (the CNCF registry server) with the
// settings the test environment needs: the backend of the demo, the
// compose stack and the shell tests where the Debian docker-registry (an
// older release) lacks OCI 1.1 features.
//
//	registry --addr 127.0.0.1:5000 [--dir /data] [--htpasswd users] [--tls-cert c --tls-key k]
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/dtrcache/dtrcache/testenv"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5000", "listen address")
	dir := flag.String("dir", "", "storage directory (empty: in memory)")
	htpasswd := flag.String("htpasswd", "", "htpasswd file (bcrypt): require Basic auth")
	cert := flag.String("tls-cert", "", "TLS certificate (PEM)")
	key := flag.String("tls-key", "", "TLS key (PEM)")
	flag.Parse()
	opt := testenv.RegistryOptions{Addr: *addr, Dir: *dir, Htpasswd: *htpasswd}
	if *cert != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			fmt.Fprintln(os.Stderr, "registry:", err)
			os.Exit(2)
		}
		opt.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := testenv.StartRegistry(ctx, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
	fmt.Println("registry listening on", r.URL)
	<-ctx.Done()
	r.Close()
}
