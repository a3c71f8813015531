package helm

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtrcache/dtrcache/cmd/dtrcache/config"
	"github.com/dtrcache/dtrcache/policy"
	corev1 "k8s.io/api/core/v1"
)

// podFS is a pod's volumes laid out under a temporary directory, as
// kubelet would mount them: ConfigMap keys as files, Secret keys as files
// of mode 0440 (defaultMode 0400 plus the group bits an fsGroup adds),
// empty directories for emptyDir and volume claims.
type podFS struct {
	root   string
	mounts []corev1.VolumeMount // of every container, longest path first
}

// host returns where a container path lies in the tree.
func (p *podFS) host(path string) string { return filepath.Join(p.root, path) }

// rewrite replaces the container paths in text (configuration files) by
// their places in the tree, in one pass (a rewritten path is not
// rewritten again).
func (p *podFS) rewrite(text string) string {
	alts := make([]string, len(p.mounts))
	for i, m := range p.mounts {
		alts[i] = regexp.QuoteMeta(m.MountPath)
	}
	re := regexp.MustCompile(`(?m)(^|[\s"'\[,])(` + strings.Join(alts, "|") + `)(/|[\s"'\],]|$)`)
	return re.ReplaceAllStringFunc(text, func(s string) string {
		m := re.FindStringSubmatch(s)
		return m[1] + p.host(m[2]) + m[3]
	})
}

func layOut(t *testing.T, r rendered, w workload) *podFS {
	t.Helper()
	p := &podFS{root: t.TempDir()}
	volumes := map[string]corev1.Volume{}
	for _, v := range w.pod.Volumes {
		volumes[v.Name] = v
	}
	seen := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, w.pod.InitContainers...), w.pod.Containers...) {
		for _, m := range c.VolumeMounts {
			if seen[m.MountPath] {
				continue
			}
			seen[m.MountPath] = true
			p.mounts = append(p.mounts, m)
			dir := p.host(m.MountPath)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			v := volumes[m.Name]
			switch {
			case v.ConfigMap != nil:
				cm, ok := r.configMaps[v.ConfigMap.Name]
				if !ok {
					t.Fatalf("volume %s: ConfigMap %s is not rendered", v.Name, v.ConfigMap.Name)
				}
				for k, data := range cm.Data {
					writeFile(t, filepath.Join(dir, k), []byte(data), 0o644)
				}
			case v.Secret != nil:
				writeSecret(t, r, dir, v.Secret.SecretName, v.Secret.Items)
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.Secret == nil {
						t.Fatalf("volume %s: a projected source that is not a Secret", v.Name)
					}
					writeSecret(t, r, dir, s.Secret.Name, s.Secret.Items)
				}
			}
		}
	}
	sort.Slice(p.mounts, func(i, j int) bool { return len(p.mounts[i].MountPath) > len(p.mounts[j].MountPath) })
	return p
}

// writeSecret writes the keys of a Secret the chart rendered, or
// placeholders for one made outside the chart (existingSecret).
func writeSecret(t *testing.T, r rendered, dir, name string, items []corev1.KeyToPath) {
	t.Helper()
	sec, chartMade := r.secrets[name]
	if chartMade && len(items) == 0 {
		for k := range sec.Data {
			items = append(items, corev1.KeyToPath{Key: k, Path: k})
		}
	}
	if !chartMade && len(items) == 0 {
		// A whole external Secret mounted: the origin's signing keys.
		for name, data := range keyPair(t) {
			writeFile(t, filepath.Join(dir, name), data, 0o440)
		}
		return
	}
	for _, it := range items {
		var data []byte
		if chartMade {
			d, ok := sec.Data[it.Key]
			if !ok {
				t.Fatalf("Secret %s has no key %q", name, it.Key)
			}
			data = d
		} else {
			data = placeholder(t, it.Key)
		}
		writeFile(t, filepath.Join(dir, it.Path), data, 0o440)
	}
}

// placeholder returns what a Secret made outside the chart holds under
// key: a bcrypt htpasswd line, a self-signed CA certificate and its key
// (PEM) for the TLS and CA keys, a 32-byte key, or a password.
func placeholder(t *testing.T, key string) []byte {
	t.Helper()
	switch key {
	case "tls.crt", "ca.crt":
		cert, _ := selfSigned(t)
		return cert
	case "tls.key", "ca.key":
		_, k := selfSigned(t)
		return k
	case "secrets.key":
		return bytes.Repeat([]byte("k"), 32)
	}
	if key == "htpasswd" {
		h, err := policy.HashPassword("placeholder", 4)
		if err != nil {
			t.Fatal(err)
		}
		return []byte("admin:" + h + "\n")
	}
	return []byte("placeholder for " + key + "\n")
}

var (
	certOnce        sync.Once
	certPEM, keyPEM []byte
)

// selfSigned returns a self-signed CA certificate and its PKCS #8 key.
func selfSigned(t *testing.T) (cert, key []byte) {
	t.Helper()
	certOnce.Do(func() {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chart test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"localhost"},
			KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			panic(err)
		}
		p8, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			panic(err)
		}
		certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
	})
	return certPEM, keyPEM
}

// keyPair returns the files of a key directory made by `dtrcache keys generate`.
func keyPair(t *testing.T) map[string][]byte {
	t.Helper()
	k, err := policy.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	priv, pub, err := policy.WriteKeyPair(dir, k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, p := range []string{priv, pub} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(p)] = b
	}
	return files
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// configArg returns the --config argument of a container.
func configArg(t *testing.T, c corev1.Container) string {
	t.Helper()
	for i, a := range c.Args {
		if a == "--config" && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
	}
	t.Fatalf("container %s has no --config argument: %q", c.Name, c.Args)
	return ""
}

// checkConfig checks the configuration the main container reads in the
// pod's file tree, with the paths rewritten into it: `dtrcache <command>
// --check` must accept it (the checks dtrcache makes before serving,
// every file it names present), the directories it writes to must be on
// writable volumes, and the pod's termination grace must cover the
// configured shutdown grace.
func checkConfig(t *testing.T, r rendered, w workload) {
	t.Helper()
	fs := layOut(t, r, w)
	c := w.pod.Containers[0]
	path := configArg(t, c)
	raw, err := os.ReadFile(fs.host(path))
	if err != nil {
		t.Fatalf("--config %s is in no mounted ConfigMap: %v", path, err)
	}
	text := fs.rewrite(string(raw))
	runInitContainers(t, fs, w)
	var grace time.Duration
	switch c.Args[0] {
	case "cache":
		cfg, err := config.ParseCache([]byte(text), path)
		if err != nil {
			t.Fatalf("dtrcache refuses the rendered cache.yml: %v\n%s", err, raw)
		}
		if err := cfg.Normalize(); err != nil {
			t.Fatalf("dtrcache refuses the rendered cache.yml: %v\n%s", err, raw)
		}
		checkWritable(t, fs, w, "storage.root", cfg.Storage.Root)
		grace = cfg.Shutdown.D()
	case "origin":
		cfg, err := config.ParseOrigin([]byte(text), path)
		if err != nil {
			t.Fatalf("dtrcache refuses the rendered origin.yml: %v\n%s", err, raw)
		}
		if err := cfg.Normalize(); err != nil {
			t.Fatalf("dtrcache refuses the rendered origin.yml: %v\n%s", err, raw)
		}
		checkWritable(t, fs, w, "data_dir", cfg.DataDir)
		grace = cfg.Shutdown.D()
	default:
		t.Fatalf("container %s runs %q", c.Name, c.Args[0])
	}
	rewritten := filepath.Join(t.TempDir(), filepath.Base(path))
	writeFile(t, rewritten, []byte(text), 0o644)
	if out, err := exec.Command(dtrcacheBinary(t), c.Args[0], "--check", "--config", rewritten).CombinedOutput(); err != nil {
		t.Fatalf("dtrcache %s --check refuses the rendered configuration: %v\n%s\n%s", c.Args[0], err, out, raw)
	}
	if tg := w.pod.TerminationGracePeriodSeconds; tg == nil || time.Duration(*tg)*time.Second <= grace {
		t.Errorf("terminationGracePeriodSeconds %v does not cover shutdown_grace %s", tg, grace)
	}
}

// checkWritable checks that path is in a writable mount of the main container.
func checkWritable(t *testing.T, fs *podFS, w workload, key, path string) {
	t.Helper()
	for _, m := range w.pod.Containers[0].VolumeMounts {
		if h := fs.host(m.MountPath); path == h || strings.HasPrefix(path, h+"/") {
			if m.ReadOnly {
				t.Errorf("%s %s is on a read-only mount", key, path)
			}
			return
		}
	}
	t.Errorf("%s %s is on no volume: the root file system is read-only", key, path)
}

// runInitContainers runs the pod's init containers (`dtrcache keys
// import`, `dtrcache install-secrets`, copying keys and passwords out of
// their Secrets) on the tree.
func runInitContainers(t *testing.T, fs *podFS, w workload) {
	t.Helper()
	for _, c := range w.pod.InitContainers {
		args := append([]string(nil), c.Args...)
		for i, a := range args {
			if !strings.HasPrefix(a, "/") {
				continue
			}
			parts := strings.Split(a, ":") // install-secrets' SRC:DST
			for j := range parts {
				parts[j] = fs.host(parts[j])
			}
			args[i] = strings.Join(parts, ":")
		}
		if out, err := exec.Command(dtrcacheBinary(t), args...).CombinedOutput(); err != nil {
			t.Fatalf("init container %s %q: %v\n%s", c.Name, c.Args, err, out)
		}
	}
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// dtrcacheBinary builds cmd/dtrcache once per test binary.
func dtrcacheBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "dtrcache-chart-test-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "dtrcache"), "../../cmd/dtrcache").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "dtrcache")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
