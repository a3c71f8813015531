package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const synopsis = "keys generate|list|jwks|import --dir DIR"
	if len(args) > 0 && isHelp(args[0]) {
		subcommandUsage(stdout, "keys", synopsis)
		return 0
	}
	if len(args) == 0 || !slices.Contains([]string{"generate", "list", "jwks", "import"}, args[0]) {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "dtrcache keys: unknown command %q\n\n", args[0])
		}
		subcommandUsage(stderr, "keys", synopsis)
		return 2
	}
	fs := newFlagSet("keys "+args[0], "keys "+args[0]+" --dir DIR", stderr)
	dir := fs.String("dir", envOr("DTRCACHE_KEYS_DIR", ""), "key directory (env DTRCACHE_KEYS_DIR)")
	from := fs.String("from", "", "import: the directory to copy the keys from (a mounted Kubernetes Secret)")
	if code, ok := parseFlags(fs, args[1:], stdout); !ok {
		return code
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "dtrcache keys: --dir is required")
		return 2
	}
	switch args[0] {
	case "generate":
		k, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache keys generate: %v\n", err)
			return 1
		}
		priv, pub, err := policy.WriteKeyPair(*dir, k, time.Now())
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache keys generate: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "kid %s\nprivate key %s (0600)\npublic key  %s\n", k.Kid, priv, pub)
		fmt.Fprintln(stdout, "The origin signs with the newest key in the directory and publishes every public key at /.well-known/jwks.json.")
		return 0
	case "list", "jwks":
		signing, all, err := policy.LoadKeyDir(*dir)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache keys %s: %v\n", args[0], err)
			return 1
		}
		if args[0] == "jwks" {
			b, err := policy.MarshalJWKS(all)
			if err != nil {
				fmt.Fprintf(stderr, "dtrcache keys jwks: %v\n", err)
				return 1
			}
			fmt.Fprintln(stdout, string(b))
			return 0
		}
		for _, k := range all {
			mark := ""
			if signing != nil && k.Kid == signing.Kid {
				mark = "  (signing)"
			}
			fmt.Fprintf(stdout, "%s%s\n", k.Kid, mark)
		}
		return 0
	case "import":
		n, signing, err := importKeys(*from, *dir)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache keys import: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "imported %d key files into %s; signing key %s\n", n, *dir, signing)
		return 0
	}
	fmt.Fprintf(stderr, "dtrcache keys: unknown subcommand %q (generate, list, jwks, import)\n", args[0])
	return 2
}
