{{/*
The cache's configuration, rendered into the cache.yml shape that
`dtrcache cache --config` reads (README, "Configuration"). Files in the pod:
  /etc/dtrcache/config/cache.yml, *.pem  the ConfigMap (no secrets)
  /etc/dtrcache/secrets-mounted/*     passwords (projected from Secrets), and
  /etc/dtrcache/ca-mounted/*          cache.forwardProxy.caSecret, which the
                                      init container copies (mode 0600) to
  /run/dtrcache/secrets, /run/dtrcache/ca   (in memory)
  /etc/dtrcache/tls/tls.{crt,key}     cache.tls.secretName
  /var/lib/dtrcache                   the node's volume (storage.root)
*/}}

{{- define "dtrcache.cache.upstreams" -}}
{{- $c := .Values.cache -}}
{{- if $c.redirect.upstreams -}}
{{- toJson $c.redirect.upstreams -}}
{{- else if .Values.origin.enabled -}}
{{- toJson (list (include "dtrcache.originURL" .)) -}}
{{- else -}}
{{- fail "cache.redirect.upstreams: required in redirect mode (the origin's URL), unless origin.enabled" -}}
{{- end -}}
{{- end -}}

{{- define "dtrcache.cache.config" -}}
{{- $c := .Values.cache -}}
{{- $cfg := dict "log" (dict "level" $c.log.level "format" $c.log.format) -}}
{{- $_ := set $cfg "shutdown_grace" (printf "%ds" (int $c.shutdownGraceSeconds)) -}}
{{- $http := dict "addr" (printf ":%v" $c.port) -}}
{{- if $c.host }}{{ $_ := set $http "host" $c.host }}{{ end -}}
{{- if $c.tls.secretName -}}
{{- $_ := set $http "tls" (dict "certificate" "/etc/dtrcache/tls/tls.crt" "key" "/etc/dtrcache/tls/tls.key") -}}
{{- end -}}
{{- $_ := set $cfg "http" $http -}}
{{- $s := $c.storage -}}
{{- $storage := dict "root" "/var/lib/dtrcache" "max_size" (include "dtrcache.budget" .) "high_watermark" $s.highWatermark "low_watermark" $s.lowWatermark -}}
{{- if $s.blobTTL }}{{ $_ := set $storage "blob_ttl" $s.blobTTL }}{{ end -}}
{{- if $s.maxBlobSize }}{{ $_ := set $storage "max_blob_size" $s.maxBlobSize }}{{ end -}}
{{- $_ := set $cfg "storage" $storage -}}
{{- if $c.redirect.enabled -}}
{{- if not $c.name -}}
{{- fail "cache.name: required in redirect mode (the cache's name at the origin, which its tokens must carry)" -}}
{{- end -}}
{{- $_ := set $cfg "name" $c.name -}}
{{- $r := dict "upstreams" (include "dtrcache.cache.upstreams" . | fromJsonArray) -}}
{{- if $c.redirect.issuer }}{{ $_ := set $r "issuer" $c.redirect.issuer }}{{ end -}}
{{- if $c.redirect.username }}{{ $_ := set $r "username" $c.redirect.username }}{{ end -}}
{{- if or $c.redirect.password $c.redirect.existingSecret -}}
{{- if not $c.redirect.username -}}
{{- fail "cache.redirect.username: required with a password" -}}
{{- end -}}
{{- $_ := set $r "password_file" "/run/dtrcache/secrets/redirect-password" -}}
{{- end -}}
{{- if $c.redirect.caBundle }}{{ $_ := set $r "cas" (list "/etc/dtrcache/config/redirect-ca.pem") }}{{ end -}}
{{- if $c.redirect.jwksURL }}{{ $_ := set $r "keys" (dict "jwks_url" $c.redirect.jwksURL) }}{{ end -}}
{{- $_ := set $cfg "redirect" $r -}}
{{- else if $c.name -}}
{{- $_ := set $cfg "name" $c.name -}}
{{- end -}}
{{- if $c.mirror.enabled -}}
{{- $ups := list -}}
{{- range $c.mirror.upstreams -}}
{{- $u := dict "name" .name "url" .url -}}
{{- if .hosts }}{{ $_ := set $u "hosts" .hosts }}{{ end -}}
{{- if .username }}{{ $_ := set $u "username" .username }}{{ end -}}
{{- if or .password .existingSecret -}}
{{- $_ := set $u "password_file" (printf "/run/dtrcache/secrets/mirror-%s-password" .name) -}}
{{- end -}}
{{- if .caBundle }}{{ $_ := set $u "cas" (list (printf "/etc/dtrcache/config/mirror-%s-ca.pem" .name)) }}{{ end -}}
{{- $ups = append $ups $u -}}
{{- end -}}
{{- $m := dict "upstreams" $ups -}}
{{- if $c.mirror.default }}{{ $_ := set $m "default" $c.mirror.default }}{{ end -}}
{{- $_ := set $cfg "mirror" $m -}}
{{- end -}}
{{- $f := $c.forwardProxy -}}
{{- if $f.enabled -}}
{{- if not $f.caSecret -}}
{{- fail "cache.forwardProxy.caSecret: required (a Secret with ca.crt and ca.key from `dtrcache ca init`)" -}}
{{- end -}}
{{- $fp := dict "addr" (printf ":%v" $f.port) "ca_dir" "/run/dtrcache/ca" "intercept" $f.intercept -}}
{{- range $k := list "tunnel" "clients" "ports" "hosts" -}}
{{- if index $f $k }}{{ $_ := set $fp $k (index $f $k) }}{{ end -}}
{{- end -}}
{{- if $f.allowPrivate }}{{ $_ := set $fp "allow_private" $f.allowPrivate }}{{ end -}}
{{- if $f.caBundle }}{{ $_ := set $fp "cas" (list "/etc/dtrcache/config/forward-ca.pem") }}{{ end -}}
{{- $_ := set $cfg "forward_proxy" $fp -}}
{{- end -}}
{{- if not (or $c.redirect.enabled $c.mirror.enabled $f.enabled) -}}
{{- fail "cache: enable at least one of cache.redirect, cache.mirror or cache.forwardProxy" -}}
{{- end -}}
{{- $_ := set $cfg "fill" (dict "parallel" $c.fill.parallel "chunk_size" $c.fill.chunkSize "prefetch" $c.fill.prefetch) -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy $c.extraConfig)) -}}
{{- end -}}

{{/* dtrcache.cache.secretData: the passwords given in values, for the chart's Secret. */}}
{{- define "dtrcache.cache.secretData" -}}
{{- $c := .Values.cache -}}
{{- $d := dict -}}
{{- if and $c.redirect.enabled $c.redirect.password -}}
{{- if $c.redirect.existingSecret }}{{ fail "cache.redirect: set password or existingSecret, not both" }}{{ end -}}
{{- $_ := set $d "redirect-password" $c.redirect.password -}}
{{- end -}}
{{- if $c.mirror.enabled -}}
{{- range $c.mirror.upstreams -}}
{{- if .password -}}
{{- if .existingSecret }}{{ fail (printf "cache.mirror.upstreams[%s]: set password or existingSecret, not both" .name) }}{{ end -}}
{{- $_ := set $d (printf "mirror-%s-password" .name) .password -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $d -}}
{{- end -}}

{{/* dtrcache.cache.secretSources: the projected sources of /etc/dtrcache/secrets-mounted. */}}
{{- define "dtrcache.cache.secretSources" -}}
{{- $c := .Values.cache -}}
{{- $own := include "dtrcache.component" (dict "ctx" . "component" "cache") -}}
{{- $items := list -}}
{{- if $c.redirect.enabled -}}
{{- if $c.redirect.existingSecret -}}
{{- $items = append $items (dict "name" $c.redirect.existingSecret "key" "password" "path" "redirect-password") -}}
{{- else if $c.redirect.password -}}
{{- $items = append $items (dict "name" $own "key" "redirect-password" "path" "redirect-password") -}}
{{- end -}}
{{- end -}}
{{- if $c.mirror.enabled -}}
{{- range $c.mirror.upstreams -}}
{{- $path := printf "mirror-%s-password" .name -}}
{{- if .existingSecret -}}
{{- $items = append $items (dict "name" .existingSecret "key" "password" "path" $path) -}}
{{- else if .password -}}
{{- $items = append $items (dict "name" $own "key" $path "path" $path) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $items }}
{{ include "dtrcache.secretItem" . }}
{{- end -}}
{{- end -}}
