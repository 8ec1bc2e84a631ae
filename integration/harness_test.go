// Package integration runs the real binaries (gateway, ingester) against a
// Kafka wire-protocol broker (kfake) and a real Prometheus server, and checks
// the data by querying it back.
package integration

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// parallel is how many tests of this package run at once unless
// -test.parallel is given. go test's default, GOMAXPROCS, is 2 on the CI
// machine, but these tests spend most of their time waiting on wall-clock
// time (a 3-minute gateway outage, 60-second sink outages, scrape
// intervals, lease durations, batch delays) with their servers idle, so
// two at a time left the cores mostly unused and the package took ~9
// minutes. Each test has its own broker, servers, ports and directories.
const parallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	testenv.DefaultParallel(parallel)
	code := m.Run()
	sharedKube.Stop(code != 0)
	testenv.RemoveBinaries()
	os.Exit(code)
}

// sharedKube is the package's one kube-apiserver (each start costs
// several seconds of both cores). Tests on it work in their own namespace
// (CreateNamespace) and name their Nodes after it.
var sharedKube testenv.SharedKube

type gatewayProc struct {
	*testenv.Process
	URL string
}

func startGateway(t *testing.T, kafkaAddr string, extra ...string) *gatewayProc {
	t.Helper()
	port := testenv.FreePort(t)
	args := append([]string{
		"-http.listen-addr=" + testenv.Addr(port),
		"-kafka.brokers=" + kafkaAddr,
		"-kafka.ack-timeout=5s",
		"-retry-after=1s",
		// Tests run in parallel: the OTLP gRPC default (:4317) would collide.
		"-otlp.grpc.listen-addr=" + testenv.Addr(testenv.FreePort(t)),
	}, extra...)
	for _, a := range extra {
		if strings.HasPrefix(a, "-http.listen-addr=") {
			port, _ = strconv.Atoi(a[strings.LastIndex(a, ":")+1:])
		}
	}
	p := testenv.StartProcess(t, "gateway", testenv.Binary(t, "gateway"), args)
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, p, url+"/-/ready", 30*time.Second)
	return &gatewayProc{Process: p, URL: url}
}

type ingesterProc struct {
	*testenv.Process
	URL string
}

func startIngester(t *testing.T, kafkaAddr, promURL string, extra ...string) *ingesterProc {
	t.Helper()
	port := testenv.FreePort(t)
	args := append([]string{
		"-http.listen-addr=" + testenv.Addr(port),
		"-kafka.brokers=" + kafkaAddr,
		"-prometheus.url=" + promURL + "/api/v1/write",
		"-prometheus.batch.max-delay=50ms",
		"-prometheus.backoff.max=1s",
		"-prometheus.flush-timeout=5s",
	}, extra...)
	p := testenv.StartProcess(t, "ingester", testenv.Binary(t, "ingester"), args)
	url := "http://" + testenv.Addr(port)
	testenv.WaitHTTP(t, p, url+"/-/healthy", 30*time.Second)
	return &ingesterProc{Process: p, URL: url}
}

// load is a deterministic set of series: cluster c, series i, sample j has
// timestamp t0+j seconds and value i*1000+j.
type load struct {
	metric   string
	clusters []string
	series   int
	samples  int
	t0       time.Time
}

func newLoad(metric string, clusters []string, series, samples int) load {
	return load{metric: metric, clusters: clusters, series: series, samples: samples,
		t0: time.Now().Add(-time.Duration(samples)*time.Second - time.Minute).Truncate(time.Second)}
}

// request builds the write request for samples [from, to) of every series
// of cluster c. With noLabel the cluster label is left out (the gateway's
// default or header must supply it).
func (l load) request(c string, from, to int, noLabel bool) []byte {
	req := &prompb.WriteRequest{}
	for i := 0; i < l.series; i++ {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: l.metric}}}
		if !noLabel {
			ts.Labels = append(ts.Labels, prompb.Label{Name: "cluster", Value: c})
		}
		ts.Labels = append(ts.Labels, prompb.Label{Name: "series", Value: fmt.Sprint(i)})
		for j := from; j < to; j++ {
			ts.Samples = append(ts.Samples, prompb.Sample{
				Timestamp: l.t0.Add(time.Duration(j) * time.Second).UnixMilli(),
				Value:     float64(i*1000 + j),
			})
		}
		req.Timeseries = append(req.Timeseries, ts)
	}
	raw, err := req.Marshal()
	if err != nil {
		panic(err)
	}
	return snappy.Encode(nil, raw)
}

func post(url string, body []byte, headers ...string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	for i := 0; i < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), nil
}

// verify waits until the sink holds, for every cluster, exactly
// l.series series with want[c] samples each and the exact expected values.
func verify(t *testing.T, prom *testenv.PrometheusServer, l load, want map[string]int) {
	t.Helper()
	at := l.t0.Add(time.Duration(l.samples) * time.Second)
	window := fmt.Sprintf("%ds", l.samples+60)
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		for c, n := range want {
			counts, err := prom.Query(fmt.Sprintf(`count_over_time(%s{cluster=%q}[%s])`, l.metric, c, window), at)
			if err != nil {
				last = err.Error()
				ok = false
				break
			}
			sums, err := prom.Query(fmt.Sprintf(`sum(sum_over_time(%s{cluster=%q}[%s]))`, l.metric, c, window), at)
			if err != nil {
				last = err.Error()
				ok = false
				break
			}
			wantSum := 0.0
			for i := 0; i < l.series; i++ {
				for j := 0; j < n; j++ {
					wantSum += float64(i*1000 + j)
				}
			}
			got := 0
			for _, s := range counts {
				if int(s.Value) == n {
					got++
				}
			}
			gotSum := 0.0
			if len(sums) == 1 {
				gotSum = sums[0].Value
			}
			if got != l.series || len(counts) != l.series || gotSum != wantSum {
				last = fmt.Sprintf("cluster %s: %d series (%d complete), want %d with %d samples each; sum %v want %v",
					c, len(counts), got, l.series, n, gotSum, wantSum)
				ok = false
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("sink never held the expected data: %s", last)
}

func requireNoDeadLetters(t *testing.T, kafkaAddr string) {
	t.Helper()
	dl := testenv.ReadTopic(t, kafkaAddr, "tributary.dlq")
	for _, m := range dl {
		t.Logf("dead letter: %s", testenv.Header(m, "tributary-dlq-reason"))
	}
	require.Empty(t, dl)
}

// metricValue scrapes baseURL/metrics and returns the sum of the counter or
// gauge samples of name whose labels include every pair of match (an
// absent metric is 0).
func metricValue(t *testing.T, baseURL, name string, match map[string]string) float64 {
	t.Helper()
	return sumSamples(scrapeMetrics(t, baseURL)[name], match)
}

// scrapeMetrics reads baseURL/metrics with Prometheus's text parser.
func scrapeMetrics(t *testing.T, baseURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "parse %s/metrics", baseURL)
	return families
}

// sumSamples sums the counter, gauge and untyped samples of mf (nil: 0)
// whose labels include every pair of match.
func sumSamples(mf *dto.MetricFamily, match map[string]string) float64 {
	sum := 0.0
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = lp.GetValue()
		}
		ok := true
		for k, v := range match {
			ok = ok && labels[k] == v
		}
		if !ok {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// requireOutageMet asserts that the ingester at url retried writes to sink
// (so the outage met at least one write) and dead-lettered nothing.
func requireOutageMet(t *testing.T, url, sink string) {
	t.Helper()
	retries := metricValue(t, url, "tributary_ingester_sink_retries_total", map[string]string{"sink": sink})
	require.Greater(t, retries, 0.0, "no write to sink %s was retried: the outage never met a write", sink)
	require.Zero(t, metricValue(t, url, "tributary_ingester_dlq_records_total", map[string]string{"sink": sink}),
		"records of sink %s were dead-lettered during a plain outage", sink)
}

// waitGroupAtEnd waits until consumer group has committed, for every
// partition of topic that holds records, the partition's high watermark:
// it has consumed and settled everything the topic held when the wait
// began or later.
func waitGroupAtEnd(t *testing.T, kafkaAddr, group, topic string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		behind := []string{}
		committed, hwm, err := groupOffsets(t, kafkaAddr, group, topic)
		if err != nil {
			behind = append(behind, err.Error())
		}
		for p := range int32(len(hwm)) {
			// An empty partition has nothing to settle (and no commit).
			if committed[p] != hwm[p] && hwm[p] > 0 {
				behind = append(behind, fmt.Sprintf("partition %d: committed %d, high watermark %d", p, committed[p], hwm[p]))
			}
		}
		if len(behind) == 0 {
			return
		}
		last = strings.Join(behind, "; ")
		if time.Now().After(deadline) {
			t.Fatalf("group %s never reached the end of %s within %s: %s", group, topic, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// groupOffsets reads, per partition of topic, the committed offset of
// group (-1: none) and the partition's high watermark.
func groupOffsets(t *testing.T, kafkaAddr, group, topic string) (committed, hwm map[int32]int64, err error) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient([]string{kafkaAddr}, cfg)
	require.NoError(t, err)
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	require.NoError(t, err)
	defer admin.Close()
	parts, err := client.Partitions(topic)
	require.NoError(t, err)
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		return nil, nil, err
	}
	committed, hwm = map[int32]int64{}, map[int32]int64{}
	for _, p := range parts {
		h, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		require.NoError(t, err)
		hwm[p], committed[p] = h, -1
		if b := resp.GetBlock(topic, p); b != nil {
			committed[p] = b.Offset
		}
	}
	return committed, hwm, nil
}
