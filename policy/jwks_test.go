package policy

import (
	"strings"
	"testing"
)

func TestJWKSRoundTrip(t *testing.T) {
	a, b := testKey(t, 1), testKey(t, 2)
	renamed := b.Public()
	renamed.Kid = "origin-2025"
	tests := []struct {
		name string
		keys []PublicKey
	}{
		{name: "none", keys: nil},
		{name: "one", keys: []PublicKey{a.Public()}},
		{name: "two, one with a custom kid", keys: []PublicKey{a.Public(), renamed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := MarshalJWKS(tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseJWKS(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.keys) {
				t.Fatalf("got %d keys, want %d:\n%s", len(got), len(tt.keys), b)
			}
			for i := range got {
				if got[i].Kid != tt.keys[i].Kid || !got[i].Key.Equal(tt.keys[i].Key) {
					t.Fatalf("key %d = %+v, want %+v", i, got[i], tt.keys[i])
				}
			}
		})
	}
}

func TestMarshalJWKSFormat(t *testing.T) {
	k := testKey(t, 1).Public()
	x := b64(k.Key)
	k.Kid = ""
	b, err := MarshalJWKS([]PublicKey{k})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `","kid":"` + KeyID(k.Key) + `","use":"sig","alg":"EdDSA"}]}`
	if string(b) != want {
		t.Fatalf("JWKS =\n%s\nwant\n%s", b, want)
	}
	if b, _ := MarshalJWKS(nil); string(b) != `{"keys":[]}` {
		t.Fatalf("empty JWKS = %s", b)
	}
	if _, err := MarshalJWKS([]PublicKey{{Kid: "x", Key: []byte{1}}}); err == nil {
		t.Fatal("MarshalJWKS accepted a short key")
	}
}

func TestParseJWKS(t *testing.T) {
	k := testKey(t, 1).Public()
	x := b64(k.Key)
	other := b64(testKey(t, 2).Public().Key)
	okp := func(extra string) string {
		return `{"kty":"OKP","crv":"Ed25519","x":"` + x + `"` + extra + `}`
	}
	set := func(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }

	tests := []struct {
		name     string
		in       string
		wantKids []string
		wantErr  string
	}{
		{name: "kid given", in: set(okp(`,"kid":"k1"`)), wantKids: []string{"k1"}},
		{name: "kid defaults to thumbprint", in: set(okp("")), wantKids: []string{k.Kid}},
		{name: "RFC 9864 alg name", in: set(okp(`,"kid":"k1","alg":"Ed25519"`)), wantKids: []string{"k1"}},
		{name: "unknown members ignored", in: set(okp(`,"kid":"k1","key_ops":["verify"],"x5c":[]`)), wantKids: []string{"k1"}},
		{name: "other kty and crv skipped", in: set(
			`{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"rsa"}`,
			`{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"ec"}`,
			`{"kty":"OKP","crv":"X25519","x":"`+x+`","kid":"x25519"}`,
			`{"kty":"OKP","crv":"Ed448","x":"AA","kid":"ed448"}`,
			okp(`,"kid":"k1"`),
		), wantKids: []string{"k1"}},
		{name: "encryption keys skipped", in: set(okp(`,"kid":"enc","use":"enc"`)), wantKids: nil},
		{name: "other alg skipped", in: set(okp(`,"kid":"es","alg":"ES256"`)), wantKids: nil},
		{name: "same key twice", in: set(okp(`,"kid":"k1"`), okp(`,"kid":"k1"`)), wantKids: []string{"k1"}},
		{name: "empty set", in: `{"keys":[]}`, wantKids: nil},
		{name: "one kid, two keys", in: set(okp(`,"kid":"k1"`), `{"kty":"OKP","crv":"Ed25519","x":"`+other+`","kid":"k1"}`), wantErr: "two different keys"},
		{name: "short x", in: set(`{"kty":"OKP","crv":"Ed25519","x":"AAAA"}`), wantErr: "x is not 32 bytes"},
		{name: "long x", in: set(`{"kty":"OKP","crv":"Ed25519","x":"` + x + `AAAA"}`), wantErr: "x is not 32 bytes"},
		{name: "padded x", in: set(`{"kty":"OKP","crv":"Ed25519","x":"` + x + `="}`), wantErr: "x is not 32 bytes"},
		{name: "standard base64 x", in: set(`{"kty":"OKP","crv":"Ed25519","x":"` + "+" + x[1:] + `"}`), wantErr: "x is not 32 bytes"},
		{name: "missing x", in: set(`{"kty":"OKP","crv":"Ed25519"}`), wantErr: "x is not 32 bytes"},
		{name: "private key published", in: set(okp(`,"d":"` + x + `"`)), wantErr: "private key"},
		{name: "not JSON", in: `keys`, wantErr: "parse JWKS"},
		{name: "trailing garbage", in: `{"keys":[]} x`, wantErr: "parse JWKS"},
		{name: "no keys member", in: `{}`, wantErr: `no "keys"`},
		{name: "null keys", in: `{"keys":null}`, wantErr: `no "keys"`},
		{name: "keys not an array", in: `{"keys":{}}`, wantErr: "parse JWKS"},
		{name: "array at top", in: `[]`, wantErr: "parse JWKS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := ParseJWKS([]byte(tt.in))
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
