package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestEveryCommandHelps is the regression test of `dtrcache cache --help`
// exiting 2 with a bare flag list and `keys --help` printing only
// "--dir is required": every command and subcommand answers -h and --help
// on stdout with exit 0, says what it does, lists its subcommands, and
// the serving commands point to the configuration reference.
func TestEveryCommandHelps(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"cache"}, []string{"Usage: dtrcache cache", "redirect", "mirror", "forward_proxy", "docs/configuration.md", "-config"}},
		{[]string{"origin"}, []string{"Usage: dtrcache origin", "origin gateway", "migrate", "docs/configuration.md", "-config"}},
		{[]string{"origin", "migrate"}, []string{"Usage: dtrcache origin migrate", "into etcd", "-from"}},
		{[]string{"keys"}, []string{"Usage: dtrcache keys", "signing keys", "generate", "list", "jwks", "import"}},
		{[]string{"keys", "generate"}, []string{"Usage: dtrcache keys generate", "-dir"}},
		{[]string{"ca"}, []string{"Usage: dtrcache ca", "office CA", "init", "cert"}},
		{[]string{"ca", "init"}, []string{"Usage: dtrcache ca init", "-validity"}},
		{[]string{"htpasswd"}, []string{"Usage: dtrcache htpasswd", "bcrypt", "-cost"}},
		{[]string{"policy"}, []string{"Usage: dtrcache policy", "list", "plan", "run", "jobs"}},
		{[]string{"policy", "jobs"}, []string{"Usage: dtrcache policy jobs", "-origin"}},
		{[]string{"warm"}, []string{"Usage: dtrcache warm", "Pre-fills", "-jobs"}},
		{[]string{"probe"}, []string{"Usage: dtrcache probe", "health check", "-timeout"}},
		{[]string{"install-secrets"}, []string{"Usage: dtrcache install-secrets", "0600"}},
		{[]string{"version"}, []string{"Usage: dtrcache version", "Prints the version"}},
		{nil, []string{"Commands:", "cache", "origin", "keys", "docs/configuration.md"}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		if len(tt.args) > 0 {
			seen[tt.args[0]] = true
		}
		for _, flag := range []string{"--help", "-h"} {
			args := append(append([]string(nil), tt.args...), flag)
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				var stdout, stderr bytes.Buffer
				if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
					t.Fatalf("exit %d, want 0; stderr: %s", code, stderr.String())
				}
				if stderr.Len() != 0 {
					t.Fatalf("help went to stderr: %s", stderr.String())
				}
				for _, w := range tt.want {
					if !strings.Contains(stdout.String(), w) {
						t.Fatalf("help lacks %q:\n%s", w, stdout.String())
					}
				}
			})
		}
	}
	for _, c := range commands() {
		if !seen[c.name] {
			t.Errorf("command %s has no help test", c.name)
		}
	}
}

// TestBadUsageExits2: a bad flag or a missing subcommand is exit 2, on
// stderr, with the usage.
func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{{"cache", "--nope"}, {"keys"}, {"keys", "rotate"}, {"ca", "frobnicate"}, {"origin", "--nope"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), "Usage: dtrcache "+args[0]) {
				t.Fatalf("stderr lacks the usage: %s", stderr.String())
			}
		})
	}
}
