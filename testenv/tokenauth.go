package testenv

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"

	"github.com/dtrcache/dtrcache/policy"
)

// TokenServerOptions configure a token service.
type TokenServerOptions struct {
	// Dir receives the JWKS file the registry trusts.
	Dir string
	// Users maps user names to passwords. Anonymous requests get tokens
	// with only what Access grants everyone (public repositories).
	Users map[string]string
	// Access decides which actions a user gets on a repository (pull,
	// push; admin implies both). nil grants every authenticated user
	// whatever it asks for.
	Access *policy.Access
	// TTL is the tokens' lifetime; 0 means 5 minutes.
	TTL time.Duration
}

// TokenServer is a registry token service speaking the Docker token
// protocol (`GET /token?service=…&scope=…` with Basic credentials → a JWT
// granting the scopes' actions that Access allows), signed with an Ed25519
// key whose JWKS the registry is configured to trust. It lets tests put
// Bearer-token auth in front of a real distribution registry (see
// RegistryOptions.Token).
type TokenServer struct {
	// URL is the base URL; Realm the token endpoint.
	URL, Realm string
	// Service and Issuer are the values the registry checks (aud, iss).
	Service, Issuer string
	// JWKS is the path of the public key set.
	JWKS string

	key  *policy.PrivateKey
	opt  TokenServerOptions
	srv  *http.Server
	mu   sync.Mutex
	reqs []string // scopes asked for, one entry per token request
}

// StartTokenServer starts a token service on 127.0.0.1; Close stops it.
func StartTokenServer(opt TokenServerOptions) (*TokenServer, error) {
	if opt.TTL == 0 {
		opt.TTL = 5 * time.Minute
	}
	key, err := policy.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	jwks, err := policy.MarshalJWKS([]policy.PublicKey{key.Public()})
	if err != nil {
		return nil, err
	}
	ts := &TokenServer{Service: "dtrcache-test-registry", Issuer: "dtrcache-test-token-server", key: key, opt: opt,
		JWKS: filepath.Join(opt.Dir, "token-jwks.json")}
	if err := os.WriteFile(ts.JWKS, jwks, 0o600); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testenv: token server listen: %w", err)
	}
	ts.URL = "http://" + ln.Addr().String()
	// The realm names localhost, not the address: clients such as
	// go-containerregistry refuse realms that are private IP literals.
	ts.Realm = "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/token"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /token", ts.serveToken)
	ts.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := ts.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logrus.Errorf("testenv token server: %v", err)
		}
	}()
	return ts, nil
}

// Requests returns the scope parameters of every token request so far
// (the scopes of one request joined by spaces).
func (ts *TokenServer) Requests() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.reqs)
}

// Close stops the server.
func (ts *TokenServer) Close() error { return ts.srv.Close() }

type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func (ts *TokenServer) serveToken(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ts.mu.Lock()
	ts.reqs = append(ts.reqs, strings.Join(q["scope"], " "))
	ts.mu.Unlock()
	if q.Get("service") != ts.Service {
		http.Error(w, `{"errors":[{"code":"DENIED","message":"unknown service"}]}`, http.StatusBadRequest)
		return
	}
	user, pass, hasAuth := r.BasicAuth()
	if hasAuth {
		want, ok := ts.opt.Users[user]
		if !ok || subtle.ConstantTimeCompare([]byte(want), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
	} else {
		user = ""
	}
	var access []resourceActions
	for _, scope := range q["scope"] {
		parts := strings.Split(scope, ":")
		if len(parts) != 3 || parts[0] != "repository" {
			continue // registry:catalog:* and the like: not granted
		}
		var granted []string
		for _, a := range strings.Split(parts[2], ",") {
			if ts.allowed(user, parts[1], a) {
				granted = append(granted, a)
			}
		}
		access = append(access, resourceActions{Type: "repository", Name: parts[1], Actions: granted})
	}
	now := time.Now()
	var jti [16]byte
	rand.Read(jti[:])
	claims := jwt.MapClaims{
		"iss": ts.Issuer, "sub": user, "aud": ts.Service,
		"exp": now.Add(ts.opt.TTL).Unix(), "nbf": now.Add(-time.Second).Unix(), "iat": now.Unix(),
		"jti": hex.EncodeToString(jti[:]), "access": access,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = ts.key.Kid
	signed, err := tok.SignedString(ts.key.Key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": signed, "expires_in": int(ts.opt.TTL / time.Second), "issued_at": now.UTC().Format(time.RFC3339)})
}

// allowed decides one action for user on repo.
func (ts *TokenServer) allowed(user, repo, action string) bool {
	if ts.opt.Access == nil {
		return user != ""
	}
	switch action {
	case "pull", "push":
		return ts.opt.Access.Decide(user, repo, policy.Action(action)).Allowed
	case "delete", "*":
		return ts.opt.Access.Decide(user, repo, policy.ActionAdmin).Allowed
	}
	return false
}
