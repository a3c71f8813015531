package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestInitWritesPrivateFilesAndRefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	a, err := Init(dir, Options{Name: "test office CA"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CertFile, KeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, want 0700", fi.Mode().Perm())
	}
	c := a.Certificate()
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key %T, want ECDSA P-256", c.PublicKey)
	}
	if !c.IsCA || !c.MaxPathLenZero || c.Subject.CommonName != "test office CA" {
		t.Fatalf("CA certificate %+v", c.Subject)
	}
	before, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if _, err := Init(dir, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, KeyFile))
	if string(before) != string(after) {
		t.Fatal("the key was overwritten")
	}
	// Only the certificate left (the key deleted by mistake): still refused.
	os.Remove(filepath.Join(dir, KeyFile))
	if _, err := Init(dir, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("Init with a stray certificate: %v, want ErrExists", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestLoadRoundTripAndRefusesNonCA(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(a.CertPEM()) != string(b.CertPEM()) {
		t.Fatal("loaded certificate differs")
	}
	// A leaf certificate is not a CA.
	leaf, _ := a.Issue("registry.test", time.Now(), time.Hour)
	other := t.TempDir()
	writePEM(t, filepath.Join(other, CertFile), "CERTIFICATE", leaf.Certificate[0])
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	writePEM(t, filepath.Join(other, KeyFile), "PRIVATE KEY", keyDER)
	if _, err := Load(other); err == nil {
		t.Fatal("Load accepted a leaf certificate as CA")
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Fatal("Load of an empty directory succeeded")
	}
}

func TestIssuedLeavesVerify(t *testing.T) {
	a, err := Init(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.Certificate())
	now := time.Now()
	for _, host := range []string{"registry.test", "127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			c, err := a.Issue(host, now, 24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, CurrentTime: now}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: roots, CurrentTime: now}); err == nil {
				t.Fatal("leaf valid for another host")
			}
			if c.Leaf.IsCA {
				t.Fatal("leaf is a CA")
			}
		})
	}
	// A leaf never outlives its CA.
	c, _ := a.Issue("registry.test", now, 100*365*24*time.Hour)
	if c.Leaf.NotAfter.After(a.Certificate().NotAfter) {
		t.Fatalf("leaf expires %v after the CA %v", c.Leaf.NotAfter, a.Certificate().NotAfter)
	}
}

func TestLeafCacheIsBoundedLRU(t *testing.T) {
	a, err := Init(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	issued := map[string]int{}
	l := &Leaves{CA: a, Max: 2, OnIssue: func(h string, _ time.Duration) { issued[h]++ }}
	get := func(h string) any {
		t.Helper()
		c, err := l.Get(h)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	x1 := get("x.test")
	get("y.test")
	if get("x.test") != x1 { // x is now the most recently used
		t.Fatal("cached leaf not reused")
	}
	get("z.test") // evicts y, the least recently used
	if l.Len() != 2 {
		t.Fatalf("%d leaves cached, want 2", l.Len())
	}
	if get("x.test") != x1 {
		t.Fatal("x was evicted instead of y")
	}
	get("y.test")
	if issued["y.test"] != 2 || issued["x.test"] != 1 || issued["z.test"] != 1 {
		t.Fatalf("issued %v, want y twice (evicted), x and z once", issued)
	}
	for i := range 50 {
		get(string(rune('a'+i%26)) + ".test")
	}
	if l.Len() != 2 {
		t.Fatalf("%d leaves cached, want 2", l.Len())
	}
}

func TestLeafRenewedBeforeExpiry(t *testing.T) {
	a, err := Init(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l := &Leaves{CA: a, Validity: 8 * time.Hour, Now: func() time.Time { return now }}
	first, _ := l.Get("x.test")
	now = now.Add(5 * time.Hour) // 4 of 9 hours left (NotBefore is an hour back)
	if c, _ := l.Get("x.test"); c != first {
		t.Fatal("renewed too early")
	}
	now = now.Add(2 * time.Hour) // 2 of 9 hours left: less than a quarter
	c, _ := l.Get("x.test")
	if c == first || !c.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatal("leaf close to expiry not renewed")
	}
}

// BenchmarkIssue measures issuing one leaf (key generation and signing),
// what the first handshake for a new host costs.
func BenchmarkIssue(b *testing.B) {
	a, err := Init(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for b.Loop() {
		if _, err := a.Issue("registry.test", now, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		t.Fatal(err)
	}
}
