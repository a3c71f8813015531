package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dtrcache/dtrcache/policy"
)

// importKeys copies the key files (*.key, *.pub) of src into dst with the
// modes `keys generate` gives them (0600 and 0644, dst 0700), checks that
// dst then loads as a key directory, and returns how many files it copied
// and the signing key's kid. It is how a Kubernetes pod gets its keys from
// a Secret: kubelet makes Secret files group-readable when the pod has an
// fsGroup, and the origin refuses a private key others may read. Files
// already in dst with the same content are left alone, so it can run again
// on the same directory.
func importKeys(src, dst string) (int, string, error) {
	if src == "" || dst == "" {
		return 0, "", errors.New("--from and --dir are required")
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return 0, "", err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return 0, "", err
	}
	n := 0
	for _, e := range entries {
		name := e.Name()
		private := strings.HasSuffix(name, ".key")
		if strings.HasPrefix(name, ".") || !private && !strings.HasSuffix(name, ".pub") {
			continue // Kubernetes' ..data links, other files
		}
		// os.ReadFile follows the Secret volume's symbolic links.
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return n, "", err
		}
		mode := os.FileMode(0o644)
		if private {
			mode = 0o600
			if _, err := policy.ParsePrivateKeyPEM(b); err != nil {
				return n, "", fmt.Errorf("%s: %w", name, err)
			}
		} else if _, err := policy.ParsePublicKeysPEM(b); err != nil {
			return n, "", fmt.Errorf("%s: %w", name, err)
		}
		if err := writeKeyFile(filepath.Join(dst, name), b, mode); err != nil {
			return n, "", err
		}
		n++
	}
	signing, _, err := policy.LoadKeyDir(dst)
	if err != nil {
		return n, "", err
	}
	if signing == nil {
		return n, "", fmt.Errorf("%s has no private key (*.key): the origin cannot sign tokens", src)
	}
	return n, signing.Kid, nil
}

// writeKeyFile writes data to path with mode, through a temporary file
// renamed into place; an existing file with the same content is kept.
func writeKeyFile(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return os.Chmod(path, mode)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".import-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// runInstallSecrets copies the files of mounted Kubernetes Secrets into
// directories only this user can read: `dtrcache install-secrets
// SRC:DST...` makes each DST with mode 0700 and writes every regular file
// of SRC (following the volume's links, skipping its hidden entries) into
// it with mode 0600. dtrcache refuses password and key files that group
// or others may read, and kubelet makes Secret files group-readable when
// the pod has an fsGroup, so the pods run this first.
func runInstallSecrets(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprintf(stdout, "Usage: dtrcache install-secrets SRC:DST [SRC:DST...]\n\n%s\n", commandHelp["install-secrets"])
		return 0
	}
	if len(args) == 0 {
		fmt.Fprintf(stderr, "Usage: dtrcache install-secrets SRC:DST [SRC:DST...]\n\n%s\n", commandHelp["install-secrets"])
		return 2
	}
	for _, a := range args {
		src, dst, ok := strings.Cut(a, ":")
		if !ok || src == "" || dst == "" || filepath.Clean(src) == filepath.Clean(dst) {
			fmt.Fprintf(stderr, "dtrcache install-secrets: %q: want SRC:DST, two different directories\n", a)
			return 2
		}
		n, err := installSecrets(src, dst)
		if err != nil {
			fmt.Fprintf(stderr, "dtrcache install-secrets: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "installed %d files from %s into %s (0600)\n", n, src, dst)
	}
	return 0
}

func installSecrets(src, dst string) (int, error) {
	entries, err := os.ReadDir(src)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return 0, err
	}
	if err := os.Chmod(dst, 0o700); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue // the volume's ..data links and timestamped directory
		}
		p := filepath.Join(src, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			return n, err
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return n, err
		}
		if err := writeKeyFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
