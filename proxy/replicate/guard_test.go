package replicate

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dtrcache/dtrcache/proxy/netguard"
	"github.com/dtrcache/dtrcache/proxy/upstream"
	"github.com/dtrcache/dtrcache/testenv"
)

// TestGuardedTransport: a remote on loopback is refused (permanently,
// with a *netguard.DeniedError) unless the guard allows it; a remote that
// redirects to a refused address is refused at the redirect.
func TestGuardedTransport(t *testing.T) {
	src, dst := startDistribution(t, testenv.RegistryOptions{}), startDistribution(t, testenv.RegistryOptions{})
	pushImage(t, src, "remote/app:1", platformImage(t, 91, 1, 4096, "linux", "amd64"))
	client := func(t *testing.T, url string, allow []string) *upstream.Client {
		g, err := netguard.New(netguard.Config{AllowPrivate: allow})
		if err != nil {
			t.Fatal(err)
		}
		tr := GuardedTransport(nil, g)
		t.Cleanup(tr.CloseIdleConnections)
		c, err := upstream.New(upstream.Config{URLs: []string{url}, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	copyFrom := func(c *upstream.Client) error {
		_, err := Copy(context.Background(), Ref{Client: c, Repository: "remote/app", Tag: "1"}, Ref{Client: dst.client(t), Repository: "mirror/app", Tag: "1"}, Options{})
		return err
	}
	var denied *netguard.DeniedError
	err := copyFrom(client(t, src.URL, nil))
	if !errors.As(err, &denied) || denied.Reason != "loopback address" {
		t.Fatalf("loopback remote: %v, want a *netguard.DeniedError", err)
	}
	if transient, _ := IsTransient(err); transient {
		t.Fatal("a refused destination is transient")
	}
	if err := copyFrom(client(t, src.URL, []string{"127.0.0.1/32"})); err != nil {
		t.Fatalf("allowed loopback remote: %v", err)
	}

	// Allowed: the redirector's address. Not allowed: where it redirects
	// (the metadata-service range, here ::1 standing in for it).
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://[::1]:1"+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	err = copyFrom(client(t, redirector.URL, []string{"127.0.0.1/32"}))
	if !errors.As(err, &denied) || denied.Addr.String() != "::1" {
		t.Fatalf("redirect to a refused address: %v", err)
	}
}
