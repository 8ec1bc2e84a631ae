// Package record is the Kafka record contract between gateway and ingester:
// the envelope headers every record carries (schema in
// proto/record/v1/envelope.proto), the topics' content types, and the
// dead-letter headers.
package record

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// SchemaVersion is the envelope version this build writes and the only one
// it reads.
const SchemaVersion = 1

// Header names, one per envelope field.
const (
	HeaderSchema      = "tributary-schema"
	HeaderSignal      = "tributary-signal"
	HeaderCluster     = "tributary-cluster"
	HeaderTenant      = "tributary-tenant"
	HeaderReceivedAt  = "tributary-received-at"
	HeaderContentType = "content-type"
	HeaderEncoding    = "content-encoding"
	HeaderItems       = "tributary-items"

	HeaderDLQReason    = "tributary-dlq-reason"
	HeaderDLQSink      = "tributary-dlq-sink"
	HeaderDLQTopic     = "tributary-dlq-topic"
	HeaderDLQPartition = "tributary-dlq-partition"
	HeaderDLQOffset    = "tributary-dlq-offset"
)

// Content types of record values (before snappy).
const (
	ContentTypeWriteRequest = "application/x-protobuf;proto=prometheus.WriteRequest"
	ContentTypePushRequest  = "application/x-protobuf;proto=logproto.PushRequest"
	// ContentTypeTraces is an OTLP ExportTraceServiceRequest of one cluster.
	ContentTypeTraces = "application/x-protobuf;proto=opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
	EncodingSnappy    = "snappy"
)

// ErrUnknownVersion means a record was written with a schema this build does
// not know. Such records are dead-lettered, never guessed at.
var ErrUnknownVersion = errors.New("unknown envelope schema version")

// ErrBadEnvelope means the headers are missing or malformed.
var ErrBadEnvelope = errors.New("bad record envelope")

var signalNames = map[recordpb.Signal]string{
	recordpb.Signal_SIGNAL_METRICS: "metrics",
	recordpb.Signal_SIGNAL_LOGS:    "logs",
	recordpb.Signal_SIGNAL_SPANS:   "spans",
}

// SignalName is the header value of s ("metrics", "logs", "spans").
func SignalName(s recordpb.Signal) string { return signalNames[s] }

func parseSignal(v string) (recordpb.Signal, bool) {
	for s, name := range signalNames {
		if name == v {
			return s, true
		}
	}
	return recordpb.Signal_SIGNAL_UNSPECIFIED, false
}

// Headers encodes e as Kafka record headers.
func Headers(e *recordpb.Envelope) []sarama.RecordHeader {
	hs := make([]sarama.RecordHeader, 0, 8)
	add := func(k, v string) {
		hs = append(hs, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	add(HeaderSchema, strconv.FormatUint(uint64(e.GetSchemaVersion()), 10))
	add(HeaderSignal, SignalName(e.GetSignal()))
	add(HeaderCluster, e.GetCluster())
	if e.GetTenant() != "" {
		add(HeaderTenant, e.GetTenant())
	}
	add(HeaderReceivedAt, time.Unix(0, e.GetReceivedAtUnixNano()).UTC().Format(time.RFC3339Nano))
	add(HeaderContentType, e.GetContentType())
	add(HeaderEncoding, e.GetContentEncoding())
	add(HeaderItems, strconv.FormatUint(e.GetItems(), 10))
	return hs
}

// Parse decodes the envelope from record headers. It fails with
// ErrUnknownVersion for a schema version other than SchemaVersion and with
// ErrBadEnvelope when a required header is missing or malformed.
func Parse(hs []*sarama.RecordHeader) (*recordpb.Envelope, error) {
	e := &recordpb.Envelope{}
	var seenSchema, seenSignal bool
	for _, h := range hs {
		if h == nil {
			continue
		}
		v := string(h.Value)
		switch string(h.Key) {
		case HeaderSchema:
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %q", ErrBadEnvelope, HeaderSchema, v)
			}
			e.SchemaVersion, seenSchema = uint32(n), true
		case HeaderSignal:
			s, ok := parseSignal(v)
			if !ok {
				return nil, fmt.Errorf("%w: %s %q", ErrBadEnvelope, HeaderSignal, v)
			}
			e.Signal, seenSignal = s, true
		case HeaderCluster:
			e.Cluster = v
		case HeaderTenant:
			e.Tenant = v
		case HeaderReceivedAt:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %q", ErrBadEnvelope, HeaderReceivedAt, v)
			}
			e.ReceivedAtUnixNano = t.UnixNano()
		case HeaderContentType:
			e.ContentType = v
		case HeaderEncoding:
			e.ContentEncoding = v
		case HeaderItems:
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: %s %q", ErrBadEnvelope, HeaderItems, v)
			}
			e.Items = n
		}
	}
	if !seenSchema {
		return nil, fmt.Errorf("%w: no %s header", ErrBadEnvelope, HeaderSchema)
	}
	if e.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("%w: %d (this build reads %d)", ErrUnknownVersion, e.SchemaVersion, SchemaVersion)
	}
	if !seenSignal {
		return nil, fmt.Errorf("%w: no %s header", ErrBadEnvelope, HeaderSignal)
	}
	return e, nil
}

// DeadLetterHeaders are the headers of a dead-letter record: the original
// headers followed by those describing d.
func DeadLetterHeaders(orig []*sarama.RecordHeader, d *recordpb.DeadLetter) []sarama.RecordHeader {
	hs := make([]sarama.RecordHeader, 0, len(orig)+5)
	for _, h := range orig {
		if h != nil {
			hs = append(hs, *h)
		}
	}
	add := func(k, v string) {
		hs = append(hs, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	add(HeaderDLQReason, d.GetReason())
	add(HeaderDLQSink, d.GetSink())
	add(HeaderDLQTopic, d.GetTopic())
	add(HeaderDLQPartition, strconv.FormatInt(int64(d.GetPartition()), 10))
	add(HeaderDLQOffset, strconv.FormatInt(d.GetOffset(), 10))
	return hs
}
