{{/* Names, labels and small helpers shared by the templates. */}}

{{- define "dtrcache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dtrcache.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* dtrcache.component: "<fullname>-<component>", for (dict "ctx" $ "component" "cache"). */}}
{{- define "dtrcache.component" -}}
{{- printf "%s-%s" (include "dtrcache.fullname" .ctx | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "dtrcache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dtrcache.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dtrcache.labels" -}}
{{ include "dtrcache.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: dtrcache
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "dtrcache.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* dtrcache.cacheName: the cache's name at the origin (the token audience). */}}
{{- define "dtrcache.cacheName" -}}
{{- default (include "dtrcache.fullname" .) .Values.cache.name -}}
{{- end -}}

{{/* dtrcache.originURL: the origin of this release, as the cache reaches it. */}}
{{- define "dtrcache.originURL" -}}
{{- $scheme := ternary "https" "http" (ne .Values.origin.tls.secretName "") -}}
{{- printf "%s://%s.%s.svc:%v" $scheme (include "dtrcache.component" (dict "ctx" . "component" "origin")) .Release.Namespace .Values.origin.service.port -}}
{{- end -}}

{{/*
dtrcache.budget: the store's byte budget in dtrcache's size syntax:
cache.storage.maxSize, or 90 % of the volume's size (a Kubernetes quantity
such as 200Gi, 500G or 1Ti), in MiB or MB.
*/}}
{{- define "dtrcache.budget" -}}
{{- $s := .Values.cache.storage -}}
{{- if $s.maxSize -}}
{{- $s.maxSize -}}
{{- else -}}
{{- $q := toString $s.size -}}
{{- $num := regexFind "^[0-9]+" $q -}}
{{- $unit := trimPrefix $num $q -}}
{{- $mib := dict "Mi" 1 "Gi" 1024 "Ti" 1048576 -}}
{{- $mb := dict "M" 1 "G" 1000 "T" 1000000 -}}
{{- if hasKey $mib $unit -}}
{{- printf "%dMiB" (div (mul (atoi $num) (get $mib $unit) 9) 10) -}}
{{- else if hasKey $mb $unit -}}
{{- printf "%dMB" (div (mul (atoi $num) (get $mb $unit) 9) 10) -}}
{{- else -}}
{{- fail (printf "cache.storage.size %q: use Mi, Gi, Ti, M, G or T, or set cache.storage.maxSize" $q) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* dtrcache.probes: startup, liveness and readiness probes on /healthz and /readyz. */}}
{{- define "dtrcache.probes" -}}
{{- $scheme := ternary "HTTPS" "HTTP" .tls -}}
startupProbe:
  httpGet: {path: /healthz, port: http, scheme: {{ $scheme }}}
  periodSeconds: 5
  failureThreshold: {{ .startupFailures }}
livenessProbe:
  httpGet: {path: /healthz, port: http, scheme: {{ $scheme }}}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: http, scheme: {{ $scheme }}}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* dtrcache.secretItem: a projected volume source for one key of a Secret. */}}
{{- define "dtrcache.secretItem" -}}
- secret:
    name: {{ .name }}
    items: [{key: {{ .key }}, path: {{ .path }}}]
{{- end -}}
