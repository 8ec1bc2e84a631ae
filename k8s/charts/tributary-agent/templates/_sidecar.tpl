{{/* The pod fragment the Kyverno policy merges into a labelled pod (a
strategic merge patch): the agent container, its config, token, state
and the shared logs emptyDir. The app's containers mount
tributary-agent-logs where they write their log files. */}}
{{- define "tributary-agent.sidecarPatch" -}}
{{- $fullname := include "tributary-agent.fullname" . -}}
spec:
  {{ if .Values.sidecar.native }}initContainers{{ else }}containers{{ end }}:
    - name: tributary-agent
      image: {{ include "tributary-agent.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- if .Values.sidecar.native }}
      # A native sidecar: started before the app, stopped after it.
      restartPolicy: Always
      {{- end }}
      args:
        - -config.file=/etc/tributary/agent.yml
        - -http.listen-addr=:{{ .Values.httpPort }}
      env:
        {{- include "tributary-agent.downwardEnv" . | nindent 8 }}
      ports:
        - name: tributary-http
          containerPort: {{ .Values.httpPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /-/healthy
          port: {{ .Values.httpPort }}
        periodSeconds: 20
      readinessProbe:
        httpGet:
          path: /-/ready
          port: {{ .Values.httpPort }}
        periodSeconds: 10
      resources:
        {{- toYaml .Values.sidecar.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.sidecar.securityContext | nindent 8 }}
      volumeMounts:
        - name: tributary-agent-config
          mountPath: /etc/tributary
          readOnly: true
        {{- include "tributary-agent.gatewayMounts" . | nindent 8 }}
        - name: tributary-agent-state
          mountPath: /var/lib/tributary-agent
        - name: tributary-agent-logs
          mountPath: {{ .Values.sidecar.logsDir }}
          readOnly: true
  volumes:
    - name: tributary-agent-config
      configMap:
        name: {{ $fullname }}-sidecar
    {{- include "tributary-agent.gatewayVolumes" . | nindent 4 }}
    - name: tributary-agent-state
      emptyDir: {}
    - name: tributary-agent-logs
      emptyDir: {}
{{- end -}}
