package policy

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkRedirectToken measures the per-blob work of a redirect that is
// pure computation: the origin checking the user's password (a cached
// bcrypt answer: Users caches successful verifications), the origin
// signing the blob's token, and the cache verifying it.
func BenchmarkRedirectToken(b *testing.B) {
	key := testKey(b, 1)
	signer := NewSigner(key, testIssuer, 0)
	signer.Rand = rand.Reader
	verifier := &Verifier{Keys: NewStaticKeys(key.Public()), Issuer: testIssuer, Audience: testAudience}
	b.Run("authenticate-cached", func(b *testing.B) {
		h, err := HashPassword("pw", 10)
		if err != nil {
			b.Fatal(err)
		}
		users, err := ParseHtpasswd([]byte(fmt.Sprintf("alice:%s\n", h)))
		if err != nil {
			b.Fatal(err)
		}
		if err := users.Authenticate("alice", "pw"); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			if err := users.Authenticate("alice", "pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := signer.Sign("alice", testAudience, testRepo, testDigest); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verify", func(b *testing.B) {
		token, _, err := signer.Sign("alice", testAudience, testRepo, testDigest)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		for b.Loop() {
			if _, err := verifier.Verify(ctx, token, testRepo, testDigest); err != nil {
				b.Fatal(err)
			}
		}
	})
}
