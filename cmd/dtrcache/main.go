// Command dtrcache runs the parts of dtrcache: the cache near the users,
// the origin gateway in front of the registry, and the tools around them.
//
//	dtrcache cache  --config cache.yml     serve the cache (redirect target, mirror, forward proxy)
//	dtrcache origin --config origin.yml    serve the origin gateway
//	dtrcache keys generate --dir keys/     make an Ed25519 token signing key
//	dtrcache ca init --dir ca/             make the office CA of the forward proxy
//	dtrcache warm IMAGE...                 pre-fill a cache with images
//	dtrcache version
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"cache", "serve a cache: redirect target of the origin, pull-through mirror, HTTPS_PROXY", runCache},
		{"origin", "serve the origin gateway in front of a registry (origin migrate: its state to etcd)", runOrigin},
		{"keys", "manage the origin's token signing keys (generate, list, jwks)", runKeys},
		{"htpasswd", "print a bcrypt htpasswd line for a user (password on stdin)", runHtpasswd},
		{"ca", "manage the forward proxy's office CA (init, cert)", runCA},
		{"policy", "see and run promotion and mirroring policies of an origin (list, plan, run, jobs)", runPolicy},
		{"warm", "pre-fill a cache with images", runWarm},
		{"probe", "GET a URL, exit 0 on 2xx (container health checks)", runProbe},
		{"install-secrets", "copy mounted Secret files into private directories, mode 0600 (pods' init step)", runInstallSecrets},
		{"version", "print the version", runVersion},
	}
}

// run dispatches to a subcommand and returns the exit code: 0 ok, 1 a
// failure while running, 2 bad usage or configuration.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "dtrcache: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "dtrcache — pull caches for container registries")
	fmt.Fprintln(w, "\nUsage: dtrcache <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'dtrcache <command> --help' for what a command does, its subcommands and flags.")
	fmt.Fprintln(w, "Configuration: "+configReference)
}
