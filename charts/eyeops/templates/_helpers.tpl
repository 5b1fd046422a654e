{{- define "eyeops.fullname" -}}
{{- if contains "eyeops" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-eyeops" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "eyeops.labels" -}}
{{ include "eyeops.stableLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that do not change with the chart's version: KServe copies an InferenceService's labels
onto its pods, so a version label there would restart every model pod on each chart bump. */}}
{{- define "eyeops.stableLabels" -}}
app.kubernetes.io/name: eyeops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* pods.labels and pods.annotations, as the keys of a pod template's metadata (or of an
InferenceService component, whose labels and annotations KServe puts on its pods). */}}
{{- define "eyeops.podLabels" -}}
{{- with .Values.pods.labels }}{{ toYaml . }}{{ end -}}
{{- end -}}
{{- define "eyeops.podAnnotations" -}}
{{- with .Values.pods.annotations }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* Scheduling and pull secrets of every pod (pods.*, imagePullSecrets), as PodSpec keys. */}}
{{- define "eyeops.podPlacement" -}}
{{- $p := .Values.pods -}}
{{- with $p.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $p.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "eyeops.selector" -}}
app.kubernetes.io/name: eyeops
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image: [imageRegistry/]repository:tag, pinned by @digest when the image has one (a tag can
be moved, a digest cannot). */}}
{{- define "eyeops.image" -}}
{{- $repo := .image.repository -}}
{{- $name := ternary (printf "%s/%s" .root.Values.imageRegistry $repo) $repo (ne .root.Values.imageRegistry "") -}}
{{- printf "%s:%s" $name .image.tag -}}
{{- with .image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/* Restricted Pod Security: every pod, every container. */}}
{{- define "eyeops.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.pods.runAsUser }}
runAsUser: {{ . }}
runAsGroup: {{ . }}
fsGroup: {{ . }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "eyeops.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "eyeops.wants" -}}
{{- $v := toString .value -}}
{{- if or (eq $v "true") (and (eq $v "auto") (.root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) -}}yes{{- end -}}
{{- end -}}

{{- define "eyeops.monitorUrl" -}}
{{ printf "http://%s-monitor.%s.svc.cluster.local" (include "eyeops.fullname" .) .Release.Namespace }}
{{- end -}}

{{/* Where KServe's payload loggers post: the monitor's sink port, admitted only from InferenceService pods. */}}
{{- define "eyeops.monitorSinkUrl" -}}
{{ printf "http://%s-monitor.%s.svc.cluster.local:%v" (include "eyeops.fullname" .) .Release.Namespace .Values.monitor.sinkPort }}
{{- end -}}

{{/* Environment of the Feast cluster profile (feature_repo/feature_store.cluster.yaml) from a Secret. */}}
{{- define "eyeops.feastEnv" -}}
{{- $secret := .secret -}}
{{- range $var, $key := dict "EYEOPS_FEAST_REGISTRY_URL" "registry_url" "EYEOPS_FEAST_REDIS" "redis" "EYEOPS_FEAST_PG_HOST" "pg_host" "EYEOPS_FEAST_PG_DATABASE" "pg_database" "EYEOPS_FEAST_PG_USER" "pg_user" "EYEOPS_FEAST_PG_PASSWORD" "pg_password" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $key }}}
{{- end }}
{{- end -}}

{{- define "eyeops.componentPod" -}}
automountServiceAccountToken: false
securityContext:
  {{- include "eyeops.podSecurityContext" . | nindent 2 }}
{{- include "eyeops.podPlacement" . }}
{{- end -}}

{{- define "eyeops.feastContainer" -}}
image: {{ include "eyeops.image" (dict "root" .root "image" .root.Values.feast.image) }}
imagePullPolicy: {{ .root.Values.imagePullPolicy }}
env:
  - {name: HOME, value: /tmp}
  - {name: EYEOPS_FEAST_OFFLINE, value: postgres}
  {{- include "eyeops.feastEnv" (dict "secret" .root.Values.feast.secret) | nindent 2 }}
securityContext:
  {{- include "eyeops.containerSecurityContext" .root | nindent 2 }}
volumeMounts:
  - {name: tmp, mountPath: /tmp}
  {{- include "eyeops.featureStoreMount" . | nindent 2 }}
{{- end -}}

{{- define "eyeops.featureStoreMount" -}}
- {name: feature-store, mountPath: /app/feature_repo/feature_store.yaml, subPath: feature_store.yaml, readOnly: true}
{{- end -}}

{{- define "eyeops.featureStoreVolume" -}}
- name: feature-store
  configMap: {name: {{ include "eyeops.fullname" . }}-feature-store}
{{- end -}}

{{- define "eyeops.serviceCredentials" -}}
{{ .Values.credentials.existingSecret | default (printf "%s-service-credentials" (include "eyeops.fullname" .)) }}
{{- end -}}

{{/* The keys of the internal credentials (besides the hashed registries made from them). */}}
{{- define "eyeops.credentialKeys" -}}
triton-key lens-predictor-token monitor-token console-session-key console-proxy-secret monitor-read-token
{{- end -}}

{{/*
The release's internal credentials, made once per render and shared by every template (kept in
.Values under a key the schema cannot accept from a user): the ones a live Secret holds (lookup on
a cluster), new ones where it holds none. With credentials.existingSecret: what that Secret holds
on the cluster, or nothing where no cluster answers.
*/}}
{{- define "eyeops.credentialValues" -}}
{{- if not (hasKey .Values "__credentials") -}}
{{- $old := (lookup "v1" "Secret" .Release.Namespace (include "eyeops.serviceCredentials" .)) | default dict -}}
{{- $kept := get $old "data" | default dict -}}
{{- $values := dict -}}
{{- if .Values.credentials.existingSecret -}}
{{- range $key, $value := $kept }}{{ $_ := set $values $key ($value | b64dec) }}{{ end -}}
{{- else -}}
{{- range $key := splitList " " (include "eyeops.credentialKeys" .) -}}
{{- $value := get $kept $key | default "" -}}
{{- $_ := set $values $key (ternary (randAlphaNum 48) ($value | b64dec) (eq $value "")) -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values "__credentials" $values -}}
{{- end -}}
{{- get .Values "__credentials" | toJson -}}
{{- end -}}

{{/* Pod annotation of every pod that reads the credentials: a rotation changes it, so they all roll. */}}
{{- define "eyeops.credentialsChecksum" -}}
eyeops.io/credentials: {{ printf "%s/%s" (include "eyeops.credentialValues" .) .Values.credentials.rotation | sha256sum | trunc 16 | quote }}
{{- end -}}

{{/* Triton's restricted APIs: everything but health needs the key (eyeops.stack.triton's list). */}}
{{- define "eyeops.tritonRestricted" -}}
{{- $apis := "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging" -}}
- --http-restricted-api={{ $apis }}:x-eyeops-triton-key=$(EYEOPS_TRITON_KEY)
- --grpc-restricted-protocol={{ $apis }}:x-eyeops-triton-key=$(EYEOPS_TRITON_KEY)
{{- end -}}

{{/* A transformer's own service account: its identity in the mesh (templates/authorizationpolicy.yaml). */}}
{{- define "eyeops.transformerServiceAccount" -}}
{{ printf "%s-%s-transformer" (include "eyeops.fullname" .root) .name }}
{{- end -}}

{{- define "eyeops.transformerIdentity" -}}
serviceAccountName: {{ include "eyeops.transformerServiceAccount" . }}
{{- include "eyeops.componentMetadata" .root }}
  {{- include "eyeops.featureStoreChecksum" .root | nindent 2 }}
  {{- if include "eyeops.istioAuthorization" .root }}
  # Istio's sidecar proves this identity to the cluster-local gateway (mTLS).
  sidecar.istio.io/inject: "true"
  {{- end }}
{{- end -}}

{{/* Non-empty when the predictors are closed at the cluster-local gateway (Knative with Istio). */}}
{{- define "eyeops.istioAuthorization" -}}
{{- if and (eq .Values.kserve.deploymentMode "Knative") .Values.kserve.istio.authorizationPolicy -}}
true
{{- end -}}
{{- end -}}

{{/* Non-empty when the OCR transformer calls Triton over gRPC (ocr.transformer.tritonProtocol). */}}
{{- define "eyeops.tritonGrpc" -}}
{{- $p := .Values.ocr.transformer.tritonProtocol -}}
{{- $knative := eq .Values.kserve.deploymentMode "Knative" -}}
{{- if and (eq $p "grpc") $knative -}}
{{- fail "ocr.transformer.tritonProtocol: grpc needs kserve.deploymentMode Standard (a Knative revision serves one port, Triton's HTTP); use auto or http" -}}
{{- end -}}
{{- if or (eq $p "grpc") (and (eq $p "auto") (not $knative)) -}}
true
{{- end -}}
{{- end -}}

{{/* An InferenceService component's labels and annotations (KServe puts them on its pods): the
credentials checksum, pods.labels and pods.annotations; then what the caller adds under them. */}}
{{- define "eyeops.componentMetadata" -}}
{{- with .Values.pods.labels }}
labels:
  {{- toYaml . | nindent 2 }}
{{- end }}
annotations:
  {{- include "eyeops.credentialsChecksum" . | nindent 2 }}
  {{- include "eyeops.podAnnotations" . | nindent 2 }}
{{- end -}}

{{/* KServe's autoscaling fields of an InferenceService component (.autoscaling): the metric and
target asked for, else the deployment mode's measured ones ("kserve": none, KServe's defaults);
the metric must suit the deployment mode. */}}
{{- define "eyeops.autoscaling" -}}
{{- $a := .autoscaling -}}
{{- $mode := .root.Values.kserve.deploymentMode -}}
{{- $knative := eq $mode "Knative" -}}
{{- $measured := index ($a.measured | default dict) $mode | default dict -}}
{{- $metric := $a.scaleMetric | default ($measured.scaleMetric | default "") -}}
{{- $target := $a.scaleTarget -}}
{{- if and (not $target) (eq $metric ($measured.scaleMetric | default "")) }}
{{- $target = $measured.scaleTarget | default 0 -}}
{{- end }}
{{- if eq $metric "kserve" }}
{{- $metric = "" -}}
{{- end }}
{{- if $metric }}
{{- if and (not $knative) (has $metric (list "concurrency" "rps")) }}
{{- fail (printf "%s.autoscaling.scaleMetric: %s needs kserve.deploymentMode Knative (Standard mode's HPA scales on cpu or memory)" .name $metric) }}
{{- end }}
scaleMetric: {{ $metric }}
{{- end }}
{{- with $target }}
scaleTarget: {{ . }}
{{- end }}
{{- with $a.containerConcurrency }}
containerConcurrency: {{ . }}
{{- end }}
{{- with $a.timeout }}
timeout: {{ . }}
{{- end }}
{{- end -}}

{{/* Liveness of a KServe model server or Triton: the process answers at all (readiness, its own
probe, says whether it serves). Generous, so a long request or a model load never kills it. */}}
{{- define "eyeops.liveness" -}}
livenessProbe:
  httpGet: {path: /v2/health/live, port: 8080}
  periodSeconds: 15
  timeoutSeconds: 5
  failureThreshold: 8
{{- end -}}

{{/* Pods that read feature_store.yaml (mounted with subPath, which never updates in place) roll
when it changes. */}}
{{- define "eyeops.featureStoreChecksum" -}}
eyeops.io/feature-store: {{ toYaml .Values.feast.featureStore | sha256sum | trunc 16 | quote }}
{{- end -}}

{{/*
eyeops.isvcName: the InferenceService name of a role ("ocr" or "lens"): `<role>.name`, by default
the role itself. Two releases in one namespace name theirs apart; KServe derives the predictor's
and transformer's Services (<name>-predictor, <name>-transformer) and the pods' label from it.
*/}}
{{- define "eyeops.isvcName" -}}
{{- (index .root.Values .role).name | default .role -}}
{{- end -}}
