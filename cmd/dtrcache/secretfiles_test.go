package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/policy"
)

// secretDir lays out dir the way kubelet mounts a Secret for a pod with an
// fsGroup: a hidden timestamped directory holding the files (mode 0440),
// a ..data link to it, and one link per key.
func secretDir(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(ts, name), b, 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestKeysImportFromASecretVolume(t *testing.T) {
	gen := t.TempDir()
	files := map[string][]byte{}
	var newest string
	for i := 0; i < 2; i++ {
		k, err := policy.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		priv, pub, err := policy.WriteKeyPair(gen, k, time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{priv, pub} {
			b, _ := os.ReadFile(p)
			files[filepath.Base(p)] = b
		}
		newest = k.Kid
	}
	src := secretDir(t, files)
	// The origin refuses the Secret's group-readable private keys as they are.
	if _, _, err := policy.LoadKeyDir(src); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadKeyDir of the secret volume: %v, want a refusal of mode 0440", err)
	}
	dst := filepath.Join(t.TempDir(), "keys")
	for i := 0; i < 2; i++ { // a restarted init container imports again
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"keys", "import", "--from", src, "--dir", dst}, &out, &errb); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i, code, errb.String())
		}
		if !strings.Contains(out.String(), "imported 4 key files") || !strings.Contains(out.String(), newest) {
			t.Fatalf("run %d: %q", i, out.String())
		}
	}
	signing, all, err := policy.LoadKeyDir(dst)
	if err != nil || signing == nil || signing.Kid != newest || len(all) != 2 {
		t.Fatalf("LoadKeyDir(dst) = %v, %d keys, %v; want signing %s of 2", signing, len(all), err, newest)
	}
	for name := range files {
		fi, err := os.Stat(filepath.Join(dst, name))
		want := os.FileMode(0o644)
		if strings.HasSuffix(name, ".key") {
			want = 0o600
		}
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, %v; want mode %v", name, fi.Mode(), err, want)
		}
	}
}

func TestKeysImportRefuses(t *testing.T) {
	k, _ := policy.GenerateKey(rand.Reader)
	pub := k.Public()
	pubPEM, _ := policy.MarshalPublicKeyPEM(&pub)
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"not a key", map[string][]byte{"a.key": []byte("hello")}, "a.key: policy: parse private key"},
		{"public keys only", map[string][]byte{"a.pub": pubPEM}, "no private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errb bytes.Buffer
			code := run(context.Background(), []string{"keys", "import", "--from", secretDir(t, tt.files), "--dir", t.TempDir()}, &bytes.Buffer{}, &errb)
			if code != 1 || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d, %q; want 1 and %q", code, errb.String(), tt.want)
			}
		})
	}
}

func TestInstallSecrets(t *testing.T) {
	src := secretDir(t, map[string][]byte{"etcd-password": []byte("pw\n"), "secrets.key": bytes.Repeat([]byte("k"), 32)})
	src2 := secretDir(t, map[string][]byte{"ca.key": []byte("key"), "ca.crt": []byte("crt")})
	dst, dst2 := filepath.Join(t.TempDir(), "s"), filepath.Join(t.TempDir(), "ca")
	for i := 0; i < 2; i++ { // a restarted init container installs again
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"install-secrets", src + ":" + dst, src2 + ":" + dst2}, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		if !strings.Contains(out.String(), "installed 2 files") {
			t.Fatalf("%q", out.String())
		}
	}
	for _, f := range []string{filepath.Join(dst, "etcd-password"), filepath.Join(dst, "secrets.key"), filepath.Join(dst2, "ca.key"), filepath.Join(dst2, "ca.crt")} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "etcd-password")); string(b) != "pw\n" {
		t.Fatalf("etcd-password: %q", b)
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: mode %v, want 0700", dst, fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dst)
	if len(entries) != 2 {
		t.Fatalf("%d entries in %s, want the 2 files (no ..data)", len(entries), dst)
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"install-secrets", src}, &bytes.Buffer{}, &errb); code != 2 {
		t.Fatalf("no destination: exit %d", code)
	}
}
