package elasticsearch

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// source is the JSON of a document. encoding/json writes invalid UTF-8 in
// a line as U+FFFD, which Elasticsearch would otherwise refuse.
type source struct {
	Timestamp string            `json:"@timestamp"`
	Message   string            `json:"message"`
	Cluster   string            `json:"cluster,omitempty"`
	Tenant    string            `json:"tenant,omitempty"`
	Labels    json.RawMessage   `json:"labels,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// timestampLayout always writes nine fraction digits: date_nanos keeps them.
const timestampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// encoder turns records into documents. It is not safe for concurrent use.
type encoder struct {
	index    indexPattern
	maxBytes int
	parser   parser.Parser

	buf     bytes.Buffer  // all bodies of one batch, new for each
	json    *json.Encoder // into buf
	decoded []byte
	names   map[int64]string      // index name by UTC hour
	seen    map[[idBytes]byte]int // bodies met so far in the record being encoded
}

func newEncoder(index indexPattern, maxDecodedBytes int) *encoder {
	e := &encoder{index: index, maxBytes: maxDecodedBytes, parser: parser.NewParser(parser.Options{})}
	e.json = json.NewEncoder(&e.buf)
	e.json.SetEscapeHTML(false)
	return e
}

// encode appends the documents of recs to docs. Their bodies share one new
// buffer, owned by the documents (the bulk indexer may read them after
// Write returned). An error means a record cannot be decoded: it names the
// record, and retrying cannot help.
func (e *encoder) encode(docs []document, recs []ingester.Record) ([]document, error) {
	e.buf = bytes.Buffer{}
	clear(e.names)
	if e.names == nil {
		e.names = make(map[int64]string)
	}
	type span struct{ start, end int }
	var spans []span
	first := len(docs)
	for i := range recs {
		r := &recs[i]
		req, err := e.decode(r.Value)
		if err != nil {
			return docs, fmt.Errorf("record %s: %w", recordName(r), err)
		}
		name := recordName(r)
		cluster, tenant := r.Envelope.GetCluster(), r.Envelope.GetTenant()
		clear(e.seen)
		n := 0
		for si, st := range req.Streams {
			ls, err := e.parser.ParseMetric(st.Labels)
			if err != nil {
				return docs, fmt.Errorf("record %s: stream %d: labels %.200q: %w", recordName(r), si, st.Labels, err)
			}
			lj, err := labelsJSON(ls)
			if err != nil {
				return docs, fmt.Errorf("record %s: stream %d: %w", recordName(r), si, err)
			}
			c := cluster
			if c == "" {
				c = ls.Get("cluster")
			}
			for _, en := range st.Entries {
				start := e.buf.Len()
				err := e.json.Encode(source{
					Timestamp: en.Timestamp.UTC().Format(timestampLayout),
					Message:   en.Line,
					Cluster:   c,
					Tenant:    tenant,
					Labels:    lj,
					Metadata:  metadata(en.StructuredMetadata),
				})
				if err != nil {
					return docs, fmt.Errorf("record %s: entry %d: %w", recordName(r), n, err)
				}
				// Encode ends with a newline; the bulk indexer adds its own.
				spans = append(spans, span{start, e.buf.Len() - 1})
				docs = append(docs, document{rec: name, entry: n, index: e.indexName(en.Timestamp), id: e.docID(e.buf.Bytes()[start : e.buf.Len()-1])})
				n++
			}
		}
	}
	b := e.buf.Bytes()
	for i, s := range spans {
		docs[first+i].body = b[s.start:s.end]
	}
	return docs, nil
}

// unsnappy decodes a record value into *buf (grown as needed and reused),
// refusing one that would decode to more than max bytes before allocating.
func unsnappy(buf *[]byte, value []byte, max int) ([]byte, error) {
	n, err := snappy.DecodedLen(value)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > max {
		return nil, fmt.Errorf("decodes to %d bytes, over the limit of %d", n, max)
	}
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	raw, err := snappy.Decode((*buf)[:n], value)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return raw, nil
}

func (e *encoder) decode(value []byte) (*push.PushRequest, error) {
	raw, err := unsnappy(&e.decoded, value, e.maxBytes)
	if err != nil {
		return nil, err
	}
	var req push.PushRequest
	if err := req.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("push request: %w", err)
	}
	return &req, nil
}

func (e *encoder) indexName(t time.Time) string {
	hour := t.Unix() / 3600
	if t.Unix() < 0 && t.Unix()%3600 != 0 {
		hour--
	}
	name, ok := e.names[hour]
	if !ok {
		name = e.index.name(t)
		e.names[hour] = name
	}
	return name
}

// idBytes of a SHA-256 make a document id: 128 bits, so that the chance
// of two different entries colliding (one silently overwriting the other)
// stays below 1e-20 for a billion documents in an index. A 64-bit hash
// (xxhash) would make that ~3% at a billion; SHA-256 with the CPU's SHA
// instructions costs well under a microsecond per document, a small part
// of encoding it (BenchmarkEncode).
const idBytes = 16

// docID is the _id of a document whose body (its JSON) is body: derived
// from the content alone (cluster, tenant, stream labels, timestamp, line,
// structured metadata), not from where the record landed in Kafka, so a
// client's retry stored as another record and an ingester's replay both
// overwrite. The k-th repetition (k > 0) of an identical body within one
// record gets "-k": entries a client sent twice in one request stay two
// documents.
func (e *encoder) docID(body []byte) string {
	sum := sha256.Sum256(body)
	key := [idBytes]byte(sum[:idBytes])
	if e.seen == nil {
		e.seen = make(map[[idBytes]byte]int)
	}
	k := e.seen[key]
	e.seen[key] = k + 1
	var b [40]byte
	id := base64.RawURLEncoding.AppendEncode(b[:0], key[:])
	if k > 0 {
		id = append(id, '-')
		id = strconv.AppendInt(id, int64(k), 10)
	}
	return string(id)
}

func recordName(r *ingester.Record) string {
	return fmt.Sprintf("%s/%d/%d", r.Topic, r.Partition, r.Offset)
}

// labelsJSON is the "labels" object of a stream: names exactly as in the
// stream (the mapping is flattened, so dots are safe), the last of
// duplicate names winning.
func labelsJSON(ls labels.Labels) (json.RawMessage, error) {
	if ls.IsEmpty() {
		return nil, nil
	}
	m := make(map[string]string, ls.Len())
	ls.Range(func(l labels.Label) { m[l.Name] = l.Value })
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func metadata(md push.LabelsAdapter) map[string]string {
	if len(md) == 0 {
		return nil
	}
	m := make(map[string]string, len(md))
	for _, l := range md {
		m[l.Name] = l.Value
	}
	return m
}
