// Command splitproxy is a test-only front for conformance runs against a
// read-only mirror: reads (GET, HEAD) go to the mirror, writes (POST, PUT,
// PATCH, DELETE) and upload-session requests go to the mirror's upstream
// registry. The OCI
// conformance suite can then push its fixtures to the upstream and test
// pulls, HEADs and ranges against the mirror in one run.
//
//	splitproxy --listen 127.0.0.1:7000 --read http://127.0.0.1:5001 --write http://127.0.0.1:5000
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7000", "listen address")
	read := flag.String("read", "", "base URL for GET and HEAD (the mirror)")
	write := flag.String("write", "", "base URL for every other method (the upstream)")
	flag.Parse()
	ru, err := url.Parse(*read)
	if err != nil || *read == "" {
		log.Fatalf("splitproxy: --read: %v", err)
	}
	wu, err := url.Parse(*write)
	if err != nil || *write == "" {
		log.Fatalf("splitproxy: --write: %v", err)
	}
	reader, writer := httputil.NewSingleHostReverseProxy(ru), httputil.NewSingleHostReverseProxy(wu)
	// Upload locations name the upstream's host; keep them on this proxy so
	// the client's follow-up PATCH/PUT come back here (and go upstream).
	writer.ModifyResponse = func(resp *http.Response) error {
		if loc := resp.Header.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err == nil && u.Host == wu.Host {
				u.Scheme, u.Host = "", ""
				resp.Header.Set("Location", u.String())
			}
		}
		return nil
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) && !strings.Contains(r.URL.Path, "/blobs/uploads") {
			reader.ServeHTTP(w, r)
			return
		}
		writer.ServeHTTP(w, r)
	})
	log.Fatal(http.ListenAndServe(*listen, h))
}
