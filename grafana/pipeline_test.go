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
	p := startMetricsPipeline(t)
	k, prom, gwURL := p.kafka, p.prom, p.gatewayURL
	agentPort := testenv.FreePort(t)
	p.startAgent(t, "dashboards", agentPort,
		scrapeJob("tributary-gateway", p.gatewayAddr),
		scrapeJob("tributary-ingester", p.ingesterAddr),
		scrapeJob("tributary-agent", testenv.Addr(agentPort)))

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

// pipeline is the real path without its agent: Kafka (kfake), a gateway
// and an ingester writing to a real Prometheus or a real Loki.
type pipeline struct {
	kafka                   *testenv.KafkaCluster
	prom                    *testenv.PrometheusServer // nil for a logs pipeline
	loki                    *testenv.LokiServer       // nil for a metrics pipeline
	gatewayURL, gatewayAddr string
	ingesterAddr            string
}

// startMetricsPipeline ends in Prometheus.
func startMetricsPipeline(t *testing.T) *pipeline {
	t.Helper()
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	return startPipeline(t, &pipeline{prom: prom}, "-prometheus.url="+prom.URL+"/api/v1/write",
		"-prometheus.batch.max-delay=50ms", "-prometheus.backoff.max=500ms")
}

// startLogsPipeline ends in Loki.
func startLogsPipeline(t *testing.T) *pipeline {
	t.Helper()
	loki := testenv.Loki(t)
	return startPipeline(t, &pipeline{loki: loki}, "-loki.url="+loki.URL+"/loki/api/v1/push",
		"-loki.batch.max-delay=50ms", "-loki.backoff.max=500ms")
}

func startPipeline(t *testing.T, p *pipeline, sinkArgs ...string) *pipeline {
	t.Helper()
	p.kafka = testenv.Kafka(t, 2)
	p.gatewayAddr = testenv.Addr(testenv.FreePort(t))
	p.gatewayURL = "http://" + p.gatewayAddr
	gw := testenv.StartProcess(t, "gateway", testenv.Binary(t, "gateway"), []string{
		"-http.listen-addr=" + p.gatewayAddr,
		"-kafka.brokers=" + p.kafka.Addr,
		"-otlp.grpc.listen-addr=" + testenv.Addr(testenv.FreePort(t)),
	})
	testenv.WaitHTTP(t, gw, p.gatewayURL+"/-/ready", 30*time.Second)

	p.ingesterAddr = testenv.Addr(testenv.FreePort(t))
	ing := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), append([]string{
		"-http.listen-addr=" + p.ingesterAddr,
		"-kafka.brokers=" + p.kafka.Addr,
	}, sinkArgs...))
	testenv.WaitHTTP(t, ing, "http://"+p.ingesterAddr+"/-/healthy", 30*time.Second)
	return p
}

// scrapeJob is a static scrape config (YAML, one list item of
// metrics.scrape_configs) of job name scraping addr.
func scrapeJob(name, addr string, extra ...string) string {
	return fmt.Sprintf("    - job_name: %s\n      static_configs: [{targets: [%q]%s}]\n", name, addr, strings.Join(extra, ""))
}

// startAgent runs the agent as cluster on port, scraping jobs (scrape
// config list items) every second into the pipeline's gateway.
func (p *pipeline) startAgent(t *testing.T, cluster string, port int, jobs ...string) *testenv.Process {
	t.Helper()
	return p.startAgentWith(t, cluster, port, "", jobs...)
}

// startAgentWith is startAgent with more sections of the agent's
// configuration (kubernetes, events, logs; YAML at the top level).
func (p *pipeline) startAgentWith(t *testing.T, cluster string, port int, sections string, jobs ...string) *testenv.Process {
	t.Helper()
	dir := t.TempDir()
	scrape := ""
	if len(jobs) > 0 {
		scrape = "  scrape_configs:\n" + strings.Join(jobs, "")
	}
	cfg := fmt.Sprintf(`cluster: %s
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
%s%s`, cluster, p.gatewayURL, filepath.Join(dir, "wal"), scrape, sections)
	cfgFile := filepath.Join(dir, "agent.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg), 0o644))
	agent := testenv.StartProcess(t, "agent", testenv.Binary(t, "agent"), []string{
		"-config.file=" + cfgFile,
		"-http.listen-addr=" + testenv.Addr(port),
		"-shutdown.flush-timeout=5s",
	})
	testenv.WaitHTTP(t, agent, "http://"+testenv.Addr(port)+"/-/ready", 60*time.Second)
	return agent
}
