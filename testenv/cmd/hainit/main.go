// Command hainit makes, once, the files every origin replica of the compose
// profile ha shares (docker-compose.yml): the token signing key directory
// and the policies' secret key, both mode 0600 on the shared volume. Files
// that exist are kept, so `docker compose --profile ha up` can run again.
// The images have no shell, hence a program.
package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

func main() {
	keys := flag.String("keys", "/shared/keys", "the signing key directory (a key is generated if it has none)")
	secret := flag.String("secret", "/shared/secrets.key", "the policies' secret key (32 random bytes if missing)")
	flag.Parse()
	if err := run(*keys, *secret); err != nil {
		fmt.Fprintln(os.Stderr, "hainit:", err)
		os.Exit(1)
	}
}

func run(keys, secret string) error {
	if signing, _, err := policy.LoadKeyDir(keys); err != nil || signing == nil {
		k, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		if _, _, err := policy.WriteKeyPair(keys, k, time.Now()); err != nil {
			return fmt.Errorf("keys: %w", err)
		}
		fmt.Println("hainit: generated signing key", k.Kid, "in", keys)
	}
	if _, err := os.Stat(secret); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(secret), 0o700); err != nil {
			return err
		}
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		if err := os.WriteFile(secret, b, 0o600); err != nil {
			return fmt.Errorf("secret key: %w", err)
		}
		fmt.Println("hainit: made the policies' secret key", secret)
	} else if err != nil {
		return err
	}
	return nil
}
