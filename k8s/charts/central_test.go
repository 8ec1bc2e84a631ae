package charts

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/tributary-io/tributary/internal/testenv"
)

// centralChart is the central chart's directory, relative to k8s/charts.
const centralChart = "tributary"

// centralExamples are the central chart's example values files; each is
// a whole install on its own (the defaults alone lack Kafka).
var centralExamples = []string{
	"examples/central-minimal.yaml",
	"examples/central-existing-kafka.yaml",
	"examples/central-strimzi.yaml",
	"examples/central-all-sinks.yaml",
}

// centralSinks are the ingesters' sinks, in the chart's order, with the
// value that holds each one's address.
var centralSinks = []struct{ name, addressKey string }{
	{"prometheus", "url"}, {"loki", "url"}, {"elasticsearch", "addresses"}, {"jaeger", "addresses"},
}

// TestCentralExamples renders each example as `helm template` does, lints
// it, decodes every object strictly, and checks what the chart promises:
// a spread, autoscaled, disruption-budgeted gateway with both ports; one
// ingester Deployment (with its PDB and a readiness on /-/ready) per
// enabled sink and none for the others; Secrets mounted read-only; non-root
// read-only containers; Strimzi objects exactly when Strimzi is on.
func TestCentralExamples(t *testing.T) {
	for _, file := range centralExamples {
		t.Run(filepath.Base(file), func(t *testing.T) {
			lint(t, centralChart, []string{file})
			vals := values(t, []string{file}, nil)
			objs := render(t, centralChart, "tributary", []string{file}, nil)
			typed, other := decodeStrict(t, objs)

			deployments := map[string]*appsv1.Deployment{}
			pdbs := map[string]*policyv1.PodDisruptionBudget{}
			hpas := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
			var services []*corev1.Service
			for _, o := range typed {
				switch o := o.(type) {
				case *appsv1.Deployment:
					deployments[o.Name] = o
				case *policyv1.PodDisruptionBudget:
					pdbs[o.Name] = o
				case *autoscalingv2.HorizontalPodAutoscaler:
					hpas[o.Name] = o
				case *corev1.Service:
					services = append(services, o)
				}
			}

			gw := deployments["rel-tributary-gateway"]
			if gw == nil {
				t.Fatalf("no gateway Deployment among %v", keys(deployments))
			}
			checkGateway(t, gw, pdbs, hpas, services)

			var want []string
			for _, s := range centralSinks {
				if lookup(vals, "ingesters", s.name, "enabled") == true {
					want = append(want, "rel-tributary-ingester-"+s.name)
				}
			}
			var got []string
			for name, d := range deployments {
				if name == gw.Name {
					continue
				}
				got = append(got, name)
				checkIngester(t, d, pdbs[name], hpas[name], vals)
			}
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Fatalf("ingester Deployments %v, want one per enabled sink: %v", got, want)
			}
			for _, d := range deployments {
				checkPodSecurity(t, d)
				checkSecretMounts(t, d)
			}

			strimzi := lookup(vals, "kafka", "strimzi", "enabled") == true
			checkStrimzi(t, other, strimzi)
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lookup walks nested maps of values; nil where a key is missing.
func lookup(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

func checkGateway(t *testing.T, gw *appsv1.Deployment, pdbs map[string]*policyv1.PodDisruptionBudget, hpas map[string]*autoscalingv2.HorizontalPodAutoscaler, services []*corev1.Service) {
	t.Helper()
	hpa := hpas[gw.Name]
	switch {
	case hpa != nil:
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 {
			t.Errorf("gateway HPA minReplicas %v, want >= 2", hpa.Spec.MinReplicas)
		}
		if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("gateway HPA metrics %+v, want CPU", hpa.Spec.Metrics)
		}
		if gw.Spec.Replicas != nil {
			t.Errorf("gateway replicas %d set while the HPA owns them", *gw.Spec.Replicas)
		}
	case gw.Spec.Replicas == nil || *gw.Spec.Replicas < 2:
		t.Errorf("gateway replicas %v without an HPA, want >= 2", gw.Spec.Replicas)
	}
	if pdb := pdbs[gw.Name]; pdb == nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("gateway PDB %+v, want maxUnavailable 1", pdbs[gw.Name])
	} else if !selects(pdb.Spec.Selector, gw.Spec.Template.Labels) {
		t.Errorf("gateway PDB selector %v does not select the gateway pods %v", pdb.Spec.Selector, gw.Spec.Template.Labels)
	}
	checkSpread(t, gw)

	c := gw.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != 8080 || ports["otlp-grpc"] != 4317 {
		t.Errorf("gateway container ports %v, want http 8080 and otlp-grpc 4317", ports)
	}
	if got := flagValue(c.Args, "http.listen-addr"); got != ":8080" {
		t.Errorf("-http.listen-addr=%q, want :8080 (the container port)", got)
	}
	if got := flagValue(c.Args, "otlp.grpc.listen-addr"); got != ":4317" {
		t.Errorf("-otlp.grpc.listen-addr=%q, want :4317 (the container port)", got)
	}
	checkProbes(t, c, "/-/ready", "/-/healthy")

	var svc *corev1.Service
	for _, s := range services {
		if s.Name == gw.Name {
			svc = s
		}
	}
	if svc == nil {
		t.Fatalf("no gateway Service")
	}
	if !selects(&metav1.LabelSelector{MatchLabels: svc.Spec.Selector}, gw.Spec.Template.Labels) {
		t.Errorf("gateway Service selector %v does not select the gateway pods", svc.Spec.Selector)
	}
	svcPorts := map[string]string{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String())
	}
	if svcPorts["http"] != "8080->http" || svcPorts["otlp-grpc"] != "4317->otlp-grpc" {
		t.Errorf("gateway Service ports %v, want http 8080 and otlp-grpc 4317", svcPorts)
	}
}

func checkIngester(t *testing.T, d *appsv1.Deployment, pdb *policyv1.PodDisruptionBudget, hpa *autoscalingv2.HorizontalPodAutoscaler, vals map[string]any) {
	t.Helper()
	sink := strings.TrimPrefix(d.Name, "rel-tributary-ingester-")
	c := d.Spec.Template.Spec.Containers[0]
	if got := flagValue(c.Args, sink+".group"); got != lookup(vals, "ingesters", sink, "group") && got != "tributary-"+sink {
		t.Errorf("%s: -%s.group=%q, want its own consumer group", d.Name, sink, got)
	}
	for _, s := range centralSinks {
		addr := flagValue(c.Args, s.name+"."+s.addressKey)
		if s.name != sink && addr != "" {
			t.Errorf("%s also turns on sink %s (%q): one sink per Deployment", d.Name, s.name, addr)
		}
	}
	if pdb == nil || !selects(pdb.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("%s: no PDB selecting its pods", d.Name)
	}
	checkProbes(t, c, "/-/ready", "/-/healthy")
	checkSpread(t, d)
	if lookup(vals, "ingesterDefaults", "autoscaling", "enabled") == true || lookup(vals, "ingesters", sink, "autoscaling", "enabled") == true {
		if hpa == nil {
			t.Fatalf("%s: autoscaling on, no HPA", d.Name)
		}
		m := hpa.Spec.Metrics
		if len(m) != 1 || m[0].External == nil || m[0].External.Metric.Name != "tributary_ingester_lag_records" ||
			m[0].External.Metric.Selector == nil || m[0].External.Metric.Selector.MatchLabels["sink"] != sink {
			t.Errorf("%s: HPA metrics %+v, want the external tributary_ingester_lag_records{sink=%q}", d.Name, m, sink)
		}
		if hpa.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("%s: HPA scales %s", d.Name, hpa.Spec.ScaleTargetRef.Name)
		}
	} else if hpa != nil {
		t.Errorf("%s: HPA rendered with autoscaling off", d.Name)
	}
}

// checkProbes: readiness and liveness are HTTP GETs of the named paths on
// the container's http port, and liveness never looks at readiness.
func checkProbes(t *testing.T, c corev1.Container, ready, healthy string) {
	t.Helper()
	r, l := c.ReadinessProbe, c.LivenessProbe
	if r == nil || r.HTTPGet == nil || r.HTTPGet.Path != ready || r.HTTPGet.Port.String() != "http" {
		t.Errorf("container %s readiness probe %+v, want GET %s on port http", c.Name, r, ready)
	}
	if l == nil || l.HTTPGet == nil || l.HTTPGet.Path != healthy || l.HTTPGet.Port.String() != "http" {
		t.Errorf("container %s liveness probe %+v, want GET %s on port http", c.Name, l, healthy)
	}
}

// checkSpread: one constraint across zones and one across nodes, each
// selecting the Deployment's own pods.
func checkSpread(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	found := map[string]bool{}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if !selects(c.LabelSelector, d.Spec.Template.Labels) {
			t.Errorf("%s: spread on %s selects %v, not its pods", d.Name, c.TopologyKey, c.LabelSelector)
		}
		found[c.TopologyKey] = true
	}
	if !found["topology.kubernetes.io/zone"] || !found["kubernetes.io/hostname"] {
		t.Errorf("%s: spread over %v, want zones and nodes", d.Name, found)
	}
}

func checkPodSecurity(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: pod may run as root", d.Name)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it never uses", d.Name)
	}
	for _, c := range ps.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s/%s: securityContext %+v, want a read-only root, no escalation, no capabilities", d.Name, c.Name, sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: resources %+v, want CPU and memory requests and a memory limit", d.Name, c.Name, c.Resources)
		}
	}
}

// checkSecretMounts: every Secret and ConfigMap volume is mounted
// read-only and whole (a subPath mount never receives updates), and every
// file flag points into a mounted volume.
func checkSecretMounts(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec
	fileVolumes := map[string]bool{}
	for _, v := range ps.Volumes {
		if v.Secret != nil || v.ConfigMap != nil {
			fileVolumes[v.Name] = true
		}
	}
	for _, c := range ps.Containers {
		var mounts []string
		for _, m := range c.VolumeMounts {
			if fileVolumes[m.Name] && !m.ReadOnly {
				t.Errorf("%s: volume %s mounted writable", d.Name, m.Name)
			}
			if fileVolumes[m.Name] && (m.SubPath != "" || m.SubPathExpr != "") {
				t.Errorf("%s: volume %s mounted with a subPath, which never receives updates", d.Name, m.Name)
			}
			mounts = append(mounts, m.MountPath+"/")
		}
		for _, a := range c.Args {
			name, value, _ := strings.Cut(strings.TrimPrefix(a, "-"), "=")
			if !strings.HasSuffix(name, "-file") {
				continue
			}
			if !slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(value, m) }) {
				t.Errorf("%s: -%s=%s is not under a mounted volume (%v)", d.Name, name, value, mounts)
			}
		}
	}
}

func selects(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil || len(sel.MatchLabels) == 0 {
		return false
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// flagValue is the value of -name=value in args ("" if absent; "true" for
// a bare boolean -name).
func flagValue(args []string, name string) string {
	for _, a := range args {
		n, v, ok := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if n == name {
			if !ok {
				return "true"
			}
			return v
		}
	}
	return ""
}

// checkStrimzi: with Strimzi on, a KRaft Kafka, one dual-role pool of 3
// and the four topics with replication factor 3 and min.insync.replicas 2
// (what acks=all needs to survive a broker loss); with it off, nothing
// outside client-go's scheme.
func checkStrimzi(t *testing.T, other []*unstructured.Unstructured, on bool) {
	t.Helper()
	if !on {
		if len(other) > 0 {
			t.Fatalf("objects outside client-go's scheme without Strimzi: %v", kinds(other))
		}
		return
	}
	var kafka, pool []*unstructured.Unstructured
	topics := map[string]*unstructured.Unstructured{}
	for _, o := range other {
		if o.GetAPIVersion() != "kafka.strimzi.io/v1" {
			t.Errorf("%s %s: apiVersion %s, want kafka.strimzi.io/v1", o.GetKind(), o.GetName(), o.GetAPIVersion())
		}
		switch o.GetKind() {
		case "Kafka":
			kafka = append(kafka, o)
		case "KafkaNodePool":
			pool = append(pool, o)
		case "KafkaTopic":
			name, _, _ := unstructured.NestedString(o.Object, "spec", "topicName")
			topics[name] = o
		default:
			t.Errorf("unexpected %s %s", o.GetKind(), o.GetName())
		}
	}
	if len(kafka) != 1 || len(pool) != 1 {
		t.Fatalf("%d Kafka and %d KafkaNodePool, want one each", len(kafka), len(pool))
	}
	k := kafka[0]
	if a := k.GetAnnotations(); a["strimzi.io/kraft"] != "enabled" || a["strimzi.io/node-pools"] != "enabled" {
		t.Errorf("Kafka annotations %v, want KRaft and node pools enabled", a)
	}
	if mir, _, _ := unstructured.NestedFieldNoCopy(k.Object, "spec", "kafka", "config", "min.insync.replicas"); fmt.Sprint(mir) != "2" {
		t.Errorf("Kafka min.insync.replicas %v, want 2", mir)
	}
	p := pool[0]
	if p.GetLabels()["strimzi.io/cluster"] != k.GetName() {
		t.Errorf("KafkaNodePool cluster label %q, want %q", p.GetLabels()["strimzi.io/cluster"], k.GetName())
	}
	replicas, _, _ := unstructured.NestedInt64(p.Object, "spec", "replicas")
	roles, _, _ := unstructured.NestedStringSlice(p.Object, "spec", "roles")
	if replicas != 3 || !slices.Equal(roles, []string{"controller", "broker"}) {
		t.Errorf("KafkaNodePool replicas %d roles %v, want 3 controller+broker", replicas, roles)
	}
	for _, name := range testenv.Topics {
		tp := topics[name]
		if tp == nil {
			t.Errorf("no KafkaTopic for %s (have %v)", name, keys(topics))
			continue
		}
		if tp.GetLabels()["strimzi.io/cluster"] != k.GetName() {
			t.Errorf("KafkaTopic %s not bound to cluster %s", name, k.GetName())
		}
		partitions, _, _ := unstructured.NestedInt64(tp.Object, "spec", "partitions")
		rf, _, _ := unstructured.NestedInt64(tp.Object, "spec", "replicas")
		mir, _, _ := unstructured.NestedFieldNoCopy(tp.Object, "spec", "config", "min.insync.replicas")
		if partitions < 1 || rf != 3 || fmt.Sprint(mir) != "2" {
			t.Errorf("KafkaTopic %s: partitions %d replicas %d min.insync.replicas %v, want >0, 3, 2", name, partitions, rf, mir)
		}
	}
	if len(topics) != len(testenv.Topics) {
		t.Errorf("KafkaTopics %v, want %v", keys(topics), testenv.Topics)
	}
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

// TestCentralTopicArgs: kafka.createTopics reaches the gateway and every
// ingester as -kafka.topics.* flags, and only when enabled; with Strimzi
// (whose KafkaTopics create the topics) the start-up check expects the
// KafkaTopics' own partitions and replicas.
func TestCentralTopicArgs(t *testing.T) {
	topicFlags := func(args []string) []string {
		var out []string
		for _, a := range args {
			if strings.HasPrefix(a, "-kafka.topics.") {
				out = append(out, a)
			}
		}
		return out
	}
	// containers is each Deployment's topic flags, and the KafkaTopics'
	// partitions and replicas by topic name.
	rendered := func(t *testing.T, files []string, set map[string]any) (map[string][]string, map[string][2]int64) {
		t.Helper()
		typed, other := decodeStrict(t, render(t, centralChart, "tributary", files, set))
		flags := map[string][]string{}
		for _, o := range typed {
			if d, ok := o.(*appsv1.Deployment); ok {
				flags[d.Name] = topicFlags(d.Spec.Template.Spec.Containers[0].Args)
			}
		}
		topics := map[string][2]int64{}
		for _, o := range other {
			if o.GetKind() == "KafkaTopic" {
				name, _, _ := unstructured.NestedString(o.Object, "spec", "topicName")
				p, _, _ := unstructured.NestedInt64(o.Object, "spec", "partitions")
				r, _, _ := unstructured.NestedInt64(o.Object, "spec", "replicas")
				topics[name] = [2]int64{p, r}
			}
		}
		return flags, topics
	}
	allSinks := map[string]any{"ingesters.loki.enabled": true, "ingesters.loki.url": "http://loki/loki/api/v1/push"}

	t.Run("off by default", func(t *testing.T) {
		flags, _ := rendered(t, []string{"examples/central-minimal.yaml"}, allSinks)
		if len(flags) != 3 {
			t.Fatalf("Deployments %v, want the gateway and two ingesters", keys(flags))
		}
		for name, f := range flags {
			if len(f) > 0 {
				t.Errorf("%s: %v with createTopics off", name, f)
			}
		}
	})

	t.Run("enabled", func(t *testing.T) {
		set := map[string]any{
			"kafka.createTopics.enabled": true, "kafka.createTopics.partitions": 6, "kafka.createTopics.replicationFactor": 1,
			"kafka.createTopics.partitionsPerTopic": map[string]any{"tributary.metrics": 24, "tributary.dlq": 3},
		}
		maps.Copy(set, allSinks)
		flags, _ := rendered(t, []string{"examples/central-minimal.yaml"}, set)
		if len(flags) != 3 {
			t.Fatalf("Deployments %v, want the gateway and two ingesters", keys(flags))
		}
		want := []string{
			"-kafka.topics.create", "-kafka.topics.partitions=6", "-kafka.topics.replication-factor=1",
			"-kafka.topics.partitions-per-topic=tributary.dlq=3,tributary.metrics=24",
		}
		for name, f := range flags {
			if !slices.Equal(f, want) {
				t.Errorf("%s: %v, want %v", name, f, want)
			}
		}
	})

	t.Run("Strimzi", func(t *testing.T) {
		flags, topics := rendered(t, []string{"examples/central-strimzi.yaml"}, nil)
		if len(topics) != 4 {
			t.Fatalf("KafkaTopics %v, want 4", keys(topics))
		}
		var perTopic []string
		var rf int64
		for _, name := range slices.Sorted(maps.Keys(topics)) {
			perTopic = append(perTopic, fmt.Sprintf("%s=%d", name, topics[name][0]))
			rf = topics[name][1]
		}
		for name, f := range flags {
			if slices.Contains(f, "-kafka.topics.create") {
				t.Errorf("%s: -kafka.topics.create with Strimzi, which creates the topics", name)
			}
			if want := fmt.Sprintf("-kafka.topics.replication-factor=%d", rf); !slices.Contains(f, want) {
				t.Errorf("%s: %v, want %s (the KafkaTopics' replicas)", name, f, want)
			}
			var got []string
			for _, a := range f {
				if v, ok := strings.CutPrefix(a, "-kafka.topics.partitions-per-topic="); ok {
					got = strings.Split(v, ",")
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, perTopic) {
				t.Errorf("%s: partitions per topic %v, want the KafkaTopics' %v", name, got, perTopic)
			}
		}
	})
}

// TestCentralValuesSchema: values.schema.json refuses an install without
// Kafka, an enabled sink without its address, and misspelt keys, and each
// refusal names the value.
func TestCentralValuesSchema(t *testing.T) {
	minimal := []string{"examples/central-minimal.yaml"}
	for _, tc := range []struct {
		name  string
		files []string
		set   map[string]any
		want  string // "" renders
	}{
		{"defaults: no Kafka", nil, nil, "brokers"},
		{"defaults with Strimzi", nil, map[string]any{"kafka.strimzi.enabled": true, "gateway.auth.tokensSecret": "t"}, ""},
		{"auth required without tokens or client CA", minimal, map[string]any{"gateway.auth.tokensSecret": ""}, "tokensSecret"},
		{"auth off without tokens", minimal, map[string]any{"gateway.auth.tokensSecret": "", "gateway.auth.required": false}, ""},
		{"client CA alone is an identity", minimal, map[string]any{"gateway.auth.tokensSecret": "", "gateway.tls.secret": "tls", "gateway.tls.clientCASecret": "ca"}, ""},
		{"client CA without a server certificate", minimal, map[string]any{"gateway.tls.clientCASecret": "ca"}, "secret"},
		{"client certificates required", minimal, map[string]any{"gateway.tls.secret": "tls", "gateway.tls.clientCASecret": "ca", "gateway.tls.clientAuth": "required"}, "clientAuth"},
		{"SASL PLAIN without TLS", minimal, map[string]any{"kafka.sasl": map[string]any{"enabled": true, "mechanism": "PLAIN", "username": "u", "passwordSecret": map[string]any{"name": "p", "key": "password"}}}, "tls"},
		{"SASL with Strimzi", nil, map[string]any{"kafka.strimzi.enabled": true, "gateway.auth.tokensSecret": "t", "kafka.sasl": map[string]any{"enabled": true, "mechanism": "SCRAM-SHA-512", "username": "u", "passwordSecret": map[string]any{"name": "p", "key": "password"}}}, "sasl"},
		{"minimal", minimal, nil, ""},
		{"brokers empty", minimal, map[string]any{"kafka.brokers": ""}, "brokers"},
		{"prometheus without url", minimal, map[string]any{"ingesters.prometheus.url": ""}, "url"},
		{"loki without url", minimal, map[string]any{"ingesters.loki.enabled": true}, "url"},
		{"elasticsearch without addresses", minimal, map[string]any{"ingesters.elasticsearch.enabled": true}, "addresses"},
		{"jaeger without addresses", minimal, map[string]any{"ingesters.jaeger.enabled": true}, "addresses"},
		{"disabled sink needs no address", minimal, map[string]any{"ingesters.jaeger.enabled": false}, ""},
		{"misspelt sink key", minimal, map[string]any{"ingesters.prometheus.URL": "http://p/api/v1/write"}, "URL"},
		{"misspelt top-level key", minimal, map[string]any{"ingester": map[string]any{}}, "ingester"},
		{"SASL without a password Secret", minimal, map[string]any{"kafka.sasl.enabled": true, "kafka.sasl.username": "u"}, "name"},
		{"one gateway", minimal, map[string]any{"gateway.replicas": 1}, "replicas"},
		{"two-node Strimzi pool", nil, map[string]any{"kafka.strimzi.enabled": true, "gateway.auth.tokensSecret": "t", "kafka.strimzi.nodePool.replicas": 2}, "replicas"},
		{"topic creation with Strimzi", nil, map[string]any{"kafka.strimzi.enabled": true, "gateway.auth.tokensSecret": "t", "kafka.createTopics.enabled": true}, "createTopics"},
		{"topic creation", minimal, map[string]any{"kafka.createTopics.enabled": true}, ""},
		{"topics of no partitions", minimal, map[string]any{"kafka.createTopics.partitions": 0}, "partitions"},
		{"misspelt topic creation key", minimal, map[string]any{"kafka.createTopics.replicas": 3}, "replicas"},
		{"per-cluster limits", minimal, map[string]any{"gateway.limits.clusters": map[string]any{"prod-eu": map[string]any{"samples_per_second": 0.5, "max_series_per_request": 100}}}, ""},
		{"misspelt limit", minimal, map[string]any{"gateway.limits.clusters": map[string]any{"prod-eu": map[string]any{"samples_per_sec": 100}}}, "samples_per_sec"},
		{"misspelt default limit", minimal, map[string]any{"gateway.limits.defaults": map[string]any{"spans_per_sec": 100}}, "spans_per_sec"},
		{"negative burst", minimal, map[string]any{"gateway.limits.clusters": map[string]any{"prod-eu": map[string]any{"samples_burst": -1}}}, "samples_burst"},
		{"fractional bound", minimal, map[string]any{"gateway.limits.defaults": map[string]any{"max_line_bytes": 1.5}}, "max_line_bytes"},
		{"limits and an existing ConfigMap", minimal, map[string]any{"gateway.limits.existingConfigMap": "l", "gateway.limits.clusters": map[string]any{"a": map[string]any{"spans_per_second": 1}}}, "clusters"},
		{"existing limits ConfigMap", minimal, map[string]any{"gateway.limits.existingConfigMap": "l"}, ""},
		{"limits of a cluster without a name", minimal, map[string]any{"gateway.limits.clusters": map[string]any{"": map[string]any{"spans_per_second": 1}}}, "propertyName"},
		{"shard table", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": 4, "b": map[string]any{"shards": 2, "first_partition": 0}, "c": map[string]any{"first_partition": 3}}}, ""},
		{"shard table of k 0", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": 0}}, "minimum"},
		{"shard table of shards 0", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": map[string]any{"shards": 0}}}, "shards"},
		{"shard table of a negative first partition", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": map[string]any{"shards": 2, "first_partition": -1}}}, "first_partition"},
		{"shard table of a fractional k", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": 2.5}}, "integer"},
		{"shard table of k as a string", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": "4"}}, "integer"},
		{"misspelt shard table key", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"a": map[string]any{"shard": 2}}}, "shard"},
		{"shard table and an existing ConfigMap", minimal, map[string]any{"gateway.shards.existingConfigMap": "s", "gateway.shards.clusters": map[string]any{"a": 2}}, "clusters"},
		{"existing shards ConfigMap", minimal, map[string]any{"gateway.shards.existingConfigMap": "s"}, ""},
		{"shard table of a cluster without a name", minimal, map[string]any{"gateway.shards.clusters": map[string]any{"": 2}}, "propertyName"},
		{"unknown shard hash", minimal, map[string]any{"gateway.shards.hash": "murmur3"}, "hash"},
		{"misspelt shards key", minimal, map[string]any{"gateway.shards.file": "x"}, "file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderErr(t, centralChart, "tributary", tc.files, tc.set)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("rendered, want a schema error naming %q", tc.want)
			case tc.want != "" && (!strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %q, want a schema error naming %q", err, tc.want)
			}
		})
	}
}

// strimziCRDs are the vendored CustomResourceDefinitions of the Strimzi
// release whose kafka.strimzi.io/v1 API the chart writes.
const strimziCRDs = "testdata/strimzi-1.2.0"

var strimziInstall struct {
	once sync.Once
	err  error
}

// installStrimziCRDs creates Strimzi's CRDs (for real) in the shared
// apiserver once and waits until they are established.
func installStrimziCRDs(t *testing.T, k *testenv.Kube) {
	t.Helper()
	strimziInstall.once.Do(func() {
		strimziInstall.err = createCRDs(k, strimziCRDs)
	})
	if strimziInstall.err != nil {
		t.Fatalf("install Strimzi CRDs: %v", strimziInstall.err)
	}
}

func createCRDs(k *testenv.Kube, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		return err
	}
	crds := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s (%v)", dir, err)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if _, err := crds.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, name := range names {
		for {
			u, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			established := slices.ContainsFunc(conds, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Established" && m["status"] == "True"
			})
			if established {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not established: %w", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// TestCentralDryRunApply applies every example's objects (server-side,
// dry run) to the real kube-apiserver, with Strimzi's own CRDs installed so
// that its OpenAPI schemas and CEL rules judge the Kafka, KafkaNodePool
// and KafkaTopic objects too; nothing may be skipped (server-side apply
// refuses a field the schema does not declare). Broken copies of the
// Strimzi objects (a value out of range, a field that does not exist) must
// be refused: the check has teeth.
func TestCentralDryRunApply(t *testing.T) {
	k := sharedKube(t)
	installStrimziCRDs(t, k)
	for _, file := range centralExamples {
		t.Run(filepath.Base(file), func(t *testing.T) {
			ns := "central-" + strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "central-"), ".yaml")
			objs := render(t, centralChart, ns, []string{file}, nil)
			if skipped := dryRunApply(t, k, ns, objs); len(skipped) > 0 {
				t.Fatalf("not applied (kind unknown to the apiserver): %v", kinds(skipped))
			}
		})
	}

	t.Run("broken Strimzi objects are refused", func(t *testing.T) {
		ns := "central-broken"
		ensureNamespace(t, k, ns)
		objs := render(t, centralChart, ns, []string{"examples/central-strimzi.yaml"}, nil)
		_, other := decodeStrict(t, objs)
		byKind := map[string]*unstructured.Unstructured{}
		for _, o := range other {
			byKind[o.GetKind()] = o
		}
		for _, tc := range []struct {
			kind  string
			path  []string
			value any
		}{
			{"KafkaTopic", []string{"spec", "partitions"}, int64(0)},
			{"KafkaTopic", []string{"spec", "partition"}, int64(3)},
			{"KafkaNodePool", []string{"spec", "roles"}, []any{"zookeeper"}},
			{"KafkaNodePool", []string{"spec", "storage", "type"}, "disk"},
			{"Kafka", []string{"spec", "kafka", "listeners"}, []any{map[string]any{"name": "Plain!", "port": int64(9092), "type": "internal", "tls": false}}},
			{"Kafka", []string{"spec", "kafka", "replicas"}, int64(3)},
		} {
			o := byKind[tc.kind]
			if o == nil {
				t.Fatalf("no %s rendered", tc.kind)
			}
			broken := o.DeepCopy()
			if err := unstructured.SetNestedField(broken.Object, tc.value, tc.path...); err != nil {
				t.Fatal(err)
			}
			if err := applyStrict(k, ns, broken); err == nil {
				t.Errorf("%s with %s=%v accepted, want refused", tc.kind, strings.Join(tc.path, "."), tc.value)
			}
		}
	})
}

// applyStrict server-side applies o (dry run) with strict field validation.
func applyStrict(k *testenv.Kube, ns string, o *unstructured.Unstructured) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dyn, err := dynamic.NewForConfig(k.Config)
	if err != nil {
		return err
	}
	gvk := o.GroupVersionKind()
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: strings.ToLower(gvk.Kind) + "s"}
	data, err := o.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = dyn.Resource(gvr).Namespace(ns).Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		DryRun: []string{metav1.DryRunAll}, FieldManager: "tributary-chart-test", Force: new(true), FieldValidation: "Strict",
	})
	return err
}

// TestCentralBinariesRunRenderedPods runs the real gateway and ingester
// binaries as the rendered pods would run them (the container's args and
// env, each mounted Secret or ConfigMap as a directory of its files), with only the
// addresses replaced by the test's own (a kfake broker speaking what the
// example configures: plain, TLS, or TLS with SCRAM-SHA-512; loopback
// ports; closed sink ports), and waits until each answers its readiness
// and liveness probes as the kubelet would ask them (HTTPS where the chart
// says so): the chart and the binaries agree on every flag, env var, file
// path and probe. Sinks are not needed for readiness (it follows Kafka and
// the consumer group; a failing sink turns it only after -ready.max-lag).
func TestCentralBinariesRunRenderedPods(t *testing.T) {
	t.Parallel()
	gatewayBin, ingesterBin := testenv.Binary(t, "gateway"), testenv.Binary(t, "ingester")
	secrets, ca := testSecrets(t, gatewayBin)
	closed := testenv.Addr(testenv.FreePort(t)) // nothing listens: the sinks are down

	// An open gateway: no identities, no tokens file.
	authOff := map[string]any{"gateway.auth.required": false, "gateway.auth.tokensSecret": ""}
	for _, tc := range []struct {
		file, name string // name: the case's name, if not the file's
		set        map[string]any
		opts       []kfake.Opt
		// created: topics the binaries must have created, with their
		// partitions (the broker holds only testenv.Topics at start).
		created map[string]int32
		// check, if set, runs against the started gateway.
		check func(t *testing.T, gw *renderedPod)
		// partitions of each of the broker's topics; 0: 2.
		partitions int32
	}{
		{file: "examples/central-all-sinks.yaml"},
		{file: "examples/central-minimal.yaml", name: "with auth off", set: authOff},
		{file: "examples/central-minimal.yaml", name: "creating its topics", set: map[string]any{
			"gateway.auth.required": false, "gateway.auth.tokensSecret": "",
			"kafka.topics":       map[string]any{"metrics": "new.metrics", "logs": "new.logs", "spans": "new.spans", "dlq": "new.dlq"},
			"kafka.createTopics": map[string]any{"enabled": true, "partitions": 3, "replicationFactor": 1, "partitionsPerTopic": map[string]any{"new.dlq": 1}},
		}, created: map[string]int32{"new.metrics": 3, "new.logs": 3, "new.spans": 3, "new.dlq": 1}},
		{file: "examples/central-strimzi.yaml", opts: []kfake.Opt{kfake.TLS(secrets.serverTLS)}, partitions: 16}, // its KafkaTopics' count, which its shard table fits
		{file: "examples/central-existing-kafka.yaml", opts: []kfake.Opt{kfake.TLS(secrets.serverTLS),
			kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "tributary", string(secrets.files["kafka-tributary"]["password"]))}},
		{file: "examples/central-minimal.yaml", name: "with per-cluster limits", set: limitsEnforcedValues(), check: checkLimitsEnforced},
		{file: "examples/central-minimal.yaml", name: "with a shard table", set: shardsSpreadValues(), check: checkShardsSpread, partitions: shardsSpreadPartitions},
	} {
		name := filepath.Base(tc.file)
		if tc.name != "" {
			name += " " + tc.name
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			partitions := cmp.Or(tc.partitions, 2)
			kafka := testenv.Kafka(t, partitions, append(testenv.FastGroups(), tc.opts...)...)
			objs := render(t, centralChart, "tributary", []string{tc.file}, tc.set)
			typed, _ := decodeStrict(t, objs)
			files := podFiles{secrets: secrets.files, configMaps: renderedConfigMaps(typed)}
			var gw *renderedPod
			started := 0
			for _, o := range typed {
				d, ok := o.(*appsv1.Deployment)
				if !ok {
					continue
				}
				over := map[string]string{
					"kafka.brokers":    kafka.Addr,
					"http.listen-addr": testenv.Addr(testenv.FreePort(t)),
				}
				bin := ingesterBin
				if d.Name == "rel-tributary-gateway" {
					bin = gatewayBin
					over["otlp.grpc.listen-addr"] = testenv.Addr(testenv.FreePort(t))
				}
				for _, s := range centralSinks {
					flag := s.name + "." + s.addressKey
					if flagValue(d.Spec.Template.Spec.Containers[0].Args, flag) != "" {
						over[flag] = "http://" + closed
					}
				}
				pod := startRendered(t, d, bin, files, ca, over)
				if d.Name == "rel-tributary-gateway" {
					gw = pod
				}
				started++
			}
			if started < 2 {
				t.Fatalf("%d Deployments run, want the gateway and at least one ingester", started)
			}
			for topic, partitions := range tc.created {
				testenv.Eventually(t, 30*time.Second, func() error {
					if got := topicPartitions(t, kafka.Addr, topic); got != partitions {
						return fmt.Errorf("topic %s has %d partitions, want %d created by the rendered pods", topic, got, partitions)
					}
					return nil
				})
			}
			if tc.check != nil {
				if gw == nil {
					t.Fatal("no gateway Deployment rendered")
				}
				tc.check(t, gw)
			}
		})
	}
}

// topicPartitions is the number of partitions of topic in the broker at
// addr, 0 if it does not exist.
func topicPartitions(t *testing.T, addr, topic string) int32 {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	admin, err := sarama.NewClusterAdmin([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	defer admin.Close()
	metas, err := admin.DescribeTopics([]string{topic})
	if err != nil {
		t.Fatalf("describe %s: %v", topic, err)
	}
	if len(metas) != 1 || metas[0].Err != sarama.ErrNoError {
		return 0
	}
	return int32(len(metas[0].Partitions))
}

// chartSecrets are the contents of the Secrets the examples reference, by
// name and key, and the broker's TLS configuration signed by the same CA.
type chartSecrets struct {
	files     map[string]map[string][]byte
	serverTLS *tls.Config
}

// testSecrets makes the examples' Secrets: PEM files of a test CA where a
// certificate is expected, and a tokens.yaml entry made by the gateway's
// own -auth.hash-token. The pool trusts the CA.
func testSecrets(t *testing.T, gatewayBin string) (chartSecrets, *x509.CertPool) {
	t.Helper()
	caFile, certFile, keyFile, cert := testenv.TLSFiles(t)
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca, crt, key := read(caFile), read(certFile), read(keyFile)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("test CA does not parse")
	}
	hash := exec.Command(gatewayBin, "-auth.hash-token", "-auth.hash-token.cluster=test")
	hash.Stdin = strings.NewReader("tributary-chart-test-token\n")
	var stderr strings.Builder
	hash.Stderr = &stderr
	entry, err := hash.Output()
	if err != nil {
		t.Fatalf("gateway -auth.hash-token: %v: %s", err, stderr.String())
	}
	tokens := append([]byte("tokens:\n"), entry...)
	return chartSecrets{
		files: map[string]map[string][]byte{
			"tributary-tokens":              {"tokens.yaml": tokens},
			"gateway-tokens":                {"tokens.yaml": tokens},
			"es-ca":                         {"ca.crt": ca},
			"es-credentials":                {"password": []byte("es-password")},
			"es-jaeger-api-key":             {"api-key": []byte("aWQ6a2V5")},
			"loki-credentials":              {"password": []byte("loki-password")},
			"kafka-ca":                      {"ca.crt": ca},
			"kafka-tributary":               {"password": []byte("kafka-password")},
			"rel-tributary-cluster-ca-cert": {"ca.crt": ca},
			"gateway-tls":                   {"tls.crt": crt, "tls.key": key},
			"gateway-client-ca":             {"ca.crt": ca},
		},
		serverTLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}, pool
}

// podFiles are the contents of the Secrets and ConfigMaps pods mount, by
// name and key.
type podFiles struct{ secrets, configMaps map[string]map[string][]byte }

// renderedConfigMaps are the data of the ConfigMaps among objs, by name
// and key.
func renderedConfigMaps(objs []runtime.Object) map[string]map[string][]byte {
	out := map[string]map[string][]byte{}
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			out[cm.Name] = map[string][]byte{}
			for k, v := range cm.Data {
				out[cm.Name][k] = []byte(v)
			}
		}
	}
	return out
}

// renderedPod is a Deployment's container run by startRendered.
type renderedPod struct {
	*testenv.Process
	httpAddr  string            // what -http.listen-addr was replaced with
	kafkaAddr string            // what -kafka.brokers was replaced with
	volumes   map[string]string // volume name → the directory standing in for it
}

// startRendered starts bin as d's first container would run: its args,
// its env (literal values, Secret keys, the memory limit), and each
// mounted Secret or ConfigMap volume as a temporary directory holding the
// volume's items as the kubelet writes them (writeVolume), with the mount
// path in args and env rewritten to that directory. A subPath mount is
// refused: the kubelet never updates one. over replaces the values of the
// flags named (each must be among the args). It waits until the readiness
// and liveness probes' paths answer 200 on the address given for
// -http.listen-addr.
func startRendered(t *testing.T, d *appsv1.Deployment, bin string, files podFiles, ca *x509.CertPool, over map[string]string) *renderedPod {
	t.Helper()
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]string{} // mount path → local directory
	dirs := map[string]string{}   // volume name → local directory
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		var kind, name string
		var items []corev1.KeyToPath
		var source map[string]map[string][]byte
		switch {
		case ok && v.Secret != nil:
			kind, name, items, source = "Secret", v.Secret.SecretName, v.Secret.Items, files.secrets
		case ok && v.ConfigMap != nil:
			kind, name, items, source = "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items, files.configMaps
		default:
			t.Fatalf("%s: mount %s is not a Secret or ConfigMap volume of the pod", d.Name, m.Name)
		}
		if m.SubPath != "" || m.SubPathExpr != "" {
			t.Fatalf("%s: mount %s of %s %s is a subPath mount, which the kubelet never updates", d.Name, m.Name, kind, name)
		}
		content := map[string][]byte{}
		for _, item := range items {
			data, ok := source[name][item.Key]
			if !ok {
				t.Fatalf("%s: volume %s wants key %s of %s %s, which the test does not know", d.Name, m.Name, item.Key, kind, name)
			}
			content[item.Path] = data
		}
		dir := t.TempDir()
		writeVolume(t, dir, content)
		mounts[m.MountPath] = dir
		dirs[m.Name] = dir
	}
	local := func(s string) string {
		for path, dir := range mounts {
			if s == path || strings.HasPrefix(s, path+"/") {
				return dir + strings.TrimPrefix(s, path)
			}
		}
		return s
	}

	var args []string
	replaced := map[string]bool{}
	for _, a := range c.Args {
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "-"), "=")
		if v, ok := over[name]; ok {
			value, replaced[name] = v, true
		}
		if hasValue {
			args = append(args, "-"+name+"="+local(value))
		} else {
			args = append(args, "-"+name)
		}
	}
	for name := range over {
		if !replaced[name] {
			t.Fatalf("%s: no -%s among the args %v", d.Name, name, c.Args)
		}
	}

	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+local(e.Value))
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			data, ok := files.secrets[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("%s: env %s wants key %s of Secret %s, which the test does not know", d.Name, e.Name, ref.Key, ref.Name)
			}
			env = append(env, e.Name+"="+string(data))
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			env = append(env, e.Name+"="+fmt.Sprint(c.Resources.Limits.Memory().Value()))
		default:
			t.Fatalf("%s: env %s from %+v: the test cannot supply it", d.Name, e.Name, e.ValueFrom)
		}
	}

	p := &renderedPod{Process: testenv.StartProcess(t, d.Name, bin, args, env...), httpAddr: over["http.listen-addr"], kafkaAddr: over["kafka.brokers"], volumes: dirs}
	// The probes name the port "http": the one -http.listen-addr serves.
	var httpPort int32
	for _, cp := range c.Ports {
		if cp.Name == "http" {
			httpPort = cp.ContainerPort
		}
	}
	if got := flagValue(c.Args, "http.listen-addr"); got != fmt.Sprintf(":%d", httpPort) {
		t.Fatalf("%s: -http.listen-addr=%s, but the probes' port http is %d", d.Name, got, httpPort)
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca}}}
	for _, probe := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		scheme := corev1.URISchemeHTTP // the kubelet's default
		if probe.HTTPGet.Scheme != "" {
			scheme = probe.HTTPGet.Scheme
		}
		url := strings.ToLower(string(scheme)) + "://" + over["http.listen-addr"] + probe.HTTPGet.Path
		testenv.Eventually(t, 60*time.Second, func() error {
			if p.Exited() {
				t.Fatalf("%s exited before %s answered 200:\n%s", d.Name, url, p.Output())
			}
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s %s", url, resp.Status, body)
			}
			return nil
		})
	}
	return p
}

// writeVolume writes files (path in the volume → content) into dir as the
// kubelet's atomic writer fills and updates a Secret or ConfigMap volume:
// the files go into a new hidden directory, published by renaming the
// ..data symlink over the previous one, and each file's path is a symlink
// through ..data. A reader sees the old files or the new ones, never a mix,
// and a file's path stays the same across updates.
func writeVolume(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	ts, err := os.MkdirTemp(dir, "..ts-")
	if err != nil {
		t.Fatal(err)
	}
	for path, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(ts, path)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, path), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data) // "" on the first write
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, data); err != nil {
		t.Fatal(err)
	}
	for path := range files {
		link := filepath.Join(dir, path)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(link), 0o700); err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(filepath.Dir(link), filepath.Join(data, path))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(rel, link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}
