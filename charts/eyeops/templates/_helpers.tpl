{{- define "eyeops.fullname" -}}
{{- if contains "eyeops" .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-eyeops" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "eyeops.labels" -}}
app.kubernetes.io/name: eyeops
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "eyeops.selector" -}}
app.kubernetes.io/name: eyeops
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "eyeops.image" -}}
{{- $repo := .image.repository -}}
{{- if .root.Values.imageRegistry -}}{{ printf "%s/%s:%s" .root.Values.imageRegistry $repo .image.tag }}{{- else -}}{{ printf "%s:%s" $repo .image.tag }}{{- end -}}
{{- end -}}

{{/* Restricted Pod Security: every pod, every container. */}}
{{- define "eyeops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
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
