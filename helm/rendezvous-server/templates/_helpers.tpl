{{- define "rendezvous.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rendezvous.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "rendezvous.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rendezvous.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rendezvous.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rendezvous.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the Redis password: the operator's own, or the one this chart creates. */}}
{{- define "rendezvous.redisSecret" -}}
{{- if .Values.redis.existingSecret }}{{ .Values.redis.existingSecret }}{{ else }}{{ include "rendezvous.fullname" . }}-redis{{ end }}
{{- end }}

{{/*
  What an installation cannot do without, checked in one place so a plain `helm install` names
  everything missing at once. Included by every template that uses these values, so whichever of
  them Helm renders first reports it.
*/}}
{{- define "rendezvous.validate" -}}
{{- $missing := list }}
{{- if not .Values.image.repository }}
{{- $missing = append $missing "image.repository: this project publishes no image; build it from the repository's Dockerfile, push it to a registry your cluster pulls from, and name it here (README: Container image)" }}
{{- end }}
{{- if not .Values.config.publicBaseUrl }}
{{- $missing = append $missing "config.publicBaseUrl: the URL clients reach this service at, e.g. https://rendezvous.example.org (session URLs are built from it)" }}
{{- end }}
{{- if and (eq .Values.redis.mode "single") (not .Values.redis.url) }}
{{- $missing = append $missing "redis.url: the Redis all replicas share, e.g. redis://redis-master.redis:6379 (redis.mode single)" }}
{{- else if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinels) }}
{{- $missing = append $missing "redis.sentinels: host:port,... of the Sentinels (redis.mode sentinel)" }}
{{- else if and (eq .Values.redis.mode "cluster") (not .Values.redis.clusterNodes) }}
{{- $missing = append $missing "redis.clusterNodes: host:port,... of some Cluster nodes (redis.mode cluster)" }}
{{- end }}
{{- if $missing }}
{{- fail (printf "\nrequired values are not set:\n  - %s" (join "\n  - " $missing)) }}
{{- end }}
{{- /* Another topology's location would be dropped without a word; the server refuses two topologies. */}}
{{- range $key, $mode := dict "url" "single" "sentinels" "sentinel" "clusterNodes" "cluster" }}
{{- if and (get $.Values.redis $key) (ne $.Values.redis.mode $mode) }}
{{- fail (printf "redis.%s is set, but redis.mode is %s: it applies only with redis.mode %s (the chart would leave it out; the server refuses two Redis topologies): set redis.mode %s, or clear redis.%s" $key $.Values.redis.mode $mode $mode $key) }}
{{- end }}
{{- end }}
{{- if and .Values.redis.existingSecretSentinelPasswordKey (ne .Values.redis.mode "sentinel") }}
{{- fail (printf "redis.existingSecretSentinelPasswordKey is set, but redis.mode is %s: the Sentinels' password applies only with redis.mode sentinel (the server refuses RZ_REDIS_SENTINEL_PASSWORD otherwise)" .Values.redis.mode) }}
{{- end }}
{{- $redisTls := or .Values.redis.tls.enabled (and (eq .Values.redis.mode "single") (hasPrefix "rediss://" (lower (toString .Values.redis.url)))) }}
{{- if and .Values.redis.tls.existingSecret (not $redisTls) }}
{{- fail "redis.tls.existingSecret is set, but TLS to Redis is off: set redis.tls.enabled true or use a rediss:// redis.url (the server refuses TLS files without TLS, which would leave the connection plaintext)" }}
{{- end }}
{{- if .Values.metrics.separatePort }}
{{- if eq (int .Values.metrics.port) (int .Values.containerPort) }}
{{- fail (printf "metrics.port (%s) must differ from containerPort (%s): the server refuses RZ_METRICS_PORT equal to PORT; to serve /metrics on the main port, set metrics.separatePort false instead" (include "rendezvous.envValue" .Values.metrics.port) (include "rendezvous.envValue" .Values.containerPort)) }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.service.port) }}
{{- fail (printf "metrics.port (%s) must differ from service.port (%s): the Service exposes both, and Kubernetes refuses a Service with two ports of one number" (include "rendezvous.envValue" .Values.metrics.port) (include "rendezvous.envValue" .Values.service.port)) }}
{{- end }}
{{- end }}
{{- if and (not .Values.metrics.separatePort) (ne .Values.service.type "ClusterIP") }}
{{- fail (printf "service.type %s with metrics.separatePort false would publish /metrics (a %s Service is reachable from outside the cluster, and /metrics would be on its port): keep metrics on their own port" .Values.service.type .Values.service.type) }}
{{- end }}
{{- with .Values.config.host }}
{{- if or (eq (lower .) "localhost") (hasPrefix "127." .) (eq . "::1") }}
{{- fail (printf "config.host %s is the pod's loopback: the kubelet's probes and the Service reach a pod at its own address, so no pod would ever be ready. Leave it empty (every address) or name an address the pod has" .) }}
{{- end }}
{{- end }}
{{- $probeMs := mul (int .Values.probes.readiness.timeoutSeconds) 1000 }}
{{- if le (int $probeMs) (int .Values.config.redisCommandTimeoutMs) }}
{{- fail (printf "probes.readiness.timeoutSeconds (%v) must exceed config.redisCommandTimeoutMs (%v ms): /ready waits that long for a Redis that does not answer, and a probe that times out first takes every pod out of the Service in a Redis outage, where they should stay in to answer clients with the server's JSON 503" .Values.probes.readiness.timeoutSeconds .Values.config.redisCommandTimeoutMs) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%v) must not exceed autoscaling.maxReplicas (%v): Kubernetes refuses such a HorizontalPodAutoscaler" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if not (dig "requests" "cpu" "" .Values.resources) }}
{{- fail "autoscaling.enabled scales on CPU utilisation, a percentage of resources.requests.cpu: set one (e.g. 100m), or the HorizontalPodAutoscaler can never compute it and never scales" }}
{{- end }}
{{- end }}
{{- $drain := add .Values.config.shutdownDelaySeconds .Values.config.shutdownGraceSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdownDelaySeconds + config.shutdownGraceSeconds (%v), or the kubelet kills pods mid-drain" .Values.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- include "rendezvous.validateRegion" . }}
{{- end }}

{{/*
  The region values the server would refuse at start (src/region/settings.ts), refused here first,
  each naming the value: peers or the secret without this release's own region, peers without the
  shared secret, peers naming this release's own region, an accepted secret without the shared one. A region with the secret and no peers is
  accepted, as the server accepts it. What only the cluster holds (the secret's length, the Secret's
  keys) is checked by the server when the pod starts.
*/}}
{{- define "rendezvous.validateRegion" -}}
{{- $r := .Values.region }}
{{- $problems := list }}
{{- if not $r.name }}
{{- if $r.peers }}
{{- $problems = append $problems "region.peers needs region.name, this release's own region (the server refuses RZ_REGION_PEERS without RZ_REGION)" }}
{{- end }}
{{- if $r.existingSecret }}
{{- $problems = append $problems "region.existingSecret needs region.name, this release's own region (the server refuses RZ_REGION_SECRET_FILE without RZ_REGION)" }}
{{- end }}
{{- else if $r.peers }}
{{- if hasKey $r.peers $r.name }}
{{- $problems = append $problems (printf "region.peers.%s names this release's own region (region.name); list only the other regions" $r.name) }}
{{- end }}
{{- if not $r.existingSecret }}
{{- $problems = append $problems "region.peers needs region.existingSecret: the Secret holding the secret all regions share (forwards carry it; the server refuses RZ_REGION_PEERS without it)" }}
{{- end }}
{{- end }}
{{- if and $r.name $r.acceptedSecretKey (not $r.existingSecret) }}
{{- $problems = append $problems "region.acceptedSecretKey needs region.existingSecret, the Secret that holds both (the server refuses RZ_REGION_ACCEPTED_SECRET without RZ_REGION_SECRET)" }}
{{- end }}
{{- if $problems }}
{{- fail (printf "\ninconsistent region values:\n  - %s" (join "\n  - " $problems)) }}
{{- end }}
{{- end }}

{{/*
  A value as an environment variable's text. YAML numbers from a values file reach the templates as
  float64, which toString writes in exponent form from a million up (1048576 as 1.048576e+06, which
  the server refuses: only digits); a whole one is written as its digits, as --set's integers are.
  Anything else (strings, booleans, fractions) as toString writes it.
*/}}
{{- define "rendezvous.envValue" -}}
{{- if kindIs "float64" . }}
{{- if eq . (floor .) }}{{ printf "%.0f" . }}{{ else }}{{ toString . }}{{ end }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
  The TCP ports the pods reach Redis on, as a JSON list: the port of redis.url (6379, the Redis
  default, when it names none) in mode single, each Sentinel's in mode sentinel, each listed Cluster
  node's in mode cluster; then networkPolicy.egress.redisPorts, the ports the values cannot name
  (the data nodes Sentinels hand out, Cluster nodes beyond those listed). Each port once.
*/}}
{{- define "rendezvous.redisPorts" -}}
{{- $r := .Values.redis }}
{{- $ports := list }}
{{- if eq $r.mode "single" }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" (urlParse $r.url).host) }}
{{- $ports = append $ports (atoi (default "6379" $port)) }}
{{- else }}
{{- range splitList "," (ternary $r.sentinels $r.clusterNodes (eq $r.mode "sentinel")) }}
{{- with trim . }}
{{- $ports = append $ports (atoi (regexFind "[0-9]+$" .)) }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.networkPolicy.egress.redisPorts }}
{{- $ports = append $ports (int .) }}
{{- end }}
{{- uniq $ports | toJson }}
{{- end }}

{{/* RZ_REGION_PEERS from region.peers: name=url,name=url, by name. */}}
{{- define "rendezvous.regionPeers" -}}
{{- $peers := list }}
{{- range $name, $url := .Values.region.peers }}
{{- $peers = append $peers (printf "%s=%s" $name $url) }}
{{- end }}
{{- join "," $peers }}
{{- end }}

{{/*
  The TCP ports the pods forward to the other regions on, as a JSON list: each peer URL's explicit
  port, else 443 for https and 80 for http.
*/}}
{{- define "rendezvous.regionPeerPorts" -}}
{{- $ports := list }}
{{- range $name, $url := .Values.region.peers }}
{{- $u := urlParse $url }}
{{- $port := regexFind "[0-9]+$" (regexFind ":[0-9]+$" $u.host) }}
{{- if not $port }}
{{- $port = ternary "443" "80" (eq $u.scheme "https") }}
{{- end }}
{{- $ports = append $ports (atoi $port) }}
{{- end }}
{{- uniq $ports | toJson }}
{{- end }}

{{/* Where the shared region secret and the peers' CA are mounted (files, never environment values). */}}
{{- define "rendezvous.regionSecretFile" -}}/etc/rendezvous/region-secret/secret{{- end }}
{{- define "rendezvous.regionAcceptedSecretFile" -}}/etc/rendezvous/region-secret/accepted{{- end }}
{{- define "rendezvous.regionCaFile" -}}/etc/rendezvous/region-tls/ca.crt{{- end }}

{{- define "rendezvous.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end }}

{{- define "rendezvous.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}{{ default (include "rendezvous.fullname" .) .Values.serviceAccount.name }}{{ else }}{{ default "default" .Values.serviceAccount.name }}{{ end }}
{{- end }}

{{/*
  Labels of the `helm test` pod: a name of its own, so neither the Service (it would become an
  endpoint), the PodDisruptionBudget nor the NetworkPolicy (whose egress rules would cut it off from
  the Service) take it for a server pod; the NetworkPolicy lets it in by these.
*/}}
{{- define "rendezvous.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "rendezvous.name" . }}-check
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: check
{{- end }}
