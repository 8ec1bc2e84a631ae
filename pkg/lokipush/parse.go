// Package lokipush is the gateway side of Loki push (POST /loki/api/v1/push):
// it validates a request the way Loki's own push path would
// (pkg/loghttp/push/push.go, then the distributor's validator) and turns it
// into Kafka record values, one cluster each, holding snappy-compressed
// logproto PushRequests.
//
// A snappy protobuf request whose streams all carry the same cluster label
// and that fits one record is forwarded as the exact bytes received: it is
// validated by a walk over the protobuf wire format that builds nothing.
// Otherwise (default cluster added, clusters mixed, record too large, or JSON
// input) the request is re-encoded, keeping every entry's bytes and the order
// of streams and entries.
package lokipush

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tributary-io/tributary/pkg/bounded"
	"github.com/tributary-io/tributary/pkg/reject"
)

// ClusterLabel is the stream label that names the sending cluster.
const ClusterLabel = "cluster"

// serviceNameLabel is the label Loki may add itself; its label-count limit
// does not count it (pkg/distributor/validator.go).
const serviceNameLabel = "service_name"

// detectedLevelLabel is structured metadata Loki leaves out of the
// structured-metadata size (pkg/util/entry_size.go).
const detectedLevelLabel = "detected_level"

// Limits bound what one push may cost before anything is allocated, and
// mirror the Loki limits of the same name so that what the gateway accepts
// the sink's Loki accepts too. A zero field disables that limit.
type Limits struct {
	// MaxDecodedBytes bounds the decompressed body (snappy's declared length
	// is checked before allocating; gzip and JSON are read through a limit).
	// Over it: 413.
	MaxDecodedBytes int `yaml:"max_decoded_bytes"`
	// MaxLineBytes is Loki's max_line_size.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxLabelNamesPerStream is Loki's max_label_names_per_series, counted
	// with the cluster label the gateway adds.
	MaxLabelNamesPerStream int `yaml:"max_label_names_per_stream"`
	MaxLabelNameLen        int `yaml:"max_label_name_length"`
	MaxLabelValueLen       int `yaml:"max_label_value_length"`
	// MaxStructuredMetadataBytes and MaxStructuredMetadataEntries are Loki's
	// max_structured_metadata_size and max_structured_metadata_entries_count,
	// per entry.
	MaxStructuredMetadataBytes   int `yaml:"max_structured_metadata_bytes"`
	MaxStructuredMetadataEntries int `yaml:"max_structured_metadata_entries"`
	// MaxRecordBytes bounds one Kafka record value (snappy-compressed).
	// Larger requests are split by stream and, when one stream is too big,
	// by entries; never dropped.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxRecordDecodedBytes bounds one record's PushRequest before snappy
	// compression, which is what Loki's gRPC message limit
	// (grpc_server_max_recv_msg_size) measures once a sink sends it on.
	// Requests are split below it like MaxRecordBytes.
	MaxRecordDecodedBytes int `yaml:"max_record_decoded_bytes"`
	// RejectOldSamplesMaxAge is Loki's reject_old_samples_max_age (with
	// reject_old_samples on): entries older than now minus this are
	// refused.
	RejectOldSamplesMaxAge time.Duration `yaml:"reject_old_samples_max_age"`
	// CreationGracePeriod is Loki's creation_grace_period: entries newer
	// than now plus this are refused.
	CreationGracePeriod time.Duration `yaml:"creation_grace_period"`
	// MaxEntryBehind is half of Loki's max_chunk_age: an entry older than
	// its stream's newest by more than this is refused ("too far behind").
	// The gateway sees one request, so it checks only against the newest
	// accepted entry before it in the same stream message of the same
	// request (two stream messages with the same labels are checked
	// apart); an entry too far behind what an earlier request wrote still
	// reaches Loki, which refuses it and the sink dead-letters it.
	MaxEntryBehind time.Duration `yaml:"max_entry_behind"`
}

// DefaultLimits are Loki's defaults (pkg/validation/limits.go and the
// ingester's max_chunk_age) and record bounds that fit Kafka's and Loki's
// defaults.
func DefaultLimits() Limits {
	return Limits{
		MaxDecodedBytes:              32 << 20, // 32 MiB: Promtail, Alloy and Vector batch ~1 MiB
		MaxLineBytes:                 256 << 10,
		MaxLabelNamesPerStream:       15,
		MaxLabelNameLen:              1024,
		MaxLabelValueLen:             2048,
		MaxStructuredMetadataBytes:   64 << 10,
		MaxStructuredMetadataEntries: 128,
		MaxRecordBytes:               900 << 10, // below Kafka's default 1 MB message.max.bytes, with room for headers
		// A quarter of Loki's default 4 MiB gRPC message limit: a sink
		// that joins records into one push cuts by the same measure, and
		// an entry (256 KiB line + 64 KiB metadata) always fits.
		MaxRecordDecodedBytes:  1 << 20,
		RejectOldSamplesMaxAge: 7 * 24 * time.Hour,
		CreationGracePeriod:    10 * time.Minute,
		MaxEntryBehind:         time.Hour, // max_chunk_age 2h / 2
	}
}

// Options are what one request brings besides its body.
type Options struct {
	// DefaultCluster is the cluster of streams without a cluster label; ""
	// refuses such streams.
	DefaultCluster string
	// MaxClusters bounds the distinct clusters of one request (400 above);
	// <= 0: split.DefaultMaxClusters.
	MaxClusters int
	// OverrideCluster makes DefaultCluster replace every stream's cluster
	// label that names another cluster (the sender's identity wins:
	// -auth.cluster-mismatch=overwrite).
	OverrideCluster bool
	// Reserve, if set, is called before the decoder allocates memory that
	// grows with the input (decompressed and decoded copies, re-encoded
	// records), with the number of bytes about to be allocated. An error
	// stops the decoder, which returns it unchanged. Reservations are not
	// given back by Parse: the caller releases them once it is done with
	// the batches.
	Reserve func(n int) error
	// Now is the time entry timestamps are checked against; zero: the
	// current time.
	Now time.Time
	// Sharder spreads hot clusters' streams over several records (one
	// per shard) by a hash of their labels; nil: one shard per cluster.
	Sharder Sharder
}

// Sharder says over how many shards (partitions) a cluster's streams are
// spread; 1 for most.
type Sharder interface {
	Shards(cluster string) int
}

func (o *Options) reserve(n int) error {
	if o.Reserve == nil || n <= 0 {
		return nil
	}
	return o.Reserve(n)
}

// Batch is one Kafka record's worth of a request: one cluster, and one of
// its shards (0 unless Options.Sharder spreads the cluster).
type Batch struct {
	Cluster string
	Shard   int
	// Value is a snappy block-compressed logproto PushRequest
	// (github.com/grafana/loki/pkg/push). On the fast path it is the request
	// body itself (not a copy).
	Value     []byte
	Entries   int
	LineBytes int // sum of len(line) over entries
	Streams   int // streams with entries here (a stream split over records counts in each)
}

// Parse validates a push body and splits it by cluster.
//
// contentType "application/json" selects JSON; any other media type selects
// snappy protobuf, as in Loki. An empty content type selects JSON when the
// body looks like a JSON object, protobuf otherwise. contentEncoding is
// "", "snappy" (a no-op: protobuf is always snappy, and Loki ignores the
// header), "gzip" or "deflate"; anything else is 415.
//
// Streams without a cluster label get cluster="<opt.DefaultCluster>"; if
// that is "" such streams are refused. Streams without entries are accepted
// and not forwarded, as Loki skips them. Batches of one cluster come in
// request order and must be produced in that order.
//
// Like Loki, Parse accepts part of a request: a stream whose labels break a
// rule, or an entry whose line, structured metadata or timestamp does, is
// refused and the rest is kept. It then returns the batches of what was
// valid together with a 400 that counts what was refused and names the
// first refusal and its stream: the caller writes the batches, then answers
// with the error. A body that does not decode, or breaks a bound of the
// whole request (size, distinct clusters), is refused whole: nil batches.
//
// Every refusal is a *reject.Error with a one-line reason; an error from
// opt.Reserve is returned as is.
func Parse(body []byte, contentType, contentEncoding string, lim Limits, opt Options) ([]Batch, error) {
	data := body
	switch contentEncoding {
	case "", "snappy":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, reject.BadRequest("decode gzip body: %v", err)
		}
		if data, err = readLimited(zr, len(body), lim.MaxDecodedBytes, &opt); err != nil {
			return nil, err
		}
	case "deflate":
		var err error
		if data, err = readLimited(flate.NewReader(bytes.NewReader(body)), len(body), lim.MaxDecodedBytes, &opt); err != nil {
			return nil, err
		}
	default:
		return nil, reject.Unsupported("Content-Encoding %q not supported", contentEncoding)
	}

	asJSON, err := isJSON(contentType, data)
	if err != nil {
		return nil, err
	}
	if asJSON {
		if lim.MaxDecodedBytes > 0 && len(data) > lim.MaxDecodedBytes {
			return nil, reject.TooLarge("JSON body of %d bytes exceeds the limit of %d", len(data), lim.MaxDecodedBytes)
		}
		v := newValidator(lim, opt)
		return parseJSON(data, &v)
	}
	v := newValidator(lim, opt)
	return parseProtobuf(data, &v)
}

// readLimited decompresses r, refusing more than maxBytes (413), with
// every buffer reserved before it is allocated.
func readLimited(r io.Reader, compressed, maxBytes int, opt *Options) ([]byte, error) {
	return bounded.ReadAll(r, 4*compressed, maxBytes, opt.reserve)
}

func isJSON(contentType string, body []byte) (bool, error) {
	switch contentType {
	case "application/x-protobuf":
		return false, nil
	case "application/json":
		return true, nil
	case "":
		// Loki refuses a missing Content-Type (mime.ParseMediaType("") fails);
		// older Loki read it as protobuf. Sniffing serves both kinds of
		// client. The only valid snappy blocks that look like this are
		// 123-byte messages (length varint '{') whose last byte is '}':
		// after leading whitespace, '{' would be a copy before any literal.
		i, j := 0, len(body)
		for i < j && isJSONSpace(body[i]) {
			i++
		}
		for j > i && isJSONSpace(body[j-1]) {
			j--
		}
		return j-i >= 2 && body[i] == '{' && body[j-1] == '}', nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, reject.Unsupported("Content-Type %q: %v", contentType, err)
	}
	return mt == "application/json", nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// errNoStreams mirrors the distributor's answer to a push without streams.
func errNoStreams() error {
	return &reject.Error{Status: http.StatusUnprocessableEntity, Reason: "error at least one valid stream is required for ingestion"}
}

// badStream is a 400 that names the stream.
func badStream(stream, format string, args ...any) error {
	return reject.BadRequest("stream %s: %s", stream, fmt.Sprintf(format, args...))
}

// streamName renders a stream's label string for an error message: one
// line, bounded, quoted only when it must be.
func streamName(labels string) string {
	s := short(labels)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\'' {
			return strconv.Quote(s)
		}
	}
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return "'" + s + "'"
}

// short bounds a string quoted into an error message.
func short(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
