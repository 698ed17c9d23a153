{{/* The monitor's container and pod (CronJob or Deployment). */}}
{{- define "tradeloop.monitorContainer" -}}
{{- $m := .Values.monitor -}}
name: monitor
image: {{ include "tradeloop.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
command: [tradeloop]
args:
  - monitor
  {{- if eq $m.kind "deployment" }}
  - serve
  - --interval
  - {{ $m.interval | quote }}
  - --port
  - {{ $m.port | quote }}
  {{- else }}
  - check
  {{- end }}
  {{- if $m.github.dispatch }}
  - --dispatch
  {{- end }}
env:
  {{- include "tradeloop.env" . | nindent 2 }}
  {{- if $m.github.tokenSecret.name }}
  - name: GITHUB_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ $m.github.tokenSecret.name }}
        key: {{ $m.github.tokenSecret.key }}
  {{- end }}
  {{- with $m.github.repository }}
  - name: GITHUB_REPOSITORY
    value: {{ . | quote }}
  {{- end }}
  - name: GITHUB_API_URL
    value: {{ $m.github.apiUrl | quote }}
{{- if eq $m.kind "deployment" }}
ports:
  - name: metrics
    containerPort: {{ $m.port }}
    protocol: TCP
readinessProbe:
  tcpSocket:
    port: metrics
  periodSeconds: 15
livenessProbe:
  tcpSocket:
    port: metrics
  periodSeconds: 30
{{- end }}
resources:
  {{- toYaml $m.resources | nindent 2 }}
securityContext:
  {{- include "tradeloop.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  {{- include "tradeloop.volumeMounts" . | nindent 2 }}
{{- end -}}
{{- define "tradeloop.monitorPodSpec" -}}
serviceAccountName: {{ include "tradeloop.component" (list . "monitor") }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "tradeloop.podSecurityContext" . | nindent 2 }}
containers:
  - {{- include "tradeloop.monitorContainer" . | nindent 4 }}
volumes:
  {{- include "tradeloop.volumes" . | nindent 2 }}
{{- end -}}
