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
  Refuses values that were set with this message. `fail` stops `helm template` and `helm install`,
  but `helm lint` only logs it and renders on; asking for a template that does not exist is an
  error lint reports too, and its name carries the message. Never reached outside lint. (Values
  that are merely missing get a plain `fail`: lint without values passes, as Helm intends.)
*/}}
{{- define "rendezvous.refuse" -}}
{{- fail . }}
{{- include (printf "values refused: %s" .) . }}
{{- end }}

{{/*
  Every value the chart refuses, refused in one place: templates/validate/values.yaml includes this
  and nothing else, so Helm's error names that template (not whichever object it rendered first),
  and a plain `helm install` names everything missing at once.
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
{{- /* A plain `fail`: lint logs it and goes on, as Helm means it to, so the bare chart lints. */}}
{{- fail (printf "\nrequired values are not set:\n  - %s" (join "\n  - " $missing)) }}
{{- end }}
{{- /* Another topology's location would be dropped without a word; the server refuses two topologies. */}}
{{- range $key, $mode := dict "url" "single" "sentinels" "sentinel" "clusterNodes" "cluster" }}
{{- if and (get $.Values.redis $key) (ne $.Values.redis.mode $mode) }}
{{- include "rendezvous.refuse" (printf "redis.%s is set, but redis.mode is %s: it applies only with redis.mode %s (the chart would leave it out; the server refuses two Redis topologies): set redis.mode %s, or clear redis.%s" $key $.Values.redis.mode $mode $mode $key) }}
{{- end }}
{{- end }}
{{- if and .Values.redis.existingSecretSentinelPasswordKey (ne .Values.redis.mode "sentinel") }}
{{- include "rendezvous.refuse" (printf "redis.existingSecretSentinelPasswordKey is set, but redis.mode is %s: the Sentinels' password applies only with redis.mode sentinel (the server refuses RZ_REDIS_SENTINEL_PASSWORD otherwise)" .Values.redis.mode) }}
{{- end }}
{{- $redisTls := or .Values.redis.tls.enabled (and (eq .Values.redis.mode "single") (hasPrefix "rediss://" (lower (toString .Values.redis.url)))) }}
{{- if and .Values.redis.tls.existingSecret (not $redisTls) }}
{{- include "rendezvous.refuse" "redis.tls.existingSecret is set, but TLS to Redis is off: set redis.tls.enabled true or use a rediss:// redis.url (the server refuses TLS files without TLS, which would leave the connection plaintext)" }}
{{- end }}
{{- if .Values.metrics.separatePort }}
{{- if eq (int .Values.metrics.port) (int .Values.containerPort) }}
{{- include "rendezvous.refuse" (printf "metrics.port (%s) must differ from containerPort (%s): the server refuses RZ_METRICS_PORT equal to PORT; to serve /metrics on the main port, set metrics.separatePort false instead" (include "rendezvous.envValue" .Values.metrics.port) (include "rendezvous.envValue" .Values.containerPort)) }}
{{- end }}
{{- if eq (int .Values.metrics.port) (int .Values.service.port) }}
{{- include "rendezvous.refuse" (printf "metrics.port (%s) must differ from service.port (%s): the Service exposes both, and Kubernetes refuses a Service with two ports of one number" (include "rendezvous.envValue" .Values.metrics.port) (include "rendezvous.envValue" .Values.service.port)) }}
{{- end }}
{{- end }}
{{- if and (not .Values.metrics.separatePort) (ne .Values.service.type "ClusterIP") }}
{{- include "rendezvous.refuse" (printf "service.type %s with metrics.separatePort false would publish /metrics (a %s Service is reachable from outside the cluster, and /metrics would be on its port): keep metrics on their own port" .Values.service.type .Values.service.type) }}
{{- end }}
{{- with .Values.config.host }}
{{- if or (eq (lower .) "localhost") (hasPrefix "127." .) (eq . "::1") }}
{{- include "rendezvous.refuse" (printf "config.host %s is the pod's loopback: the kubelet's probes and the Service reach a pod at its own address, so no pod would ever be ready. Leave it empty (every address) or name an address the pod has" .) }}
{{- end }}
{{- end }}
{{- $probeMs := mul (int .Values.probes.readiness.timeoutSeconds) 1000 }}
{{- if le (int $probeMs) (int .Values.config.redisCommandTimeoutMs) }}
{{- include "rendezvous.refuse" (printf "probes.readiness.timeoutSeconds (%v) must exceed config.redisCommandTimeoutMs (%v ms): /ready waits that long for a Redis that does not answer, and a probe that times out first takes every pod out of the Service in a Redis outage, where they should stay in to answer clients with the server's JSON 503" .Values.probes.readiness.timeoutSeconds .Values.config.redisCommandTimeoutMs) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- include "rendezvous.refuse" (printf "autoscaling.minReplicas (%v) must not exceed autoscaling.maxReplicas (%v): Kubernetes refuses such a HorizontalPodAutoscaler" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if not (dig "requests" "cpu" "" .Values.resources) }}
{{- include "rendezvous.refuse" "autoscaling.enabled scales on CPU utilisation, a percentage of resources.requests.cpu: set one (e.g. 100m), or the HorizontalPodAutoscaler can never compute it and never scales" }}
{{- end }}
{{- end }}
{{- $drain := add .Values.config.shutdownDelaySeconds .Values.config.shutdownGraceSeconds }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int $drain) }}
{{- include "rendezvous.refuse" (printf "terminationGracePeriodSeconds (%v) must exceed config.shutdownDelaySeconds + config.shutdownGraceSeconds (%v), or the kubelet kills pods mid-drain" .Values.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- if not .Values.metrics.separatePort }}
{{- include "rendezvous.refuse" "ingress.enabled with metrics.separatePort false would publish /metrics: keep metrics on their own port" }}
{{- end }}
{{- if not .Values.ingress.hosts }}
{{- include "rendezvous.refuse" "ingress.hosts is required with ingress.enabled, e.g. [{host: rendezvous.example.org, paths: [{path: /, pathType: Prefix}]}]" }}
{{- end }}
{{- end }}
{{- $np := .Values.networkPolicy }}
{{- if and $np.enabled $np.egress.enabled (eq .Values.redis.mode "sentinel") (not $np.egress.redisPorts) }}
{{- include "rendezvous.refuse" "networkPolicy.egress.redisPorts: in redis.mode sentinel, name the port(s) of the data nodes the Sentinels hand out, e.g. [6379] (the Sentinels' own ports are read from redis.sentinels)" }}
{{- end }}
{{- $tls := .Values.redis.tls }}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) }}
{{- include "rendezvous.refuse" "redis.tls.certKey and redis.tls.keyKey go together: a client certificate needs its key (and a lone one would point at the directory)" }}
{{- end }}
{{- if and $tls.certKey (not $tls.existingSecret) }}
{{- include "rendezvous.refuse" "redis.tls.certKey and keyKey name keys of redis.tls.existingSecret: set it too" }}
{{- end }}
{{- if not (has .Values.redis.mode (list "single" "sentinel" "cluster")) }}
{{- include "rendezvous.refuse" "redis.mode must be single, sentinel or cluster" }}
{{- end }}
{{- include "rendezvous.validateEnv" . }}
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
{{- include "rendezvous.refuse" (printf "\ninconsistent region values:\n  - %s" (join "\n  - " $problems)) }}
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

{{/*
  Every variable the chart sets is collected first, so a config.extraEnv entry naming one of them
  is refused by name instead of rendering a duplicate key (the later one silently winning). Numbers
  are written by rendezvous.envValue: a values file's 1048576 as 1048576, never 1.048576e+06.
*/}}
{{- define "rendezvous.env" -}}
{{- $env := dict
  "PORT" (include "rendezvous.envValue" .Values.containerPort)
  "RZ_PUBLIC_BASE_URL" .Values.config.publicBaseUrl
  "RZ_TTL_SECONDS" (include "rendezvous.envValue" .Values.config.ttlSeconds)
  "RZ_MAX_BYTES" (include "rendezvous.envValue" .Values.config.maxBytes)
  "RZ_REDIS_COMMAND_TIMEOUT_MS" (include "rendezvous.envValue" .Values.config.redisCommandTimeoutMs)
  "RZ_SHUTDOWN_DELAY_SECONDS" (include "rendezvous.envValue" .Values.config.shutdownDelaySeconds)
  "RZ_SHUTDOWN_GRACE_SECONDS" (include "rendezvous.envValue" .Values.config.shutdownGraceSeconds)
  "LOG_LEVEL" .Values.config.logLevel
  "RZ_ACCESS_LOG" (include "rendezvous.envValue" .Values.config.accessLog)
  "RZ_TRUSTED_PROXIES" .Values.config.trustedProxies
  "RZ_LONGPOLL_MAX_WAIT_SECONDS" (include "rendezvous.envValue" .Values.config.longPollMaxWaitSeconds)
}}
{{- with .Values.config.host }}
{{- $_ := set $env "HOST" . }}
{{- end }}
{{- if eq .Values.redis.mode "single" }}
{{- $_ := set $env "REDIS_URL" .Values.redis.url }}
{{- else if eq .Values.redis.mode "sentinel" }}
{{- $_ := set $env "RZ_REDIS_SENTINELS" .Values.redis.sentinels }}
{{- $_ := set $env "RZ_REDIS_SENTINEL_MASTER" .Values.redis.sentinelMaster }}
{{- else if eq .Values.redis.mode "cluster" }}
{{- $_ := set $env "RZ_REDIS_CLUSTER_NODES" .Values.redis.clusterNodes }}
{{- end }}
{{- with .Values.redis.username }}
{{- $_ := set $env "RZ_REDIS_USERNAME" . }}
{{- end }}
{{- if .Values.redis.tls.enabled }}
{{- $_ := set $env "RZ_REDIS_TLS" "true" }}
{{- end }}
{{- if .Values.metrics.separatePort }}
{{- $_ := set $env "RZ_METRICS_PORT" (include "rendezvous.envValue" .Values.metrics.port) }}
{{- end }}
{{- with .Values.region.name }}
{{- $_ := set $env "RZ_REGION" . }}
{{- with include "rendezvous.regionPeers" $ }}
{{- $_ := set $env "RZ_REGION_PEERS" . }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* config.extraEnv names none of the chart's own variables (rendezvous.env) or files. */}}
{{- define "rendezvous.validateEnv" -}}
{{- $env := include "rendezvous.env" . | fromYaml }}
{{- $reserved := list "RZ_REDIS_PASSWORD" "RZ_REDIS_SENTINEL_PASSWORD" "RZ_REDIS_TLS_CA_FILE" "RZ_REDIS_TLS_CERT_FILE" "RZ_REDIS_TLS_KEY_FILE" }}
{{- /*
  The region settings are the chart's with or without regions on: set through config.extraEnv they
  would skip its region checks (rendezvous.validateRegion), and a secret there would sit in this
  ConfigMap. The forwarding knobs (RZ_REGION_CONNECT_TIMEOUT_MS and the like) stay open to it.
*/}}
{{- $regionVars := dict
  "RZ_REGION" "set region.name instead"
  "RZ_REGION_PEERS" "set region.peers instead"
  "RZ_REGION_SECRET" "the secret is never a plain value (it would sit in this ConfigMap): name the Secret holding it in region.existingSecret"
  "RZ_REGION_SECRET_FILE" "set region.existingSecret instead (the chart mounts it and sets the path)"
  "RZ_REGION_ACCEPTED_SECRET" "the secret is never a plain value (it would sit in this ConfigMap): set region.acceptedSecretKey, its key in region.existingSecret"
  "RZ_REGION_ACCEPTED_SECRET_FILE" "set region.acceptedSecretKey instead (the chart mounts it and sets the path)"
  "RZ_REGION_TLS_CA_FILE" "set region.tls.existingSecret instead (the chart mounts it and sets the path)"
}}
{{- range $name, $value := .Values.config.extraEnv }}
{{- if hasKey $regionVars $name }}
{{- include "rendezvous.refuse" (printf "config.extraEnv.%s: the region settings are the chart's own; %s" $name (get $regionVars $name)) }}
{{- end }}
{{- if or (hasKey $env $name) (has $name $reserved) }}
{{- include "rendezvous.refuse" (printf "config.extraEnv.%s: the chart sets %s itself; use its own value instead" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
