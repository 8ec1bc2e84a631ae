package recordprint

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/golang/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/gateway"
	"github.com/tributary-io/tributary/pkg/kafka"
	"github.com/tributary-io/tributary/pkg/record"
)

// Records written by a real gateway into the broker, read back and printed.
func TestPrintsRecordsWrittenByTheGateway(t *testing.T) {
	k := testenv.Kafka(t, 1)
	var cfg gateway.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	require.NoError(t, fs.Parse([]string{"-kafka.brokers", k.Addr, "-kafka.timeout", "2s", "-limits.metrics.max-sample-age", "0", "-limits.logs.reject-old-samples-max-age", "0"})) // samples and lines from 2023
	require.NoError(t, cfg.Validate())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	prod, err := kafka.NewProducer(cfg.Kafka, cfg.Producer, "gateway", reg, log)
	require.NoError(t, err)
	t.Cleanup(func() { prod.Close() })
	srv := httptest.NewServer(gateway.New(cfg, prod, reg, reg, log).Handler())
	t.Cleanup(srv.Close)

	wr := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{
		{Labels: []prompb.Label{{Name: "__name__", Value: "up"}, {Name: "cluster", Value: "eu-1"}, {Name: "job", Value: "node"}},
			Samples: []prompb.Sample{{Value: 1, Timestamp: 1700000000000}}},
		{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "cluster", Value: "eu-1"}, {Name: "path", Value: "/a \"b\""}},
			Samples: []prompb.Sample{{Value: 10, Timestamp: 1700000000000}, {Value: 12.5, Timestamp: 1700000015000}}},
	}}
	raw, err := wr.Marshal()
	require.NoError(t, err)
	post(t, srv.URL+"/api/v1/write", "application/x-protobuf", "snappy", snappy.Encode(nil, raw))
	post(t, srv.URL+"/loki/api/v1/push", "application/json", "", []byte(
		`{"streams":[{"stream":{"cluster":"eu-1","app":"web"},"values":[["1700000000000000000","GET / 200"],["1700000001000000000","line with\ttab",{"trace_id":"abc"}]]}]}`))

	read := func(topic string) string {
		var out bytes.Buffer
		kc := cfg.Kafka
		require.NoError(t, Read(context.Background(), Config{Kafka: kc, Topic: topic, From: "oldest", Partition: -1}, &out))
		// The broker's and the gateway's clocks.
		s := regexp.MustCompile(`(time|received)=\S+`).ReplaceAllString(out.String(), "$1=T")
		return s
	}
	require.Equal(t, strings.Join([]string{
		`record tributary.metrics/0@0 key="eu-1" time=T bytes=` + strconv.Itoa(len(snappy.Encode(nil, raw))),
		`  envelope: signal=metrics cluster="eu-1" tenant="" items=3 received=T schema=1`,
		`  content: application/x-protobuf;proto=prometheus.WriteRequest, snappy`,
		`  series up{cluster="eu-1", job="node"}`,
		`    2023-11-14T22:13:20Z 1`,
		`  series http_requests_total{cluster="eu-1", path="/a \"b\""}`,
		`    2023-11-14T22:13:20Z 10`,
		`    2023-11-14T22:13:35Z 12.5`,
		``,
	}, "\n"), read("tributary.metrics"))
	var viaCommand bytes.Buffer
	require.NoError(t, Command(context.Background(), []string{"-kafka.brokers=" + k.Addr, "-topic=tributary.logs", "-n=1"}, &viaCommand))
	logs := regexp.MustCompile(`(time|received)=\S+`).ReplaceAllString(viaCommand.String(), "$1=T")
	require.Equal(t, read("tributary.logs"), logs)
	require.ErrorContains(t, Command(context.Background(), []string{"-from=latest"}, io.Discard), "want oldest or newest")
	require.Regexp(t, `^record tributary.logs/0@0 key="eu-1" time=T bytes=\d+\n`, logs)
	require.Equal(t, strings.Join([]string{
		`  envelope: signal=logs cluster="eu-1" tenant="" items=2 received=T schema=1`,
		`  content: application/x-protobuf;proto=logproto.PushRequest, snappy`,
		`  stream {app="web", cluster="eu-1"}`,
		`    2023-11-14T22:13:20Z "GET / 200"`,
		`    2023-11-14T22:13:21Z "line with\ttab" {trace_id="abc"}`,
		``,
	}, "\n"), logs[strings.Index(logs, "\n")+1:])
}

func TestPrintsUndecodableRecords(t *testing.T) {
	// Not snappy, and headers that are not an envelope: printed, not skipped.
	var out bytes.Buffer
	require.NoError(t, Print(&out, consumerMessage("x", []byte("garbage"), record.HeaderSchema, "1", record.HeaderSignal, "metrics",
		record.HeaderContentType, record.ContentTypeWriteRequest, record.HeaderEncoding, record.EncodingSnappy)))
	require.Contains(t, out.String(), "payload: snappy:")
	out.Reset()
	require.NoError(t, Print(&out, consumerMessage("x", []byte("v"), "foo", "bar")))
	require.Contains(t, out.String(), "envelope: ")
	require.Contains(t, out.String(), `header foo="bar"`)
}

func post(t *testing.T, url, contentType, encoding string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusNoContent, resp.StatusCode, string(msg))
}

func consumerMessage(key string, value []byte, headers ...string) *sarama.ConsumerMessage {
	m := &sarama.ConsumerMessage{Topic: "t", Key: []byte(key), Value: value}
	for i := 0; i+1 < len(headers); i += 2 {
		m.Headers = append(m.Headers, &sarama.RecordHeader{Key: []byte(headers[i]), Value: []byte(headers[i+1])})
	}
	return m
}
