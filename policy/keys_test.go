package policy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func TestKeyIDMatchesRFC8037(t *testing.T) {
	// RFC 8037, appendix A.1 (the key) and A.3 (its thumbprint).
	x, err := jwtEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := KeyID(x), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Fatalf("KeyID = %s, want %s", got, want)
	}
}

func TestGenerateKey(t *testing.T) {
	tests := []struct {
		name    string
		rand    func() *bytes.Reader
		wantErr bool
	}{
		{name: "crypto rand", rand: nil},
		{name: "deterministic", rand: func() *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{3}, 32)) }},
		{name: "short rand", rand: func() *bytes.Reader { return bytes.NewReader([]byte{1, 2}) }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k *PrivateKey
			var err error
			if tt.rand == nil {
				k, err = GenerateKey(nil)
			} else {
				k, err = GenerateKey(tt.rand())
			}
			if tt.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.Kid != KeyID(k.Public().Key) || len(k.Key) != ed25519.PrivateKeySize {
				t.Fatalf("bad key: kid %q", k.Kid)
			}
		})
	}
}

func TestPEMRoundTrip(t *testing.T) {
	for _, seed := range []byte{1, 2, 3} {
		k := testKey(t, seed)
		t.Run(k.Kid, func(t *testing.T) {
			privPEM, err := MarshalPrivateKeyPEM(k)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Fatalf("private PEM:\n%s", privPEM)
			}
			got, err := ParsePrivateKeyPEM(privPEM)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kid != k.Kid || !got.Key.Equal(k.Key) {
				t.Fatalf("private key changed in the round trip")
			}

			pub := k.Public()
			pubPEM, err := MarshalPublicKeyPEM(&pub)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----\n")) {
				t.Fatalf("public PEM:\n%s", pubPEM)
			}
			keys, err := ParsePublicKeysPEM(pubPEM)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 || keys[0].Kid != k.Kid || !keys[0].Key.Equal(pub.Key) {
				t.Fatalf("public key changed in the round trip: %+v", keys)
			}
		})
	}
}

func TestParsePublicKeysPEM(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	pubA, pubB := a.Public(), b.Public()
	pemA, _ := MarshalPublicKeyPEM(&pubA)
	pemB, _ := MarshalPublicKeyPEM(&pubB)
	privB, _ := MarshalPrivateKeyPEM(b)
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, []byte("\n")) }

	tests := []struct {
		name     string
		in       []byte
		wantKids []string
		wantErr  string
	}{
		{name: "one", in: pemA, wantKids: []string{a.Kid}},
		{name: "two", in: join(pemA, pemB), wantKids: []string{a.Kid, b.Kid}},
		{name: "private block gives its public half", in: join(pemA, privB), wantKids: []string{a.Kid, b.Kid}},
		{name: "duplicates once", in: join(pemA, pemA, privB, pemB), wantKids: []string{a.Kid, b.Kid}},
		{name: "text around blocks", in: join([]byte("# origin keys"), pemA, []byte("trailer")), wantKids: []string{a.Kid}},
		{name: "empty", in: nil, wantErr: "no PEM data"},
		{name: "not PEM", in: []byte("hello"), wantErr: "no PEM data"},
		{name: "certificate block", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), wantErr: `"CERTIFICATE"`},
		{name: "ECDSA key", in: ecdsaPublicPEM(t), wantErr: "not an Ed25519 key"},
		{name: "garbage DER", in: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}), wantErr: "block 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParsePublicKeysPEM(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var kids []string
			for _, k := range keys {
				kids = append(kids, k.Kid)
			}
			if strings.Join(kids, ",") != strings.Join(tt.wantKids, ",") {
				t.Fatalf("kids = %v, want %v", kids, tt.wantKids)
			}
		})
	}
}

func TestParsePrivateKeyPEMErrors(t *testing.T) {
	k := testKey(t, 1)
	pub := k.Public()
	pubPEM, _ := MarshalPublicKeyPEM(&pub)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, wantErr string
	}{
		{name: "not PEM", in: "hello", wantErr: "no PEM data"},
		{name: "public key block", in: string(pubPEM), wantErr: `"PUBLIC KEY", want "PRIVATE KEY"`},
		{name: "OpenSSH style block", in: string(pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}})), wantErr: `"OPENSSH PRIVATE KEY"`},
		{name: "ECDSA key", in: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})), wantErr: "not an Ed25519 key"},
		{name: "garbage DER", in: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})), wantErr: "parse private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePrivateKeyPEM([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestMarshalPEMRefusesBadKeys(t *testing.T) {
	if _, err := MarshalPrivateKeyPEM(&PrivateKey{Key: []byte{1}}); err == nil {
		t.Error("MarshalPrivateKeyPEM accepted a short key")
	}
	if _, err := MarshalPrivateKeyPEM(nil); err == nil {
		t.Error("MarshalPrivateKeyPEM accepted nil")
	}
	if _, err := MarshalPublicKeyPEM(&PublicKey{Key: []byte{1}}); err == nil {
		t.Error("MarshalPublicKeyPEM accepted a short key")
	}
}

func ecdsaPublicPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestStaticKeys(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	noKid := b.Public()
	noKid.Kid = ""
	imposter := PublicKey{Kid: a.Kid, Key: testKey(t, 3).Public().Key}
	s := NewStaticKeys(a.Public(), noKid, imposter, PublicKey{Kid: "short", Key: []byte{1}})
	tests := []struct {
		kid  string
		want ed25519.PublicKey
	}{
		{kid: a.Kid, want: a.Public().Key}, // the first of two keys with one kid wins
		{kid: b.Kid, want: b.Public().Key}, // filed under its thumbprint
		{kid: "short"},
		{kid: "nope"},
		{kid: ""},
	}
	for _, tt := range tests {
		t.Run(tt.kid, func(t *testing.T) {
			got, err := s.PublicKey(context.Background(), tt.kid)
			if tt.want == nil {
				if !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("err = %v, want ErrUnknownKey", err)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("PublicKey = %x, %v", got, err)
			}
		})
	}
}
