package forward

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/policy"
	"github.com/dtrcache/dtrcache/proxy/origin"
	"github.com/dtrcache/dtrcache/proxy/serve"
	"github.com/dtrcache/dtrcache/testenv"
	"go.uber.org/zap/zaptest"
)

// startOrigin runs `dtrcache origin` (package origin) over TLS in front of
// the env's registry: the registry users actually run for per-repository
// permissions (distribution's htpasswd auth is all-or-nothing). alice may
// pull team-a/**, bob team-b/**, admin may push anything.
func startOrigin(e *env) string {
	t := e.t
	t.Helper()
	log := zaptest.NewLogger(t).Named("origin")
	users, err := policy.ParseHtpasswd(mustRead(t, htpasswdFile(t, "admin", "alice", "bob")))
	if err != nil {
		t.Fatal(err)
	}
	access, err := policy.NewAccess(policy.AccessConfig{
		Admins: []string{"admin"},
		Repositories: []policy.RepoRule{
			{Pattern: "team-a/**", Grants: []policy.Grant{{User: "alice", Actions: []policy.Action{policy.ActionPull}}}},
			{Pattern: "team-b/**", Grants: []policy.Grant{{User: "bob", Actions: []policy.Action{policy.ActionPull}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	keyDir := t.TempDir()
	k, _ := policy.GenerateKey(rand.Reader)
	if _, _, err := policy.WriteKeyPair(keyDir, k, time.Now()); err != nil {
		t.Fatal(err)
	}
	keys := &origin.KeyRing{Dir: keyDir, Issuer: "origin-test", TTL: time.Minute}
	if err := keys.Reload(); err != nil {
		t.Fatal(err)
	}
	db, err := origin.OpenDB(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	backend, _ := url.Parse(e.reg.URL)
	srv, err := origin.New(origin.Config{
		Backend: backend, BackendUser: "alice", BackendPassword: password, Transport: e.direct(),
		Users: users, Access: access, Keys: keys, DB: db, Logger: log,
		Prober: &origin.Prober{Client: http.DefaultClient, List: db.Caches, Logger: log},
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: serve.Instrument(log, nil, srv), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tls.NewListener(ln, e.pki.server(t, "registry.test", "127.0.0.1")))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRepositoryPermissions: with the origin as the intercepted registry,
// a user allowed on one repository cannot read another repository's
// cached blob, neither under that repository's name nor under their own.
func TestRepositoryPermissions(t *testing.T) {
	var originAddr string
	e := newEnv(t, envConfig{front: func(e *env) string { originAddr = startOrigin(e); return originAddr }})
	ctx := context.Background()
	push := func(ref string, seed uint64) []string {
		img, err := testenv.GenerateImage(testenv.ImageSpec{Layers: 2, LayerSize: 128 << 10, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.Push(ctx, originAddr+"/"+ref, img, testenv.RemoteOptions{Username: "admin", Password: password, Transport: e.direct()}); err != nil {
			t.Fatal(err)
		}
		return blobs(t, img)
	}
	a := push("team-a/app:1", 21)
	b := push("team-b/app:1", 22)

	// bob fills the store with team-b's blobs; alice pulls team-a.
	if _, err := pull(ctx, "registry.test/team-b/app:1", "bob", e.client()); err != nil {
		t.Fatal(err)
	}
	if _, err := pull(ctx, "registry.test/team-a/app:1", "alice", e.client()); err != nil {
		t.Fatal(err)
	}
	if _, err := pull(ctx, "registry.test/team-b/app:1", "alice", e.client()); err == nil {
		t.Fatal("alice pulled team-b")
	}
	bLayer := b[1]
	gets := e.reg.Counter.BlobGets(bLayer)
	tests := []struct {
		name, user, repo string
		want             int
	}{
		{"alice, team-b's blob under team-b", "alice", "team-b/app", http.StatusForbidden},
		{"alice, team-b's blob under team-a", "alice", "team-a/app", http.StatusNotFound},
		{"anonymous", "", "team-b/app", http.StatusUnauthorized},
		{"bob", "bob", "team-b/app", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				resp, body := e.get(method, "https://registry.test/v2/"+tt.repo+"/blobs/"+bLayer, tt.user, nil)
				if resp.StatusCode != tt.want {
					t.Fatalf("%s: %s, want %d", method, resp.Status, tt.want)
				}
				if method == http.MethodGet && tt.want == http.StatusOK && fmt.Sprintf("sha256:%x", sha256.Sum256(body)) != bLayer {
					t.Fatal("wrong content")
				}
			}
		})
	}
	// bob's reads came from the store.
	if n := e.reg.Counter.BlobGets(bLayer) - gets; n != 1 {
		// The one backend GET is the origin asking about team-a/<b's
		// digest> for alice (the backend answers 404); bob's read is a hit.
		t.Fatalf("%d backend GETs of team-b's layer after it was cached, want 1 (alice's 404 through team-a)", n)
	}
	resp, _ := e.get(http.MethodGet, "https://registry.test/v2/team-a/app/blobs/"+a[1], "alice", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice, team-a's blob: %s", resp.Status)
	}
}
