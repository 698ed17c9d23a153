{{/* Names ------------------------------------------------------------------------------------ */}}
{{- define "tradeloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tradeloop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>" : include "tradeloop.component" (list . "predictor") */}}
{{- define "tradeloop.component" -}}
{{- printf "%s-%s" (include "tradeloop.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels -------------------------------------------------------------------------------------- */}}
{{- define "tradeloop.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "tradeloop.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tradeloop.labels" -}}
{{- $ctx := index . 0 -}}
{{ include "tradeloop.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tradeloop
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $ctx.Chart.Name $ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Pods that reach the stores (Redis, PostgreSQL, MLflow) carry this label; the stores' network
     policies admit exactly them. */}}
{{- define "tradeloop.storeClientLabel" -}}
tradeloop.io/store-client: "true"
{{- end -}}

{{/* Image ----------------------------------------------------------------------------------------- */}}
{{- define "tradeloop.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Security: the restricted Pod Security profile ---------------------------------------------------- */}}
{{- define "tradeloop.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "tradeloop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Stores: where each one is, for the env below ------------------------------------------------------ */}}
{{- define "tradeloop.mlflowUri" -}}
{{- if .Values.mlflow.externalUri -}}
{{- .Values.mlflow.externalUri -}}
{{- else if .Values.mlflow.enabled -}}
{{- printf "http://%s:%d" (include "tradeloop.component" (list . "mlflow")) (int .Values.mlflow.port) -}}
{{- end -}}
{{- end -}}

{{- define "tradeloop.postgresql.secretName" -}}
{{- default (include "tradeloop.component" (list . "postgresql")) .Values.postgresql.auth.existingSecret -}}
{{- end -}}

{{- define "tradeloop.postgresql.host" -}}
{{- include "tradeloop.component" (list . "postgresql") -}}
{{- end -}}

{{/* Environment of every tradeloop container: home, Feast repository, stores. */}}
{{- define "tradeloop.env" -}}
- name: TRADELOOP_HOME
  value: {{ .Values.home.mountPath | quote }}
- name: TRADELOOP_FEATURE_REPO
  value: /app/feature_repo
- name: HOME
  value: /tmp
{{- with (include "tradeloop.mlflowUri" .) }}
- name: MLFLOW_TRACKING_URI
  value: {{ . | quote }}
{{- end }}
{{- if .Values.redis.enabled }}
- name: TRADELOOP_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "tradeloop.component" (list . "redis")) | quote }}
{{- else if .Values.redis.external.existingSecret }}
- name: TRADELOOP_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.external.existingSecret }}
      key: {{ .Values.redis.external.secretKey }}
{{- end }}
{{- if .Values.postgresql.enabled }}
- name: TRADELOOP_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "tradeloop.postgresql.secretName" . }}
      key: password
- name: TRADELOOP_REGISTRY_URL
  value: {{ printf "postgresql+psycopg://%s:$(TRADELOOP_POSTGRES_PASSWORD)@%s:5432/feast" .Values.postgresql.auth.username (include "tradeloop.postgresql.host" .) | quote }}
{{- else if .Values.postgresql.external.existingSecret }}
- name: TRADELOOP_REGISTRY_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgresql.external.existingSecret }}
      key: {{ .Values.postgresql.external.secretKey }}
{{- end }}
{{- with .Values.serving.maxFeatureAge }}
- name: TRADELOOP_MAX_FEATURE_AGE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Volumes of every tradeloop pod: the shared home and a writable /tmp (the root is read-only). */}}
{{- define "tradeloop.homeClaim" -}}
{{- default (include "tradeloop.component" (list . "home")) .Values.home.persistence.existingClaim -}}
{{- end -}}

{{- define "tradeloop.volumes" -}}
- name: home
  persistentVolumeClaim:
    claimName: {{ include "tradeloop.homeClaim" . }}
- name: tmp
  emptyDir:
    sizeLimit: 2Gi
{{- end -}}

{{- define "tradeloop.volumeMounts" -}}
- name: home
  mountPath: {{ .Values.home.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The predictor's command line (deployment and inferenceservice modes). */}}
{{- define "tradeloop.serveArgs" -}}
- serve
- --engine
- kserve
- --host
- 0.0.0.0
- --http-port
- {{ .Values.serving.ports.http | quote }}
- --grpc-port
- {{ .Values.serving.ports.grpc | quote }}
- --workers
- {{ .Values.serving.workers | quote }}
- --poll-interval
- {{ .Values.serving.pollInterval | quote }}
- --max-rows
- {{ .Values.serving.maxRows | quote }}
{{- if not .Values.serving.logPredictions }}
- --no-log
{{- end }}
{{- end -}}

{{/* Readiness: model loaded (v2 ready); liveness: the server answers. */}}
{{- define "tradeloop.predictorProbes" -}}
readinessProbe:
  httpGet:
    path: /v2/health/ready
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /v2/health/live
    port: http
  periodSeconds: 20
  timeoutSeconds: 3
  failureThreshold: 3
startupProbe:
  httpGet:
    path: /v2/health/live
    port: http
  periodSeconds: 5
  failureThreshold: 60
{{- end -}}

{{/* Where clients reach the predictor, by mode. */}}
{{- define "tradeloop.predictorUrl" -}}
{{- if eq .Values.serving.mode "inferenceservice" -}}
{{- printf "http://%s-predictor" (include "tradeloop.fullname" .) -}}
{{- else -}}
{{- printf "http://%s:%d" (include "tradeloop.component" (list . "predictor")) (int .Values.serving.ports.http) -}}
{{- end -}}
{{- end -}}

{{/* One POSIX shell word: 'text' with every ' written as '"'"'. */}}
{{- define "tradeloop.shquote" -}}
{{- printf "'%s'" (replace "'" "'\"'\"'" .) -}}
{{- end -}}
