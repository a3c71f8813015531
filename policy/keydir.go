package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Key directory layout, as written by `dtrcache keys generate`: each key is
// a pair of files named "<UTC time>-<kid>.key" (PKCS #8 private key, mode
// 0600) and "<UTC time>-<kid>.pub" (PKIX public key, mode 0644). Names sort
// by creation time, so the last .key is the newest.
const (
	keyTimeLayout = "20060102T150405Z"
	privateExt    = ".key"
	publicExt     = ".pub"
)

// WriteKeyPair writes k into dir as a new key pair named after now and
// k.Kid, creating dir with mode 0700 if needed. The private key file gets
// mode 0600 and the public one 0644. Existing files are never overwritten.
// Each file is written to a temporary name, synced, and then linked into
// place, so a crash never leaves a truncated key behind.
func WriteKeyPair(dir string, k *PrivateKey, now time.Time) (privPath, pubPath string, err error) {
	privPEM, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		return "", "", err
	}
	pub := k.Public()
	if want := KeyID(pub.Key); k.Kid != want {
		return "", "", fmt.Errorf("policy: write key pair: kid %q is not the key's thumbprint %q", k.Kid, want)
	}
	pubPEM, err := MarshalPublicKeyPEM(&pub)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("policy: write key pair: %w", err)
	}
	base := filepath.Join(dir, now.UTC().Format(keyTimeLayout)+"-"+k.Kid)
	privPath, pubPath = base+privateExt, base+publicExt
	if err := writeNewFile(privPath, privPEM, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNewFile(pubPath, pubPEM, 0o644); err != nil {
		_ = os.Remove(privPath)
		return "", "", err
	}
	if err := syncDir(dir); err != nil {
		return "", "", err
	}
	return privPath, pubPath, nil
}

// writeNewFile creates path with data and mode perm, failing if path
// exists.
func writeNewFile(path string, data []byte, perm fs.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-key-*")
	if err != nil {
		return fmt.Errorf("policy: write %s: %w", path, err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	// Chmod rather than rely on the umask: the public key must be readable
	// by the web server, the private one by nobody else.
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("policy: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("policy: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("policy: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("policy: write %s: %w", path, err)
	}
	// Link fails when path exists, which rename would silently replace.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("policy: write %s: refusing to overwrite an existing key file: %w", path, err)
		}
		return fmt.Errorf("policy: write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("policy: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("policy: sync %s: %w", dir, err)
	}
	return nil
}

// LoadKeyDir reads a key directory. signing is the private key of the .key
// file whose name sorts last (the newest), or nil when dir holds only public
// keys. all holds the public halves of every .key file and the keys of every
// .pub file, each kid once, in file name order. Hidden files and other names
// are ignored; a directory without any key is an error. Private key files
// that group or others may access are refused, and a file whose name follows
// the layout must hold the key its name gives the kid of.
func LoadKeyDir(dir string) (signing *PrivateKey, all []PublicKey, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("policy: load key dir: %w", err)
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		if strings.HasSuffix(name, privateExt) || strings.HasSuffix(name, publicExt) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	seen := make(map[string]bool)
	for _, name := range names {
		path := filepath.Join(dir, name)
		var keys []PublicKey
		if strings.HasSuffix(name, privateExt) {
			priv, err := loadPrivateKeyFile(path)
			if err != nil {
				return nil, nil, err
			}
			signing = priv
			keys = []PublicKey{priv.Public()}
		} else {
			b, err := readRegularFile(path)
			if err != nil {
				return nil, nil, err
			}
			if keys, err = ParsePublicKeysPEM(b); err != nil {
				return nil, nil, fmt.Errorf("policy: %s: %w", path, err)
			}
		}
		if err := checkFileKid(name, keys); err != nil {
			return nil, nil, fmt.Errorf("policy: %s: %w", path, err)
		}
		for _, k := range keys {
			if !seen[k.Kid] {
				seen[k.Kid] = true
				all = append(all, k)
			}
		}
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("policy: load key dir: no %s or %s files in %s", privateExt, publicExt, dir)
	}
	return signing, all, nil
}

func loadPrivateKeyFile(path string) (*PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("policy: %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("policy: private key file %s has mode %04o: group and others must have no access (chmod 600)", path, perm)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	k, err := ParsePrivateKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("policy: %s: %w", path, err)
	}
	return k, nil
}

func readRegularFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("policy: %s is not a regular file", path)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return b, nil
}

// checkFileKid checks that a file named "<time>-<kid>.ext" holds the key
// with that kid. Files named otherwise, or holding several keys, pass.
func checkFileKid(name string, keys []PublicKey) error {
	stem := strings.TrimSuffix(strings.TrimSuffix(name, privateExt), publicExt)
	if len(stem) <= len(keyTimeLayout)+1 || stem[len(keyTimeLayout)] != '-' || len(keys) != 1 {
		return nil
	}
	if _, err := time.Parse(keyTimeLayout, stem[:len(keyTimeLayout)]); err != nil {
		return nil
	}
	if kid := stem[len(keyTimeLayout)+1:]; kid != keys[0].Kid {
		return fmt.Errorf("file name names kid %q but the key's kid is %q", kid, keys[0].Kid)
	}
	return nil
}
