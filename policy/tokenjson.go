package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The one form of a token's JSON that Verify accepts. The jwt library
// decodes the header and the claims with encoding/json, which takes the
// last of a repeated key, matches names case-insensitively and reads a
// NumericDate from a JSON string as well as from a number. None of that
// is exploitable without the signing key, but a verifier should accept
// exactly what the signer writes: so both segments are read first, and a
// repeated member, a member whose name differs only in case from one
// this package knows, or a known member of the wrong JSON type, is a
// malformed token. Members the package does not know are allowed (a
// newer origin may add claims).

// jsonKind is the JSON type a known member must have.
type jsonKind int

const (
	jsonAny      jsonKind = iota
	jsonString            // a string
	jsonNumber            // a number (NumericDate: seconds since the epoch)
	jsonAudience          // a string or an array of strings
)

var (
	headerMembers = map[string]jsonKind{"alg": jsonString, "kid": jsonString, "typ": jsonString, "crit": jsonAny}
	claimMembers  = map[string]jsonKind{
		"iss": jsonString, "sub": jsonString, "aud": jsonAudience, "jti": jsonString,
		"exp": jsonNumber, "nbf": jsonNumber, "iat": jsonNumber,
		"repo": jsonString, "digest": jsonString,
	}
)

// checkTokenJSON checks the header and claims segments of a compact JWS
// (whose syntax checkTokenSyntax accepted).
func checkTokenJSON(token string) error {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: %d segments, want 3", ErrMalformedToken, len(parts))
	}
	for i, seg := range []struct {
		name    string
		members map[string]jsonKind
	}{{"header", headerMembers}, {"claims", claimMembers}} {
		b, err := base64.RawURLEncoding.Strict().DecodeString(parts[i])
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMalformedToken, seg.name, err)
		}
		if err := checkObject(b, seg.members); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrMalformedToken, seg.name, err)
		}
	}
	return nil
}

// checkObject checks that b is one JSON object whose members are unique,
// named exactly as the known ones when they fold to one, and of the known
// members' types.
func checkObject(b []byte, known map[string]jsonKind) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		if seen[name] {
			return fmt.Errorf("%q twice", name)
		}
		seen[name] = true
		kind, ok := known[name]
		if !ok {
			for k := range known {
				if strings.EqualFold(k, name) {
					return fmt.Errorf("%q is not a member (the name is %q)", name, k)
				}
			}
		}
		if err := checkValue(dec, kind); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the object")
	}
	return nil
}

// checkValue reads the next value from dec and checks it is of kind.
func checkValue(dec *json.Decoder, kind jsonKind) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch kind {
	case jsonString:
		if _, ok := tok.(string); !ok {
			return errors.New("want a JSON string")
		}
		return nil
	case jsonNumber:
		if _, ok := tok.(json.Number); !ok {
			return errors.New("want a JSON number (seconds since 1970)")
		}
		return nil
	case jsonAudience:
		if _, ok := tok.(string); ok {
			return nil
		}
		if tok != json.Delim('[') {
			return errors.New("want a string or an array of strings")
		}
		for dec.More() {
			if err := checkValue(dec, jsonString); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	return skipValue(dec, tok)
}

// skipValue reads the rest of a value whose first token is tok.
func skipValue(dec *json.Decoder, tok json.Token) error {
	d, ok := tok.(json.Delim)
	if !ok || d == '}' || d == ']' {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}
