package forward

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestIdleConnectionsClosed: tunnels and intercepted connections that
// move nothing for IdleTimeout are closed by the proxy.
func TestIdleConnectionsClosed(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, envConfig{options: func(o *Options) { o.IdleTimeout = idle }})

	t.Run("tunnel", func(t *testing.T) {
		tc := e.connectTLS(t, "tunnel.test:443", &tls.Config{RootCAs: e.pki.pool, ServerName: "tunnel.test"})
		defer tc.Close()
		start := time.Now()
		if _, err := tc.Read(make([]byte, 1)); err == nil {
			t.Fatal("read data from an idle tunnel")
		}
		// The registry behind it would wait 10 s for a request.
		if d := time.Since(start); d < idle || d > 5*time.Second {
			t.Fatalf("idle tunnel closed after %v, want about %v", d, idle)
		}
	})
	t.Run("intercepted", func(t *testing.T) {
		tc := e.connectTLS(t, "registry.test:443", &tls.Config{RootCAs: e.officeCA, ServerName: "registry.test"})
		defer tc.Close()
		fmt.Fprintf(tc, "GET /v2/ HTTP/1.1\r\nHost: registry.test\r\n\r\n")
		br := bufio.NewReader(tc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("GET /v2/: %s", resp.Status)
		}
		start := time.Now()
		if _, err := br.ReadByte(); err == nil {
			t.Fatal("read data from an idle connection")
		}
		if d := time.Since(start); d < idle || d > 5*time.Second {
			t.Fatalf("idle keep-alive connection closed after %v, want about %v", d, idle)
		}
	})
}
