package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runProbe GETs a URL and exits 0 on a 2xx: the health check of the
// container images, which have no shell or curl.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe", "probe [--timeout 3s] URL", stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "request timeout")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache probe: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache probe: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(stderr, "dtrcache probe: %s: %s\n", fs.Arg(0), resp.Status)
		return 1
	}
	return 0
}
