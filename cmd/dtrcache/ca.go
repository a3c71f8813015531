package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/dtrcache/dtrcache/proxy/forward/ca"
	"github.com/dtrcache/dtrcache/proxy/units"
)

// runCA manages the forward proxy's office CA: `ca init` creates it,
// `ca cert` prints the certificate clients must trust.
func runCA(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		subcommandUsage(stdout, "ca", "ca init|cert --dir DIR")
		return 0
	}
	if len(args) == 0 || (args[0] != "init" && args[0] != "cert") {
		if len(args) > 0 {
			fmt.Fprintf(stderr, "dtrcache ca: unknown command %q\n\n", args[0])
		}
		subcommandUsage(stderr, "ca", "ca init|cert --dir DIR")
		return 2
	}
	sub := args[0]
	fs := newFlagSet("ca "+sub, "ca "+sub+" --dir DIR", stderr)
	dir := fs.String("dir", envOr("DTRCACHE_CA_DIR", ""), "CA directory (env DTRCACHE_CA_DIR)")
	name := fs.String("name", "dtrcache office CA", "init: the CA's common name")
	validity := fs.String("validity", "3650d", "init: how long the CA certificate is valid")
	ifMissing := fs.Bool("if-missing", false, "init: succeed without changes when the CA exists (provisioning scripts)")
	if code, ok := parseFlags(fs, args[1:], stdout); !ok {
		return code
	}
	if *dir == "" || fs.NArg() != 0 {
		fmt.Fprintf(stderr, "dtrcache ca %s: --dir is required (and nothing else)\n", sub)
		fs.Usage()
		return 2
	}
	if sub == "cert" {
		a, err := ca.Load(*dir)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache ca cert: %v\n", err)
			return 1
		}
		stdout.Write(a.CertPEM())
		return 0
	}
	d, err := units.ParseDuration(*validity)
	if err != nil || d.D() <= 0 {
		fmt.Fprintf(stderr, "dtrcache ca init: --validity: invalid duration %q\n", *validity)
		return 2
	}
	a, err := ca.Init(*dir, ca.Options{Name: *name, Validity: d.D()})
	if errors.Is(err, ca.ErrExists) {
		if *ifMissing {
			fmt.Fprintf(stdout, "CA already in %s; left as it is\n", *dir)
			return 0
		}
		fmt.Fprintf(stderr, "dtrcache ca init: %v; refusing to overwrite it\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache ca init: %v\n", err)
		return 1
	}
	c := a.Certificate()
	fmt.Fprintf(stdout, "CA %q (ECDSA P-256), valid until %s\n", c.Subject.CommonName, c.NotAfter.UTC().Format("2006-01-02"))
	fmt.Fprintf(stdout, "certificate %s (0600)\nprivate key %s (0600)\n", filepath.Join(*dir, ca.CertFile), filepath.Join(*dir, ca.KeyFile))
	fmt.Fprintln(stdout, "Clients trust the certificate: dtrcache ca cert --dir "+*dir+" > /usr/local/share/ca-certificates/dtrcache-office.crt && update-ca-certificates")
	return 0
}
