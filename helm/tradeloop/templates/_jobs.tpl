{{/* A pod that runs one tradeloop command to completion (Feast jobs).
     include "tradeloop.jobPod" (list $ "feast" (list "features" "apply")) */}}
{{- define "tradeloop.jobPod" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
metadata:
  labels:
    {{- include "tradeloop.labels" (list $ $component) | nindent 4 }}
    {{- include "tradeloop.storeClientLabel" $ | nindent 4 }}
spec:
  restartPolicy: Never
  serviceAccountName: {{ include "tradeloop.component" (list $ $component) }}
  automountServiceAccountToken: false
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "tradeloop.podSecurityContext" $ | nindent 4 }}
  containers:
    - name: {{ index . 2 | join "-" }}
      image: {{ include "tradeloop.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      command: [tradeloop]
      args:
        {{- toYaml (index . 2) | nindent 8 }}
      env:
        {{- include "tradeloop.env" $ | nindent 8 }}
      resources:
        {{- toYaml $.Values.feast.resources | nindent 8 }}
      securityContext:
        {{- include "tradeloop.containerSecurityContext" $ | nindent 8 }}
      volumeMounts:
        {{- include "tradeloop.volumeMounts" $ | nindent 8 }}
  volumes:
    {{- include "tradeloop.volumes" $ | nindent 4 }}
{{- end -}}
