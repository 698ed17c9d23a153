{{/* A Ray pod template (head or worker) for the RayService and the training RayJob.
     include "tradeloop.rayPod" (dict "ctx" $ "component" "training" "head" true "resources" …
       optional: "image" "gpus" "gpuResource" "nodeSelector" "tolerations" "ports" "extraEnv"
       "serviceAccount" "automount") */}}
{{- define "tradeloop.rayPod" -}}
{{- $ := .ctx -}}
metadata:
  labels:
    {{- include "tradeloop.labels" (list $ .component) | nindent 4 }}
    {{- include "tradeloop.storeClientLabel" $ | nindent 4 }}
    tradeloop.io/ray-role: {{ ternary "head" "worker" .head }}
spec:
  serviceAccountName: {{ .serviceAccount | default (include "tradeloop.component" (list $ .component)) }}
  {{- /* Only the RayService head mounts a token: KubeRay binds the Ray autoscaler's Role to it. */}}
  automountServiceAccountToken: {{ default false .automount }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "tradeloop.podSecurityContext" $ | nindent 4 }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" .head }}
      image: {{ .image | default (include "tradeloop.image" $) }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      env:
        {{- include "tradeloop.env" $ | nindent 8 }}
        - name: RAY_USAGE_STATS_ENABLED
          value: "0"
        {{- with .extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- $res := deepCopy .resources }}
        {{- if .gpus }}
        {{- $_ := set $res "limits" (merge (dict .gpuResource (toString .gpus)) (default dict $res.limits)) }}
        {{- end }}
        {{- toYaml $res | nindent 8 }}
      securityContext:
        {{- include "tradeloop.containerSecurityContext" $ | nindent 8 }}
      volumeMounts:
        {{- include "tradeloop.volumeMounts" $ | nindent 8 }}
        - name: dshm
          mountPath: /dev/shm
  volumes:
    {{- include "tradeloop.volumes" $ | nindent 4 }}
    - name: dshm
      emptyDir:
        medium: Memory
        sizeLimit: 2Gi
  {{- with .nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "tradeloop.rayHeadPorts" -}}
- {name: gcs-server, containerPort: 6379, protocol: TCP}
- {name: dashboard, containerPort: 8265, protocol: TCP}
- {name: client, containerPort: 10001, protocol: TCP}
- {name: metrics, containerPort: 8080, protocol: TCP}
{{- end -}}

{{/* Ray Serve's config for the RayService (ray.serve.schema.ServeDeploySchema). The application
     builder takes the same settings as `tradeloop serve`; the stores come from the pods' env. */}}
{{- define "tradeloop.serveConfig" -}}
{{- $rs := .Values.serving.rayservice -}}
proxy_location: EveryNode
http_options:
  host: 0.0.0.0
  port: 8000
grpc_options:
  port: 9000
  grpc_servicer_functions:
    - services.predictor.grpc_predict_v2_pb2.add_GRPCInferenceServiceServicer_to_server
applications:
  - name: tradeloop
    route_prefix: /
    import_path: {{ $rs.importPath }}
    args:
      home: {{ .Values.home.mountPath }}
      {{- with include "tradeloop.mlflowUri" . }}
      mlflow_uri: {{ . }}
      {{- end }}
      {{- with .Values.serving.maxFeatureAge }}
      max_feature_age: {{ . | quote }}
      {{- end }}
      poll_s: {{ .Values.serving.pollInterval }}
      max_rows: {{ .Values.serving.maxRows }}
      log_predictions: {{ .Values.serving.logPredictions }}
    deployments:
      - name: TradeloopDeployment
        autoscaling_config:
          min_replicas: {{ $rs.minReplicas }}
          max_replicas: {{ $rs.maxReplicas }}
          target_ongoing_requests: {{ $rs.targetOngoingRequests }}
{{- end -}}
