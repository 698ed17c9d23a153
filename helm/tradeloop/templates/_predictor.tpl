{{/* The predictor pod (deployment mode), and its container (shared with the InferenceService). */}}
{{- define "tradeloop.predictorContainer" -}}
image: {{ include "tradeloop.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command: [tradeloop]
args:
  {{- include "tradeloop.serveArgs" . | nindent 2 }}
env:
  {{- include "tradeloop.env" . | nindent 2 }}
ports:
  - name: http
    containerPort: {{ .Values.serving.ports.http }}
    protocol: TCP
  - name: grpc
    containerPort: {{ .Values.serving.ports.grpc }}
    protocol: TCP
{{- include "tradeloop.predictorProbes" . | nindent 0 }}
resources:
  {{- toYaml .Values.serving.resources | nindent 2 }}
securityContext:
  {{- include "tradeloop.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  {{- include "tradeloop.volumeMounts" . | nindent 2 }}
{{- end -}}

{{- define "tradeloop.predictorPodSpec" -}}
serviceAccountName: {{ include "tradeloop.component" (list . "predictor") }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "tradeloop.podSecurityContext" . | nindent 2 }}
terminationGracePeriodSeconds: 45
containers:
  - name: predictor
    {{- include "tradeloop.predictorContainer" . | nindent 4 }}
volumes:
  {{- include "tradeloop.volumes" . | nindent 2 }}
{{- with .Values.serving.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serving.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.serving.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
