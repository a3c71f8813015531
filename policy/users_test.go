package policy

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// testUsers parses an htpasswd file of user:password pairs hashed at the
// lowest cost, and counts bcrypt comparisons.
func testUsers(t *testing.T, pairs ...string) (*Users, *compareCounter) {
	t.Helper()
	var lines []string
	for i := 0; i < len(pairs); i += 2 {
		h, err := HashPassword(pairs[i+1], bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, pairs[i]+":"+h)
	}
	u, err := ParseHtpasswd([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	cc := &compareCounter{}
	u.compare = cc.compare
	return u, cc
}

type compareCounter struct {
	mu sync.Mutex
	n  int
}

func (c *compareCounter) compare(hash, password []byte) error {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return bcrypt.CompareHashAndPassword(hash, password)
}

func (c *compareCounter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func TestAuthenticate(t *testing.T) {
	u, cc := testUsers(t, "alice", "s3cret", "bob", "hunter2", "carol", "")
	c := newClock(t0)
	u.Now = c.Now
	tests := []struct {
		name      string
		advance   time.Duration
		user, pw  string
		wantErr   bool
		wantCalls int // bcrypt comparisons so far
	}{
		{name: "correct", user: "alice", pw: "s3cret", wantCalls: 1},
		{name: "cache hit", user: "alice", pw: "s3cret", wantCalls: 1},
		{name: "cache hit later", advance: 4 * time.Minute, user: "alice", pw: "s3cret", wantCalls: 1},
		{name: "wrong password", user: "alice", pw: "s3cret ", wantErr: true, wantCalls: 2},
		{name: "wrong password not cached", user: "alice", pw: "s3cret ", wantErr: true, wantCalls: 3},
		{name: "empty password", user: "alice", pw: "", wantErr: true, wantCalls: 4},
		{name: "cache expired", advance: time.Minute, user: "alice", pw: "s3cret", wantCalls: 5},
		{name: "other user", user: "bob", pw: "hunter2", wantCalls: 6},
		{name: "alice's password for bob", user: "bob", pw: "s3cret", wantErr: true, wantCalls: 7},
		{name: "unknown user still runs bcrypt", user: "mallory", pw: "s3cret", wantErr: true, wantCalls: 8},
		{name: "anonymous", user: "", pw: "", wantErr: true, wantCalls: 9},
		{name: "user name case matters", user: "Alice", pw: "s3cret", wantErr: true, wantCalls: 10},
		{name: "user with an empty password", user: "carol", pw: "", wantCalls: 11},
		{name: "NUL does not shift user into password", user: "alice\x00s3", pw: "cret", wantErr: true, wantCalls: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Advance(tt.advance)
			err := u.Authenticate(tt.user, tt.pw)
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("err = %v, want ErrBadCredentials", err)
			}
			if n := cc.Count(); n != tt.wantCalls {
				t.Fatalf("%d bcrypt comparisons, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestAuthenticateUnknownUserSameError(t *testing.T) {
	u, _ := testUsers(t, "alice", "s3cret")
	errWrong := u.Authenticate("alice", "nope")
	errUnknown := u.Authenticate("bob", "nope")
	msg := func(err error, user string) string { return strings.Replace(err.Error(), user, "USER", 1) }
	if msg(errWrong, "alice") != msg(errUnknown, "bob") {
		t.Fatalf("errors differ: %q vs %q", errWrong, errUnknown)
	}
}

func TestAuthenticateCacheDisabled(t *testing.T) {
	u, cc := testUsers(t, "alice", "s3cret")
	u.CacheTTL = -1
	for range 3 {
		if err := u.Authenticate("alice", "s3cret"); err != nil {
			t.Fatal(err)
		}
	}
	if n := cc.Count(); n != 3 {
		t.Fatalf("%d bcrypt comparisons, want 3", n)
	}
}

func TestAuthenticateCacheIsBounded(t *testing.T) {
	u, _ := testUsers(t, "alice", "s3cret")
	for i := range maxCacheEntries + 500 {
		u.remember(u.verificationKey("alice", fmt.Sprint(i)), t0)
	}
	if n := len(u.cache); n > maxCacheEntries {
		t.Fatalf("cache holds %d entries, limit %d", n, maxCacheEntries)
	}
	// Expired entries go first.
	for i := 0; len(u.cache) < maxCacheEntries; i++ {
		u.remember(u.verificationKey("alice", fmt.Sprint("refill", i)), t0)
	}
	u.remember(u.verificationKey("alice", "late"), t0.Add(time.Hour))
	if n := len(u.cache); n != 1 {
		t.Fatalf("cache holds %d entries after expiry, want 1", n)
	}
}

func TestAuthenticateConcurrent(t *testing.T) {
	u, _ := testUsers(t, "alice", "s3cret", "bob", "hunter2")
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			user, pw := "alice", "s3cret"
			if i%2 == 1 {
				user, pw = "bob", "hunter2"
			}
			if err := u.Authenticate(user, pw); err != nil {
				t.Error(err)
			}
			if err := u.Authenticate("nobody", pw); err == nil {
				t.Error("unknown user authenticated")
			}
		})
	}
	wg.Wait()
}

func TestParseHtpasswd(t *testing.T) {
	h, err := HashPassword("pw", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	y := "$2y$" + h[4:] // as Apache's htpasswd -B writes it
	b := "$2b$" + h[4:]
	tests := []struct {
		name      string
		in        string
		wantUsers []string
		wantErr   string
	}{
		{name: "empty file", in: ""},
		{name: "one user", in: "alice:" + y + "\n", wantUsers: []string{"alice"}},
		{name: "all bcrypt prefixes", in: "a:" + y + "\nb:" + h + "\nc:" + b, wantUsers: []string{"a", "b", "c"}},
		{name: "comments, blank lines, CRLF, indentation", in: "# users\r\n\r\n  alice:" + y + "  \r\n\t# bob left\nbob:" + h + "\r\n", wantUsers: []string{"alice", "bob"}},
		{name: "byte order mark", in: "\ufeffalice:" + y, wantUsers: []string{"alice"}},
		{name: "no colon", in: "alice:" + y + "\nbob", wantErr: "line 2: want user:hash"},
		{name: "empty user", in: ":" + y, wantErr: "line 1: empty user name"},
		{name: "duplicate user", in: "alice:" + y + "\n#\nalice:" + h, wantErr: `line 3: user "alice" appears twice`},
		{name: "apr1 MD5", in: "\n\nalice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", wantErr: "line 3: user \"alice\": hash is not bcrypt"},
		{name: "SHA1", in: "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", wantErr: "line 1: user \"alice\": hash is not bcrypt"},
		{name: "crypt", in: "alice:rl0P3dVV8kx3E", wantErr: "hash is not bcrypt"},
		{name: "plain text", in: "alice:secret", wantErr: "hash is not bcrypt"},
		{name: "truncated bcrypt", in: "alice:" + y[:50], wantErr: "line 1: user \"alice\": bcrypt hash has 50 characters"},
		{name: "bcrypt with an extra field", in: "alice:" + y + ":extra", wantErr: "line 1"},
		{name: "bcrypt cost too high", in: "alice:$2y$31$" + y[7:], wantErr: "cost 31"},
		{name: "bcrypt cost unparsable", in: "alice:$2y$xx$" + y[7:], wantErr: "bad bcrypt hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := ParseHtpasswd([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range tt.wantUsers {
				if !u.Has(name) {
					t.Errorf("user %q missing", name)
				}
			}
			if len(u.hashes) != len(tt.wantUsers) {
				t.Errorf("%d users, want %d", len(u.hashes), len(tt.wantUsers))
			}
		})
	}
}

func TestAuthenticateApachePrefix(t *testing.T) {
	// Apache's htpasswd -B writes $2y$, Go's bcrypt $2a$; the hashes are
	// otherwise the same.
	h, err := HashPassword("s3cret", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParseHtpasswd([]byte("alice:$2y$" + h[4:] + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Authenticate("alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
}

func TestHashPassword(t *testing.T) {
	tests := []struct {
		name    string
		pw      string
		cost    int
		wantErr bool
	}{
		{name: "min cost", pw: "s3cret", cost: bcrypt.MinCost},
		{name: "empty", pw: "", cost: bcrypt.MinCost},
		{name: "72 bytes", pw: strings.Repeat("x", 72), cost: bcrypt.MinCost},
		{name: "73 bytes", pw: strings.Repeat("x", 73), cost: bcrypt.MinCost, wantErr: true},
		{name: "cost too high", pw: "x", cost: bcrypt.MaxCost + 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := HashPassword(tt.pw, tt.cost)
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(h), []byte(tt.pw)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
