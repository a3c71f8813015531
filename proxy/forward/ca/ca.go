// Package ca is the office certificate authority of the forward proxy: it
// creates the CA (an ECDSA P-256 key and a self-signed certificate), loads
// it, issues short-lived leaf certificates for the registry hosts the proxy
// intercepts, and keeps those leaves in a bounded LRU cache (Leaves).
//
// A CA directory holds two files, both mode 0600: CertFile (the PEM
// certificate that clients must trust) and KeyFile (the PKCS #8 private
// key). Init never overwrites them. Load accepts any key tls.LoadX509KeyPair
// accepts, so an operator may bring a CA made with openssl.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The files of a CA directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// ErrExists means Init found a CA (or part of one) in the directory.
var ErrExists = errors.New("ca: the directory already holds a CA")

// Authority is a loaded CA. It is safe for concurrent use.
type Authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

// Options tune Init. The zero value is a CA named "dtrcache office CA"
// valid for ten years from now.
type Options struct {
	// Name is the certificate's common name.
	Name string
	// Validity is how long the CA certificate is valid. 0 means ten years.
	Validity time.Duration
	// Now is the start of validity. Zero means time.Now().
	Now time.Time
	// Rand is the randomness source. nil means crypto/rand.
	Rand io.Reader
}

// Init creates a new CA in dir (made with mode 0700 if missing) and
// returns it. Both files are written with mode 0600. It returns ErrExists
// if either file is already there, and never overwrites anything.
func Init(dir string, o Options) (*Authority, error) {
	if o.Name == "" {
		o.Name = "dtrcache office CA"
	}
	if o.Validity == 0 {
		o.Validity = 10 * 365 * 24 * time.Hour
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrExists, p)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), o.Rand)
	if err != nil {
		return nil, fmt.Errorf("ca: generate key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	ski := sha1.Sum(pub) // RFC 5280 §4.2.1.2 method (1); an identifier, not a security property
	tmpl := &x509.Certificate{
		SerialNumber:          serial(o.Rand),
		Subject:               pkix.Name{CommonName: o.Name, Organization: []string{"dtrcache"}},
		NotBefore:             o.Now.Add(-time.Hour),
		NotAfter:              o.Now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only
		SubjectKeyId:          ski[:],
	}
	der, err := x509.CreateCertificate(o.Rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return nil, err
	}
	if err := writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		os.Remove(keyPath)
		return nil, err
	}
	return Load(dir)
}

// Load reads the CA in dir.
func Load(dir string) (*Authority, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("ca: load %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("ca: %s: %w", certPath, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: %s is not a CA certificate (basic constraints CA and key usage certSign are required)", certPath)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ca: %s: unsupported key type %T", keyPath, pair.PrivateKey)
	}
	return &Authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}, nil
}

// Certificate returns the CA certificate.
func (a *Authority) Certificate() *x509.Certificate { return a.cert }

// CertPEM returns the CA certificate in PEM, the file clients must trust.
func (a *Authority) CertPEM() []byte { return append([]byte(nil), a.pem...) }

// Issue signs a new leaf certificate for host (a DNS name or an IP
// address) with a fresh ECDSA P-256 key, valid from an hour before now for
// validity (never beyond the CA's own expiry).
func (a *Authority) Issue(host string, now time.Time, validity time.Duration) (*tls.Certificate, error) {
	if host == "" {
		return nil, errors.New("ca: issue: empty host")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca: issue %s: %w", host, err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(rand.Reader),
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("ca: issue %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: issue %s: %w", host, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serial returns a random positive 127-bit serial number.
func serial(r io.Reader) *big.Int {
	b := make([]byte, 16)
	if _, err := io.ReadFull(r, b); err != nil {
		panic("ca: no randomness: " + err.Error())
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // never zero, never negative
	return new(big.Int).SetBytes(b)
}

// writeNew writes data to path with mode 0600: to a temporary file first,
// synced, then linked into place, so the file is never overwritten and
// never left half-written.
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ca: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ca: write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrExists, path)
		}
		return fmt.Errorf("ca: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
