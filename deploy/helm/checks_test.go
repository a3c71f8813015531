package helm

import (
	"os"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// workload is a rendered pod template and what owns it.
type workload struct {
	name   string // "cache" or "origin"
	kind   string
	labels map[string]string
	pod    corev1.PodSpec
	claims []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
}

func workloads(r rendered) []workload {
	var ws []workload
	for _, o := range r.objects {
		switch o := o.(type) {
		case *appsv1.StatefulSet:
			ws = append(ws, workload{o.Spec.Template.Labels["app.kubernetes.io/component"], "StatefulSet", o.Spec.Template.Labels, o.Spec.Template.Spec, o.Spec.VolumeClaimTemplates})
		case *appsv1.Deployment:
			ws = append(ws, workload{o.Spec.Template.Labels["app.kubernetes.io/component"], "Deployment", o.Spec.Template.Labels, o.Spec.Template.Spec, nil})
		}
	}
	return ws
}

// checkPod checks the security context, the probes and the volumes.
func checkPod(t *testing.T, w workload) {
	t.Helper()
	psc := w.pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: the pod must run as a non-root user: %+v", w.kind, psc)
	}
	if w.pod.AutomountServiceAccountToken == nil || *w.pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not use", w.kind)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range w.pod.Volumes {
		volumes[v.Name] = v
	}
	for _, c := range w.claims {
		volumes[c.Name] = corev1.Volume{Name: c.Name}
	}
	if w.kind == "StatefulSet" && len(w.claims) == 0 {
		t.Errorf("the cache StatefulSet has no volume per node")
	}
	all := append(append([]corev1.Container{}, w.pod.InitContainers...), w.pod.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("container %s: no security context", c.Name)
			continue
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: the root file system is writable", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: allows privilege escalation", c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
			t.Errorf("container %s: capabilities %+v, want all dropped", c.Name, sc.Capabilities)
		}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				t.Errorf("container %s mounts volume %q, which the pod does not have", c.Name, m.Name)
			}
		}
	}
	for _, c := range w.pod.Containers {
		if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("container %s: liveness probe %+v, want GET /healthz", c.Name, p)
		}
		if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
			t.Errorf("container %s: readiness probe %+v, want GET /readyz", c.Name, p)
		}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p == nil || p.HTTPGet == nil {
				continue
			}
			if !hasPort(c, p.HTTPGet.Port.String()) {
				t.Errorf("container %s: a probe uses port %s, which it does not declare", c.Name, p.HTTPGet.Port.String())
			}
		}
	}
}

func hasPort(c corev1.Container, name string) bool {
	for _, p := range c.Ports {
		if p.Name == name {
			return true
		}
	}
	return false
}

// checkDisruptionBudget checks that a PodDisruptionBudget selects the
// workload's pods.
func checkDisruptionBudget(t *testing.T, r rendered, w workload) {
	t.Helper()
	for _, o := range r.objects {
		if pdb, ok := o.(*policyv1.PodDisruptionBudget); ok {
			if labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(w.labels)) {
				if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
					t.Errorf("PodDisruptionBudget %s limits nothing", pdb.Name)
				}
				return
			}
		}
	}
	t.Errorf("no PodDisruptionBudget selects the %s pods", w.name)
}

// checkServiceMonitors checks that each ServiceMonitor selects exactly one
// Service, one with an http port, and sets the job label the rules use.
func checkServiceMonitors(t *testing.T, r rendered) {
	t.Helper()
	for _, o := range r.objects {
		sm, ok := o.(*monitoringv1.ServiceMonitor)
		if !ok {
			continue
		}
		var matched []*corev1.Service
		for _, o := range r.objects {
			if svc, ok := o.(*corev1.Service); ok && labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) {
				matched = append(matched, svc)
			}
		}
		if len(matched) != 1 {
			t.Errorf("ServiceMonitor %s selects %d Services; each pod must be scraped once", sm.Name, len(matched))
			continue
		}
		job := ""
		for _, rl := range sm.Spec.Endpoints[0].RelabelConfigs {
			if rl.TargetLabel == "job" && rl.Replacement != nil {
				job = *rl.Replacement
			}
		}
		if job != "dtrcache-"+sm.Labels["app.kubernetes.io/component"] {
			t.Errorf("ServiceMonitor %s: job %q", sm.Name, job)
		}
	}
}

// secretsIn returns the values of the keys holding secrets in a value
// file (password, htpasswd).
func secretsIn(t *testing.T, set string) []string {
	t.Helper()
	if set == "" {
		return nil
	}
	b, err := os.ReadFile(set)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && s != "" && (k == "password" || k == "htpasswd") {
					out = append(out, strings.TrimSpace(s))
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return out
}

// checkNoSecretsInConfigMaps checks that every secret of the value set is
// in a Secret and in no ConfigMap.
func checkNoSecretsInConfigMaps(t *testing.T, r rendered, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		for _, cm := range r.configMaps {
			for k, v := range cm.Data {
				if strings.Contains(v, s) {
					t.Errorf("ConfigMap %s, key %s, holds a secret", cm.Name, k)
				}
			}
		}
		found := false
		for _, sec := range r.secrets {
			for _, v := range sec.Data {
				found = found || strings.Contains(string(v), s)
			}
		}
		if !found {
			t.Errorf("a secret of the values is in no Secret")
		}
	}
}
