// Package loki is the ingester sink for Grafana Loki's push API
// (POST /loki/api/v1/push).
//
// Record values are snappy-compressed logproto.PushRequests. Concatenated
// protobuf messages of one type form a valid message whose repeated fields
// are the union, so a batch becomes one push by splicing the records'
// snappy blocks into one (package snappypush). Nothing is decoded,
// unmarshalled or compressed again: stream labels, lines and structured
// metadata reach Loki exactly as the gateway stored them, and since a batch
// holds one partition's records in offset order, every stream's entries
// keep their order.
//
// # What Loki's answers mean
//
// Loki does not always take or refuse a push as a whole (read in Loki v3.7:
// pkg/loghttp/push/push.go, pkg/distributor/http.go,
// pkg/distributor/distributor.go, pkg/ingester/instance.go,
// pkg/ingester/stream.go):
//
//   - A body that does not parse (bad protobuf, bad stream labels) is
//     refused whole: 400, or 413 when over distributor.max-recv-msg-size.
//   - Entries that fail validation (line longer than max_line_size, too old,
//     too far in the future, structured metadata not allowed or too large)
//     are dropped, the rest of the push is stored, and the answer is 400.
//   - The ingester drops entries older than the stream's newest entry minus
//     max_chunk_age/2 (1h by default) as "entry too far behind" and stores
//     the rest; 400 again. Over the per-stream rate limit it stores what fits
//     and answers 429. But an ingester reports only the outcome of the last
//     stream it was sent, so these refusals of an earlier stream can answer
//     204: the entries are dropped, nothing is retried or dead-lettered, and
//     only Loki's loki_discarded_samples_total shows it.
//   - Over the tenant's ingestion rate: 429, nothing stored.
//
// Write returns 429 and 5xx as retryable errors (with Retry-After when Loki
// sends it), every other 4xx as ingester.Permanent with Loki's message. After
// a permanent refusal the consumer writes the batch's records one by one and
// dead-letters those Loki still refuses, so the records Loki took the first
// time are pushed again.
//
// # Replays
//
// At-least-once delivery pushes entries again: retries after a timeout or a
// 5xx that came after Loki stored them, the one-by-one pass above, a restart
// before the offset was committed. Loki drops an entry identical to one it
// holds (same stream, timestamp, line and structured metadata) while that one
// is in the ingester's head block, and the query path removes the remaining
// identical entries when it merges chunks (pkg/chunkenc/unordered.go,
// pkg/iter/entry_iterator.go): a replay is invisible in query results.
// A replayed entry older than the stream's newest minus max_chunk_age/2 is
// refused as "entry too far behind" although the original is stored; its
// record then lands in the dead-letter topic with that reason, a duplicate,
// not a loss. It takes the entries of one stream, within the records not
// yet committed, spanning more than that (1h by default), as in a backfill.
package loki

import (
	"flag"
	"net/http"
	"strconv"

	"github.com/tributary-io/tributary/pkg/sink/snappypush"
)

// Config of the Loki push endpoint.
type Config struct {
	snappypush.Config `yaml:",inline"`
}

// RegisterFlags registers the flags under prefix (e.g. "loki.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.Config.RegisterFlags(prefix, "Loki push URL, e.g. "+exampleURL+".",
		"X-Scope-OrgID for records without a tenant. Empty: no header (a Loki with auth_enabled: false stores everything as tenant \"fake\"; one with auth on refuses the push).", fs)
	// Loki's distributor forwards a push to each ingester as one gRPC
	// message, refused above the ingester's grpc_server_max_recv_msg_size
	// (4 MiB by default) with a 500 that no retry cures. The message holds
	// the streams plus what the distributor adds (a hash per stream and,
	// with Loki 3's default limits, a service_name label and a
	// detected_level field): entryOverhead per entry is counted for it, and
	// 3 MiB leaves the last MiB for label normalisation and framing.
	fs.IntVar(&c.MaxRequestDecodedBytes, prefix+"max-request-decoded-bytes", 3<<20,
		"Largest push after decompression, plus "+strconv.Itoa(entryOverhead)+" bytes per entry: a batch, or a record, decoding to more is sent as several pushes. Keep it 1 MiB under the ingesters' grpc_server_max_recv_msg_size (4 MiB by default).")
}

// entryOverhead is what Loki's distributor may add per entry when it
// forwards a push to an ingester: a stream hash (11 bytes), a
// service_name="unknown_service" label (32) and a detected_level field
// (~25), rounded up. Counting it per entry, not per stream, overestimates
// streams of many entries, which only makes pushes smaller.
const entryOverhead = 64

const exampleURL = "http://loki:3100/loki/api/v1/push"

// Validate checks the configuration. An empty URL (sink disabled) is valid.
func (c *Config) Validate() error { return c.Config.Validate("loki.") }

// Sink writes batches of records as Loki push requests.
type Sink struct {
	*snappypush.Pusher
}

// New returns a sink posting to cfg.URL. A nil client means a default one.
func New(cfg Config, client *http.Client) *Sink {
	// Loki reads a protobuf body as snappy whatever Content-Encoding says
	// ("" and "snappy" both work); like Promtail, send none.
	p := snappypush.New(cfg.Config, "loki push", http.Header{"Content-Type": {"application/x-protobuf"}}, "X-Scope-OrgID", client)
	p.ItemOverhead, p.FlagPrefix, p.ExampleURL = entryOverhead, "loki.", exampleURL
	// Loki refuses an empty push with 422 once the tenant is known.
	p.EmptyRefusal = http.StatusUnprocessableEntity
	return &Sink{p}
}
