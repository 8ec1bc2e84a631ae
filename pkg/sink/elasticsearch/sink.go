// Package elasticsearch holds the ingester sinks that write into
// Elasticsearch 8: Sink indexes log records, JaegerSink span records in
// the schema Jaeger's query service reads (see jaeger.go). Both send
// documents through one bulk writer (bulk.go) with the same retry and
// dead-letter rules.
//
// Logs:
// Each entry of a record's PushRequest becomes one document in the index
// that Config.Index gives for the entry's own timestamp (UTC). Its _id is
// derived from its content (see encoder.docID), not from the record's
// Kafka offset: a replay after a crash and a client's retry that Kafka
// stored a second time (the gateway answered 503 after a late ack) both
// overwrite the documents instead of duplicating them. A document is
//
//	{"@timestamp": "2024-05-01T10:00:00.123456789Z", "message": "<line>",
//	 "cluster": "<envelope cluster>", "tenant": "<envelope tenant>",
//	 "labels": {<stream labels>}, "metadata": {<structured metadata>}}
//
// At start-up the sink installs a composable index template for those
// indices (see templateBody for the mapping and why labels are flattened).
package elasticsearch

import (
	"context"
	"log/slog"
	"sync"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// Sink indexes log records. It is safe for concurrent use.
type Sink struct {
	*bulkWriter
	index indexPattern
	encs  sync.Pool // *encoder
}

// New builds the client and the bulk indexer and installs the index
// template. A server that refuses the template (no composable templates,
// bad credentials, a conflicting template) is an error unless
// cfg.SkipTemplate; an unreachable or overloaded one is not: the install is
// then retried before the first write, which fails until it succeeds, so
// that no index is ever created without the template.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	index, err := parseIndexPattern(cfg.Index)
	if err != nil {
		return nil, err
	}
	var templates []indexTemplate
	if !cfg.SkipTemplate {
		body, err := templateBody(index)
		if err != nil {
			return nil, err
		}
		templates = []indexTemplate{{name: cfg.TemplateName, body: body, patterns: index.wildcard()}}
	}
	w, err := newBulkWriter(ctx, cfg.ClientConfig, templates, "set -"+cfg.flag("template.skip"), log.With("sink", "elasticsearch"))
	if err != nil {
		return nil, err
	}
	s := &Sink{bulkWriter: w, index: index}
	s.encs.New = func() any { return newEncoder(s.index, cfg.MaxDecodedBytes) }
	return s, nil
}

// Close stops the bulk indexer, flushing what is queued, and the client.
// Call it after the last Write.
func (s *Sink) Close(ctx context.Context) error { return s.close(ctx) }

// Write implements ingester.Sink: it returns nil only when Elasticsearch
// acknowledged every entry of every record.
//
// An undecodable record, or a document Elasticsearch refuses with a 4xx
// (a mapping conflict, say), is a Permanent error naming the record and the
// reason. Anything else (network, 429, 5xx, a result missing from the
// response) is retryable; the retry sends every document again, and the
// deterministic _ids make that an overwrite.
func (s *Sink) Write(ctx context.Context, recs []ingester.Record) error {
	enc := s.encs.Get().(*encoder)
	defer s.encs.Put(enc)
	docs, err := enc.encode(nil, recs)
	if err != nil {
		return ingester.Permanent(err)
	}
	return s.write(ctx, docs)
}

// Probe implements ingester.Prober: a cluster info call, an empty _bulk
// request and the index template install (unless done or skipped) write
// nothing. It fails when a write would for reasons other than the data; a
// refused login or a wrong address wraps ingester.ErrMisconfigured. Call
// it at start-up to report a misconfigured sink before the first record
// arrives.
func (s *Sink) Probe(ctx context.Context) error { return s.probe(ctx) }
