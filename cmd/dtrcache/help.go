package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// configReference names where every configuration key is documented.
const configReference = "docs/configuration.md (the configuration reference: every key of cache.yml and\n" +
	"origin.yml with its type, default and meaning), and the README's walkthroughs."

// commandHelp is what `dtrcache <command> --help` says above the flags:
// the command's job, its subcommands, and where its configuration is
// described. Keys are flag set names ("cache", "keys generate").
var commandHelp = map[string]string{
	"cache": `Serves a cache near the users, in the modes its configuration file enables
(each mode keeps its own store under storage.root):
  redirect        the target of the origin's 307s: a blob for a signed token (the DTR flow)
  mirror          a pull-through registry mirror (containerd hosts.toml, Docker registry-mirrors)
  forward_proxy   the office HTTPS_PROXY: registry hosts intercepted with the office CA
A DTR cache configuration (the downstream middleware) and distribution's
proxy section work unchanged. Every problem of the file is reported at
once, by key, before anything serves (exit 2); --check stops there.
Flags override the file; environment variables override the flags' defaults.

Configuration: ` + configReference,
	"origin": `Serves the origin gateway in front of a registry (the DTR role): logs users in,
checks repository permissions, proxies manifests, redirects blob pulls to the
user's cache with a signed token, and serves the caches, accounts, policies,
jobs and webhooks API (/api/v0).

Commands:
  dtrcache origin --config origin.yml          serve
  dtrcache origin migrate --from … --to …      copy a single origin's state (Badger) into etcd

Configuration: ` + configReference,
	"origin migrate": `Copies the state of a single-node origin (Badger under its data_dir) into etcd,
checks the copy key by key, and leaves the source as it was. Stop the origin
first; then point state.etcd of every replica at the cluster.`,
	"keys": `Manages the origin's token signing keys (Ed25519). The origin signs redirect
tokens with the newest key of its keys.dir, reloads the directory every
keys.reload, and publishes every public key at /.well-known/jwks.json.

Commands:
  generate   make a key pair in --dir (private key 0600): a rotation
  list       the key ids in --dir, the signing key marked
  jwks       print the public keys as a JWKS document
  import     copy the key files of --from (a mounted Secret) into --dir, mode 0600`,
	"ca": `Manages the office CA of the forward proxy (forward_proxy.ca_dir), which signs
the certificates of the registry hosts it intercepts. Its key must be mode
0600: the cache refuses to start with a key others may read.

Commands:
  init   make the CA in --dir (ECDSA P-256; certificate and key 0600)
  cert   print the CA certificate, for the clients' trust stores`,
	"htpasswd": `Prints an htpasswd line (bcrypt) for the origin's auth.htpasswd file. The
password is read from stdin, so it never appears in a process list.`,
	"warm": `Pre-fills a cache: pulls images through it (a mirror, or the origin as a user
whose profile names the cache) and reads every blob, so the first pull of the
day is warm. Shows each image's and the total progress (bytes, rate, blobs)
on a terminal, one line per blob otherwise, and a summary: the bytes the
cache filled and those it already had.`,
	"probe": `GETs a URL and exits 0 on a 2xx answer: the health check of the container
images, which have no shell or curl.`,
	"install-secrets": `Copies the files of mounted Kubernetes Secrets into directories only this user
can read: each DST is made with mode 0700, and every regular file of SRC is
written into it with mode 0600 (kubelet makes Secret files group-readable
under an fsGroup, and dtrcache refuses keys and passwords others may read).`,
	"version": `Prints the version, commit, build date, Go version and platform.`,
}

// subcommandUsage prints the help of a command that has subcommands
// (dtrcache keys, dtrcache ca).
func subcommandUsage(w io.Writer, name, synopsis string) {
	fmt.Fprintf(w, "Usage: dtrcache %s\n\n%s\n\nRun 'dtrcache %s <command> --help' for a command's flags.\n", synopsis, commandHelp[name], name)
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	return slices.Contains([]string{"-h", "-help", "--help", "help"}, arg)
}

// parseFlags parses args. On -h or --help it prints the usage to stdout
// and returns exit code 0; on a bad flag it prints the problem and the
// usage to the flag set's output (stderr) and returns 2. ok is true when
// the command should go on.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, ok bool) {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// flag wrote the usage alone: it goes to stdout.
		io.WriteString(stdout, strings.TrimPrefix(buf.String(), "\n"))
		return 0, false
	case err != nil:
		out.Write(buf.Bytes())
		return 2, false
	}
	return 0, true
}
