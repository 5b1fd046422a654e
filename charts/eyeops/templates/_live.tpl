{{/*
What the cluster already runs, for values that the platform, not Helm, changes after install.
Kept in a file of its own so that the chart's tests can stand in for the cluster (offline, `lookup`
answers nothing).

eyeops.liveInferenceService: the InferenceService `.name` of this namespace as the API server has
it, as JSON ("{}" when there is none, or no cluster: helm template, Argo CD).
*/}}
{{- define "eyeops.liveInferenceService" -}}
{{- lookup "serving.kserve.io/v1beta1" "InferenceService" .root.Release.Namespace .name | toJson -}}
{{- end -}}

{{/*
eyeops.storageUri: the model an InferenceService serves. The pipelines' promotion patches the live
object's storageUri; with kserve.keepPromotedModels an upgrade keeps it instead of putting back the
values' storageUri (which then only chooses the model of a first install).
*/}}
{{- define "eyeops.storageUri" -}}
{{- $promoted := "" -}}
{{- if .root.Values.kserve.keepPromotedModels -}}
{{- $live := include "eyeops.liveInferenceService" . | fromJson -}}
{{- $promoted = dig "spec" "predictor" "model" "storageUri" "" $live -}}
{{- end -}}
{{- $promoted | default .values -}}
{{- end -}}
