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
{{- end }}

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
