package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteKeyPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	k := testKey(t, 1)
	priv, pub, err := WriteKeyPair(dir, k, t0.In(time.FixedZone("JST", 9*3600)))
	if err != nil {
		t.Fatal(err)
	}
	wantBase := filepath.Join(dir, "20250301T120000Z-"+k.Kid)
	if priv != wantBase+".key" || pub != wantBase+".pub" {
		t.Fatalf("paths = %s, %s; want %s.{key,pub}", priv, pub, wantBase)
	}
	for _, tt := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, os.ModeDir | 0o700},
		{priv, 0o600},
		{pub, 0o644},
	} {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tt.mode {
				t.Fatalf("mode = %v, want %v", fi.Mode(), tt.mode)
			}
		})
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("dir holds %d entries, want 2 (temporary files left behind?)", len(entries))
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		before, _ := os.ReadFile(priv)
		if _, _, err := WriteKeyPair(dir, k, t0); err == nil || !strings.Contains(err.Error(), "overwrite") {
			t.Fatalf("err = %v, want a refusal to overwrite", err)
		}
		after, _ := os.ReadFile(priv)
		if string(before) != string(after) {
			t.Fatal("existing key file changed")
		}
	})
	t.Run("refuses a kid that is not the thumbprint", func(t *testing.T) {
		bad := *testKey(t, 2)
		bad.Kid = "../../etc/passwd"
		if _, _, err := WriteKeyPair(dir, &bad, t0); err == nil {
			t.Fatal("no error")
		}
	})
}

// writeKeyDir writes the given keys at one-hour steps from t0 and returns
// the directory.
func writeKeyDir(t *testing.T, keys ...*PrivateKey) string {
	t.Helper()
	dir := t.TempDir()
	for i, k := range keys {
		if _, _, err := WriteKeyPair(dir, k, t0.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadKeyDir(t *testing.T) {
	a, b, c := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	tests := []struct {
		name        string
		setup       func(t *testing.T) string
		wantSigning string // kid, "" for none
		wantAll     []string
		wantErr     string
	}{
		{
			name:        "newest signs, all verify",
			setup:       func(t *testing.T) string { return writeKeyDir(t, b, a, c) },
			wantSigning: c.Kid,
			wantAll:     []string{b.Kid, a.Kid, c.Kid},
		},
		{
			name: "public-only key verifies but does not sign",
			setup: func(t *testing.T) string {
				dir := writeKeyDir(t, a, b, c)
				removeGlob(t, dir, "*T140000Z-*.key") // c's private half
				return dir
			},
			wantSigning: b.Kid,
			wantAll:     []string{a.Kid, b.Kid, c.Kid},
		},
		{
			name: "only public keys",
			setup: func(t *testing.T) string {
				dir := writeKeyDir(t, a, b)
				removeGlob(t, dir, "*.key")
				return dir
			},
			wantAll: []string{a.Kid, b.Kid},
		},
		{
			name: "other and hidden files ignored",
			setup: func(t *testing.T) string {
				dir := writeKeyDir(t, a)
				writeFile(t, filepath.Join(dir, "README"), "keys", 0o644)
				writeFile(t, filepath.Join(dir, ".tmp-key-123"), "partial", 0o600)
				writeFile(t, filepath.Join(dir, ".hidden.key"), "partial", 0o644)
				return dir
			},
			wantSigning: a.Kid,
			wantAll:     []string{a.Kid},
		},
		{
			name: "group-readable private key refused",
			setup: func(t *testing.T) string {
				dir := writeKeyDir(t, a)
				for _, p := range glob(t, dir, "*.key") {
					if err := os.Chmod(p, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				return dir
			},
			wantErr: "mode 0644",
		},
		{
			name: "group-writable private key refused",
			setup: func(t *testing.T) string {
				dir := writeKeyDir(t, a)
				for _, p := range glob(t, dir, "*.key") {
					if err := os.Chmod(p, 0o620); err != nil {
						t.Fatal(err)
					}
				}
				return dir
			},
			wantErr: ".key has mode 0620",
		},
		{
			name: "file name names another kid",
			setup: func(t *testing.T) string {
				dir := writeKeyDir(t, a)
				privB, _ := MarshalPrivateKeyPEM(b)
				writeFile(t, glob(t, dir, "*.key")[0], string(privB), 0o600)
				return dir
			},
			wantErr: "file name names kid",
		},
		{
			name:    "empty dir",
			setup:   func(t *testing.T) string { return t.TempDir() },
			wantErr: "no .key or .pub files",
		},
		{
			name:    "missing dir",
			setup:   func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") },
			wantErr: "no such file",
		},
		{
			name: "broken private key names the file",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				writeFile(t, filepath.Join(dir, "origin.key"), "not a key", 0o600)
				return dir
			},
			wantErr: "origin.key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.setup(t)
			signing, all, err := LoadKeyDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantSigning == "" && signing != nil:
				t.Fatalf("signing key %s, want none", signing.Kid)
			case tt.wantSigning != "" && (signing == nil || signing.Kid != tt.wantSigning):
				t.Fatalf("signing key = %v, want %s", signing, tt.wantSigning)
			}
			var kids []string
			for _, k := range all {
				kids = append(kids, k.Kid)
			}
			if strings.Join(kids, ",") != strings.Join(tt.wantAll, ",") {
				t.Fatalf("all = %v, want %v", kids, tt.wantAll)
			}
		})
	}
}

func glob(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		t.Fatalf("glob %s: %v %v", pattern, m, err)
	}
	return m
}

func removeGlob(t *testing.T, dir, pattern string) {
	t.Helper()
	for _, p := range glob(t, dir, pattern) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
