package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dtrcache/dtrcache/policy"
)

// runHtpasswd prints an htpasswd line (bcrypt) for the origin's users file,
// reading the password from stdin so it never appears in a process list.
func runHtpasswd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return htpasswdFrom(os.Stdin, args, stdout, stderr)
}

func htpasswdFrom(stdin io.Reader, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("htpasswd", "htpasswd [--cost N] USER < password", stderr)
	cost := fs.Int("cost", 10, "bcrypt cost")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *cost < 4 || *cost > 16 {
		fmt.Fprintln(stderr, "dtrcache htpasswd: --cost must be between 4 and 16 (what the origin accepts)")
		return 2
	}
	if fs.NArg() != 1 || strings.ContainsAny(fs.Arg(0), ":\n") {
		fmt.Fprintln(stderr, "dtrcache htpasswd: give one user name (no ':'); the password is read from stdin")
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintf(stderr, "dtrcache htpasswd: %v\n", err)
		return 1
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		fmt.Fprintln(stderr, "dtrcache htpasswd: empty password")
		return 2
	}
	h, err := policy.HashPassword(pw, *cost)
	if err != nil {
		fmt.Fprintf(stderr, "dtrcache htpasswd: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s:%s\n", fs.Arg(0), h)
	return 0
}
