package grafana

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/record"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBinaries()
	os.Exit(code)
}

// pipelineWithoutData are the pipeline dashboard's panels this test cannot
// fill: the agent runs without its logs, events and OTLP sections here (they
// need log files being refused, a kube-apiserver and an OTLP sender; their
// own integration tests cover the metrics).
var pipelineWithoutData = map[string]string{
	"Dropped log lines":         "the agent's logs section is off; the counter has series only after the gateway refused lines",
	"Kubernetes events shipped": "the agent's events section needs a kube-apiserver",
	"OTLP relay queue":          "the agent's otlp section is off",
}

// The pipeline dashboard against the real pipeline: an agent scrapes the
// gateway, the ingester and itself and remote-writes to the gateway; Kafka
// (kfake) carries the samples to the ingester, which writes them to a real
// Prometheus. A refused request, a poison record and a short Prometheus
// outage make the error panels' series exist. Then every panel's query must
// return data from that Prometheus.
func TestPipelineDashboardQueriesReturnData(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 2)
	prom := testenv.Prometheus(t, testenv.SinkConfig)

	gwPort := testenv.FreePort(t)
	gwURL := "http://" + testenv.Addr(gwPort)
	gw := testenv.StartProcess(t, "gateway", testenv.Binary(t, "gateway"), []string{
		"-http.listen-addr=" + testenv.Addr(gwPort),
		"-kafka.brokers=" + k.Addr,
		"-otlp.grpc.listen-addr=" + testenv.Addr(testenv.FreePort(t)),
	})
	testenv.WaitHTTP(t, gw, gwURL+"/-/ready", 30*time.Second)

	ingPort := testenv.FreePort(t)
	ing := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), []string{
		"-http.listen-addr=" + testenv.Addr(ingPort),
		"-kafka.brokers=" + k.Addr,
		"-prometheus.url=" + prom.URL + "/api/v1/write",
		"-prometheus.batch.max-delay=50ms",
		"-prometheus.backoff.max=500ms",
	})
	testenv.WaitHTTP(t, ing, "http://"+testenv.Addr(ingPort)+"/-/healthy", 30*time.Second)

	dir := t.TempDir()
	agentPort := testenv.FreePort(t)
	cfg := fmt.Sprintf(`cluster: dashboards
gateway:
  url: %s
metrics:
  scrape_interval: 1s
  scrape_timeout: 900ms
  wal:
    dir: %s
  queue:
    batch_send_deadline: 200ms
    min_backoff: 100ms
    max_backoff: 1s
  scrape_configs:
    - job_name: tributary-gateway
      static_configs: [{targets: [%q]}]
    - job_name: tributary-ingester
      static_configs: [{targets: [%q]}]
    - job_name: tributary-agent
      static_configs: [{targets: [%q]}]
`, gwURL, filepath.Join(dir, "wal"), testenv.Addr(gwPort), testenv.Addr(ingPort), testenv.Addr(agentPort))
	cfgFile := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o644))
	agent := testenv.StartProcess(t, "agent", testenv.Binary(t, "agent"), []string{
		"-config.file=" + cfgFile,
		"-http.listen-addr=" + testenv.Addr(agentPort),
		"-shutdown.flush-timeout=2s",
	})
	testenv.WaitHTTP(t, agent, "http://"+testenv.Addr(agentPort)+"/-/ready", 60*time.Second)

	// A body that is not snappy: the gateway answers 400.
	resp, err := http.Post(gwURL+"/api/v1/write", "application/x-protobuf", bytes.NewReader([]byte("not snappy")))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	produceFutureSchemaRecord(t, k.Addr)

	// The sink away for a few seconds: the ingester retries. Its retry
	// counter exists from the start, so require that it moved: the "Sink
	// retries" panel then shows a real retry, not a zero.
	waitForData(t, prom, `tributary_ingester_items_written_total{cluster="dashboards"}`)
	prom.Stop()
	time.Sleep(3 * time.Second)
	prom.Restart(t)
	waitForData(t, prom, `tributary_ingester_sink_retries_total{cluster="dashboards"} > 0`)
	waitForData(t, prom, `tributary_ingester_dlq_records_total{cluster="dashboards"} > 0`)
	waitForData(t, prom, `tributary_gateway_requests_total{cluster="dashboards", code="400"} > 0`)

	d := loadDashboards(t)["tributary-pipeline.json"]
	require.NotEmpty(t, d.UID)
	checked := 0
	for _, p := range d.queryPanels() {
		if reason, ok := pipelineWithoutData[p.Title]; ok {
			t.Logf("no data expected for %q: %s", p.Title, reason)
			continue
		}
		for _, tg := range p.Targets {
			waitForData(t, prom, strings.ReplaceAll(mustExpand(t, d, tg.Expr), `".*"`, `"dashboards"`))
			checked++
		}
	}
	require.Greater(t, checked, 20)
}

// produceFutureSchemaRecord writes a record of an envelope schema version
// the ingester does not know: it is dead-lettered.
func produceFutureSchemaRecord(t *testing.T, addr string) {
	t.Helper()
	env := &recordpb.Envelope{SchemaVersion: record.SchemaVersion, Signal: recordpb.Signal_SIGNAL_METRICS,
		Cluster: "dashboards", ContentType: record.ContentTypeWriteRequest, ContentEncoding: record.EncodingSnappy, Items: 1}
	headers := record.Headers(env)
	for i := range headers {
		if string(headers[i].Key) == record.HeaderSchema {
			headers[i].Value = []byte("99")
		}
	}
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer([]string{addr}, cfg)
	require.NoError(t, err)
	defer prod.Close()
	_, _, err = prod.SendMessage(&sarama.ProducerMessage{Topic: "tributary.metrics", Key: sarama.StringEncoder("dashboards"),
		Value: sarama.ByteEncoder("from a future gateway"), Headers: headers})
	require.NoError(t, err)
}

// waitForData waits until q returns at least one series.
func waitForData(t *testing.T, prom *testenv.PrometheusServer, q string) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		got, err := prom.Query(q, time.Now())
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("no data for %s", q)
		}
		return nil
	})
}
