{{/*
The origin's configuration, in the origin.yml shape of `dtrcache origin
--config`. Files in the pod:
  /etc/dtrcache/config/origin.yml, policy.yml, *.pem   the ConfigMap
  /etc/dtrcache/secrets-mounted/*       htpasswd, passwords, the secrets key
                                        (projected), copied by an init
                                        container (mode 0600) to
  /run/dtrcache/secrets                 (in memory)
  /etc/dtrcache/keys-secret/*           the signing keys' Secret, which the
                                        other init container copies to
  /run/dtrcache/keys                    keys.dir (in memory)
  /etc/dtrcache/tls                     the serving certificate's Secret
  /etc/dtrcache/etcd-tls-mounted        etcd's client TLS, copied to /run/dtrcache/etcd-tls
  /var/lib/dtrcache                     data_dir (a volume, or empty with etcd)
*/}}

{{- define "dtrcache.origin.etcd" -}}
{{- if .Values.origin.state.etcd.endpoints }}true{{ end -}}
{{- end -}}

{{- define "dtrcache.origin.config" -}}
{{- $o := .Values.origin -}}
{{- if not $o.backend.url -}}
{{- fail "origin.backend.url: required (the registry behind the origin)" -}}
{{- end -}}
{{- if and (gt (int $o.replicas) 1) (not (include "dtrcache.origin.etcd" .)) -}}
{{- fail "origin.replicas > 1 needs the etcd state store: set origin.state.etcd.endpoints (Badger holds one replica's state)" -}}
{{- end -}}
{{- if not (or $o.auth.htpasswd $o.auth.existingSecret) -}}
{{- fail "origin.auth: set htpasswd (lines from `dtrcache htpasswd USER`) or existingSecret" -}}
{{- end -}}
{{- if and $o.auth.htpasswd $o.auth.existingSecret -}}
{{- fail "origin.auth: set htpasswd or existingSecret, not both" -}}
{{- end -}}
{{- if not (or $o.keys.existingSecret $o.keys.generate) -}}
{{- fail "origin.keys: set existingSecret (keys from `dtrcache keys generate`) or generate: true" -}}
{{- end -}}
{{- $cfg := dict "log" (dict "level" $o.log.level "format" $o.log.format) -}}
{{- $_ := set $cfg "shutdown_grace" (printf "%ds" (int $o.shutdownGraceSeconds)) -}}
{{- $http := dict "addr" (printf ":%v" $o.port) -}}
{{- if $o.tls.secretName -}}
{{- $_ := set $http "tls" (dict "certificate" "/etc/dtrcache/tls/tls.crt" "key" "/etc/dtrcache/tls/tls.key") -}}
{{- end -}}
{{- $_ := set $cfg "http" $http -}}
{{- $b := dict "url" $o.backend.url -}}
{{- if $o.backend.username }}{{ $_ := set $b "username" $o.backend.username }}{{ end -}}
{{- if or $o.backend.password $o.backend.existingSecret -}}
{{- if not $o.backend.username }}{{ fail "origin.backend.username: required with a password" }}{{ end -}}
{{- $_ := set $b "password_file" "/run/dtrcache/secrets/backend-password" -}}
{{- end -}}
{{- if $o.backend.caBundle }}{{ $_ := set $b "cas" (list "/etc/dtrcache/config/backend-ca.pem") }}{{ end -}}
{{- $_ := set $cfg "backend" $b -}}
{{- $_ := set $cfg "auth" (dict "htpasswd" "/run/dtrcache/secrets/htpasswd" "realm" $o.auth.realm) -}}
{{- $_ := set $cfg "policy" "/etc/dtrcache/config/policy.yml" -}}
{{- $_ := set $cfg "data_dir" "/var/lib/dtrcache" -}}
{{- $k := dict "dir" "/run/dtrcache/keys" "token_ttl" $o.keys.tokenTTL -}}
{{- if $o.keys.issuer }}{{ $_ := set $k "issuer" $o.keys.issuer }}{{ end -}}
{{- $_ := set $cfg "keys" $k -}}
{{- $probes := dict "health_interval" $o.caches.healthInterval "health_timeout" $o.caches.healthTimeout "prefetch_hints" $o.caches.prefetchHints -}}
{{- if $o.caches.caBundle }}{{ $_ := set $probes "cas" (list "/etc/dtrcache/config/caches-ca.pem") }}{{ end -}}
{{- $_ := set $cfg "caches" $probes -}}
{{- if include "dtrcache.origin.etcd" . -}}
{{- $e := $o.state.etcd -}}
{{- $etcd := dict "endpoints" $e.endpoints "prefix" $e.prefix "dial_timeout" $e.dialTimeout -}}
{{- if $e.username }}{{ $_ := set $etcd "username" $e.username }}{{ end -}}
{{- if or $e.password $e.existingSecret -}}
{{- if not $e.username }}{{ fail "origin.state.etcd.username: required with a password" }}{{ end -}}
{{- $_ := set $etcd "password_file" "/run/dtrcache/secrets/etcd-password" -}}
{{- end -}}
{{- if $e.tlsSecret -}}
{{- $_ := set $etcd "tls" (dict "ca" "/run/dtrcache/etcd-tls/ca.crt" "certificate" "/run/dtrcache/etcd-tls/tls.crt" "key" "/run/dtrcache/etcd-tls/tls.key") -}}
{{- end -}}
{{- $_ := set $cfg "state" (dict "etcd" $etcd) -}}
{{- /* Every replica must seal remote passwords with the same key. */ -}}
{{- $_ := set $cfg "policies" (dict "secret_key" "/run/dtrcache/secrets/secrets.key") -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $o.extraConfig)) -}}
{{- end -}}

{{/* dtrcache.origin.secretData: the secrets given in values, for the chart's Secret. */}}
{{- define "dtrcache.origin.secretData" -}}
{{- $o := .Values.origin -}}
{{- $d := dict -}}
{{- if $o.auth.htpasswd }}{{ $_ := set $d "htpasswd" $o.auth.htpasswd }}{{ end -}}
{{- if $o.backend.password -}}
{{- if $o.backend.existingSecret }}{{ fail "origin.backend: set password or existingSecret, not both" }}{{ end -}}
{{- $_ := set $d "backend-password" $o.backend.password -}}
{{- end -}}
{{- if and (include "dtrcache.origin.etcd" .) $o.state.etcd.password -}}
{{- if $o.state.etcd.existingSecret }}{{ fail "origin.state.etcd: set password or existingSecret, not both" }}{{ end -}}
{{- $_ := set $d "etcd-password" $o.state.etcd.password -}}
{{- end -}}
{{- toJson $d -}}
{{- end -}}

{{- define "dtrcache.origin.secretSources" -}}
{{- $o := .Values.origin -}}
{{- $own := include "dtrcache.component" (dict "ctx" . "component" "origin") -}}
{{- $items := list -}}
{{- if $o.auth.existingSecret -}}
{{- $items = append $items (dict "name" $o.auth.existingSecret "key" "htpasswd" "path" "htpasswd") -}}
{{- else -}}
{{- $items = append $items (dict "name" $own "key" "htpasswd" "path" "htpasswd") -}}
{{- end -}}
{{- if $o.backend.existingSecret -}}
{{- $items = append $items (dict "name" $o.backend.existingSecret "key" "password" "path" "backend-password") -}}
{{- else if $o.backend.password -}}
{{- $items = append $items (dict "name" $own "key" "backend-password" "path" "backend-password") -}}
{{- end -}}
{{- if include "dtrcache.origin.etcd" . -}}
{{- if $o.state.etcd.existingSecret -}}
{{- $items = append $items (dict "name" $o.state.etcd.existingSecret "key" "password" "path" "etcd-password") -}}
{{- else if $o.state.etcd.password -}}
{{- $items = append $items (dict "name" $own "key" "etcd-password" "path" "etcd-password") -}}
{{- end -}}
{{- $items = append $items (dict "name" (include "dtrcache.origin.secretKeySecret" .) "key" "secrets.key" "path" "secrets.key") -}}
{{- end -}}
{{- range $items }}
{{ include "dtrcache.secretItem" . }}
{{- end -}}
{{- end -}}

{{- define "dtrcache.origin.keysSecret" -}}
{{- default (include "dtrcache.component" (dict "ctx" . "component" "origin-keys")) .Values.origin.keys.existingSecret -}}
{{- end -}}

{{/* dtrcache.origin.secretKeySecret: the Secret with the key sealing remote passwords (etcd). */}}
{{- define "dtrcache.origin.secretKeySecret" -}}
{{- default (include "dtrcache.component" (dict "ctx" . "component" "origin-state")) .Values.origin.state.secretKeySecret -}}
{{- end -}}
