package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestVerifyAcceptsOneFormOfClaims is the regression test of claims
// parsed leniently (a date as a JSON string, a claim given twice, claim
// names matched case-insensitively): a token is accepted only with
// numeric dates, unique claims and header fields, and exact names.
func TestVerifyAcceptsOneFormOfClaims(t *testing.T) {
	key := testKey(t, 1)
	keys := NewStaticKeys(key.Public())
	header := fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"typ":"JWT"}`, key.Kid)
	exp, iat := t0.Add(5*time.Minute).Unix(), t0.Unix()
	claims := func(extra string) string {
		return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%q,"repo":%q,"digest":%q,"iat":%d,"nbf":%d,"jti":"AAAAAAAAAAAAAAAAAAAAAA"%s}`,
			testIssuer, testAudience, testRepo, testDigest, iat, iat, extra)
	}
	raw := func(h, c string) string {
		input := b64([]byte(h)) + "." + b64([]byte(c))
		return input + "." + b64(ed25519Sign(key.Key)([]byte(input)))
	}
	tests := []struct {
		name, header, claims string
		want                 error
		contains             string
	}{
		{"numeric dates", header, claims(fmt.Sprintf(`,"exp":%d`, exp)), nil, ""},
		{"a fractional date", header, claims(fmt.Sprintf(`,"exp":%d.5`, exp)), nil, ""},
		{"an unknown claim", header, claims(fmt.Sprintf(`,"exp":%d,"x-trace":"abc"`, exp)), nil, ""},
		{"exp as a string", header, claims(fmt.Sprintf(`,"exp":"%d"`, exp)), ErrMalformedToken, `"exp"`},
		{"iat as a string", header, strings.Replace(claims(fmt.Sprintf(`,"exp":%d`, exp)), fmt.Sprintf(`"iat":%d`, iat), fmt.Sprintf(`"iat":"%d"`, iat), 1), ErrMalformedToken, `"iat"`},
		{"exp twice", header, claims(fmt.Sprintf(`,"exp":%d,"exp":%d`, t0.Unix()-3600, exp)), ErrMalformedToken, `"exp" twice`},
		{"repo twice", header, claims(fmt.Sprintf(`,"exp":%d,"repo":"secret/x"`, exp)), ErrMalformedToken, `"repo" twice`},
		{"EXP for exp", header, claims(fmt.Sprintf(`,"EXP":%d`, exp)), ErrMalformedToken, `"EXP"`},
		{"Repo for repo", header, strings.Replace(claims(fmt.Sprintf(`,"exp":%d`, exp)), `"repo"`, `"Repo"`, 1), ErrMalformedToken, `"Repo"`},
		{"repo not a string", header, strings.Replace(claims(fmt.Sprintf(`,"exp":%d`, exp)), fmt.Sprintf(`"repo":%q`, testRepo), `"repo":["website/ui"]`, 1), ErrMalformedToken, `"repo"`},
		{"kid twice in the header", fmt.Sprintf(`{"alg":"EdDSA","kid":"other","kid":%q}`, key.Kid), claims(fmt.Sprintf(`,"exp":%d`, exp)), ErrMalformedToken, `"kid" twice`},
		{"ALG in the header", fmt.Sprintf(`{"ALG":"none","alg":"EdDSA","kid":%q}`, key.Kid), claims(fmt.Sprintf(`,"exp":%d`, exp)), ErrMalformedToken, `"ALG"`},
		{"trailing data", header, claims(fmt.Sprintf(`,"exp":%d`, exp)) + `{}`, ErrMalformedToken, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testVerifier(keys, t0).Verify(context.Background(), raw(tt.header, tt.claims), testRepo, testDigest)
			checkErr(t, err, tt.want, tt.contains)
		})
	}
}
