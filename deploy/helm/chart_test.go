// Package helm holds the tests of the dtrcache Helm chart (deploy/helm/dtrcache):
// every object `helm template` renders for the value sets in testdata
// decodes strictly into the Kubernetes API types, and the configuration
// files it renders load with dtrcache's own configuration loader in a
// file tree laid out as the pod's volumes would be.
package helm

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
)

// kubeVersion is the Kubernetes version the chart is rendered for.
const kubeVersion = "1.31.0"

// rendered is the output of `helm template`, decoded.
type rendered struct {
	objects    []runtime.Object
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

// helmBinary returns the helm command, or skips the test.
func helmBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("helm")
	if err != nil {
		if gobin := filepath.Join(os.Getenv("HOME"), "go", "bin", "helm"); fileExists(gobin) {
			return gobin
		}
		t.Skip("SKIP: helm not installed (make deps installs it with go install)")
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// template runs helm template with the value files given.
func template(t *testing.T, helm string, values ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "t", "dtrcache", "--namespace", "registry", "--kube-version", kubeVersion}
	for _, v := range values {
		args = append(args, "-f", v)
	}
	cmd := exec.Command(helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, &helmError{stderr.String()}
	}
	return out, nil
}

type helmError struct{ stderr string }

func (e *helmError) Error() string { return "helm template: " + e.stderr }

// decoder decodes YAML strictly: an unknown or duplicated field is an
// error, as it would be for `kubectl apply --validate=strict`.
func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}

// decode splits helm's output into documents and decodes each strictly.
func decode(t *testing.T, out []byte) rendered {
	t.Helper()
	dec := decoder(t)
	r := rendered{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, gvk, err := dec.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decoding %s:\n%v\n%s", firstLine(doc), err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *corev1.Secret:
			r.secrets[o.Name] = o
		case *appsv1.StatefulSet, *appsv1.Deployment, *corev1.Service, *corev1.PersistentVolumeClaim,
			*policyv1.PodDisruptionBudget, *monitoringv1.ServiceMonitor, *monitoringv1.PrometheusRule:
		default:
			t.Fatalf("unexpected kind %s", gvk)
		}
		r.objects = append(r.objects, obj)
	}
	if len(r.objects) == 0 {
		t.Fatal("helm rendered no objects")
	}
	return r
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func firstLine(doc string) string {
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "# Source:") {
			return l
		}
	}
	return strings.SplitN(doc, "\n", 2)[0]
}

// valueSets are the value files the chart is rendered with ("" is the
// chart's defaults).
func valueSets(t *testing.T) []string {
	t.Helper()
	sets, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(sets) < 4 {
		t.Fatalf("value sets in testdata: %v, %v", sets, err)
	}
	return append([]string{""}, sets...)
}

// readChart reads every file of the chart, so that go test's result cache
// knows the test depends on them (helm reads them in another process).
func readChart(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("dtrcache", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			_, err = os.ReadFile(p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestChartRendersValidObjects(t *testing.T) {
	helm := helmBinary(t)
	readChart(t)
	for _, set := range valueSets(t) {
		name := strings.TrimSuffix(filepath.Base(set), ".yaml")
		if set == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			var values []string
			if set != "" {
				values = []string{set}
			}
			out, err := template(t, helm, values...)
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, out)
			secretValues := secretsIn(t, set)
			checkNoSecretsInConfigMaps(t, r, secretValues)
			for _, w := range workloads(r) {
				t.Run(w.name, func(t *testing.T) {
					checkPod(t, w)
					checkDisruptionBudget(t, r, w)
					checkConfig(t, r, w)
				})
			}
			checkServiceMonitors(t, r)
		})
	}
}

func TestChartRefusesBadValues(t *testing.T) {
	helm := helmBinary(t)
	readChart(t)
	sets, _ := filepath.Glob("testdata/refused/*.yaml")
	if len(sets) == 0 {
		t.Fatal("no value sets in testdata/refused")
	}
	for _, set := range sets {
		t.Run(strings.TrimSuffix(filepath.Base(set), ".yaml"), func(t *testing.T) {
			b, err := os.ReadFile(set)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: the first line must be '# want: <message>'", set)
			}
			_, err = template(t, helm, set)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("helm template: %v; want an error with %q", err, want)
			}
		})
	}
}
