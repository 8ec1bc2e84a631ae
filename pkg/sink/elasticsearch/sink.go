// Package elasticsearch is the ingester sink that indexes log records into
// Elasticsearch 8.
//
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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esapi"
	"github.com/elastic/go-elasticsearch/v8/esutil"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// Sink indexes log records. It is safe for concurrent use.
type Sink struct {
	cfg    Config
	log    *slog.Logger
	client *elasticsearch.Client
	bulk   esutil.BulkIndexer
	index  indexPattern
	tmpl   []byte
	encs   sync.Pool // *encoder

	tmplMu    sync.Mutex
	installed atomic.Bool
	closed    atomic.Bool
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
	if !cfg.Enabled() {
		return nil, errors.New("elasticsearch: no addresses configured")
	}
	index, err := parseIndexPattern(cfg.Index)
	if err != nil {
		return nil, err
	}
	ecfg := elasticsearch.Config{
		Addresses: cfg.AddressList(),
		Username:  cfg.Username,
		Password:  cfg.Password,
		APIKey:    cfg.APIKey,
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
	}
	if cfg.CAFile != "" {
		if ecfg.CACert, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("elasticsearch CA: %w", err)
		}
	}
	client, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	s := &Sink{cfg: cfg, log: log.With("sink", "elasticsearch"), client: client, index: index}
	if s.tmpl, err = templateBody(index); err != nil {
		return nil, err
	}
	s.encs.New = func() any { return newEncoder(s.index, s.cfg.MaxDecodedBytes) }

	if cfg.SkipTemplate {
		s.installed.Store(true)
	} else if err := s.ensureTemplate(ctx); err != nil {
		var refused *refusedError
		if errors.As(err, &refused) {
			return nil, fmt.Errorf("%w (set the template skip option if this server has no composable index templates or you install one yourself)", err)
		}
		if errors.Is(err, ingester.ErrMisconfigured) {
			s.log.Error("elasticsearch sink misconfigured; writes wait until it is fixed", "err", err)
		} else {
			s.log.Warn("index template not installed yet; writes wait for it", "err", err)
		}
	}

	s.bulk, err = esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:        client,
		NumWorkers:    cfg.Workers,
		FlushBytes:    cfg.FlushBytes,
		FlushInterval: cfg.FlushInterval,
		Decoder:       bulkDecoder{},
		// Flushes run in the indexer's goroutines, not under Write's
		// context: the request timeout is set here.
		OnFlushStart: func(ctx context.Context) context.Context {
			ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
			return context.WithValue(ctx, cancelKey{}, cancel)
		},
		OnFlushEnd: func(ctx context.Context) {
			if cancel, ok := ctx.Value(cancelKey{}).(context.CancelFunc); ok {
				cancel()
			}
		},
		// Every failure also reaches the items, and through them Write's
		// caller, which logs it.
		OnError: func(_ context.Context, err error) { s.log.Debug("bulk indexer", "err", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch bulk indexer: %w", err)
	}
	return s, nil
}

type cancelKey struct{}

// Close stops the bulk indexer, flushing what is queued, and the client.
// Call it after the last Write.
func (s *Sink) Close(ctx context.Context) error {
	if s.closed.Swap(true) {
		return nil
	}
	return errors.Join(s.bulk.Close(ctx), s.client.Close(ctx))
}

// Write implements ingester.Sink: it returns nil only when Elasticsearch
// acknowledged every entry of every record.
//
// An undecodable record, or a document Elasticsearch refuses with a 4xx
// (a mapping conflict, say), is a Permanent error naming the record and the
// reason. Anything else (network, 429, 5xx, a result missing from the
// response) is retryable; the retry sends every document again, and the
// deterministic _ids make that an overwrite.
func (s *Sink) Write(ctx context.Context, recs []ingester.Record) error {
	if s.closed.Load() {
		return errors.New("elasticsearch sink is closed")
	}
	enc := s.encs.Get().(*encoder)
	defer s.encs.Put(enc)
	docs, err := enc.encode(nil, recs)
	if err != nil {
		return ingester.Permanent(err)
	}
	if len(docs) == 0 {
		return nil
	}
	if err := s.ensureTemplate(ctx); err != nil {
		return err
	}

	res := &results{total: len(docs)}
	for i := range docs {
		d := &docs[i]
		err := s.bulk.Add(ctx, esutil.BulkIndexerItem{
			Index:      d.index,
			Action:     "index", // overwrite on replay, where create would conflict
			DocumentID: d.id,
			Body:       bytes.NewReader(d.body),
			OnSuccess: func(context.Context, esutil.BulkIndexerItem, esutil.BulkIndexerResponseItem) {
				res.indexed()
			},
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, item esutil.BulkIndexerResponseItem, err error) {
				res.failed(d, item, err)
			},
		})
		if err != nil {
			return fmt.Errorf("elasticsearch: queue document %s: %w", d.id, err)
		}
	}
	// Items reach the workers in order, before the flush signal: when Flush
	// returns, every item of ours has had its callback.
	if err := s.bulk.Flush(ctx); err != nil {
		return fmt.Errorf("elasticsearch: flush: %w", err)
	}
	return res.err()
}

// results collects the outcome of one Write's documents.
type results struct {
	total int

	mu      sync.Mutex
	ok      int
	retry   []string // first few reasons
	nretry  int
	refused []string
	nrefuse int
	// misconfigured is the status of an answer saying the sink is set up
	// wrongly (credentials, URL), 0 if none came.
	misconfigured int
}

const maxReasons = 3

func (r *results) indexed() {
	r.mu.Lock()
	r.ok++
	r.mu.Unlock()
}

func (r *results) failed(d *document, item esutil.BulkIndexerResponseItem, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// The request failed as a whole (network, non-2xx, unreadable
		// response): no item was judged.
		r.nretry++
		if len(r.retry) == 0 {
			r.retry = append(r.retry, err.Error())
		}
		if code := flushStatus(err); ingester.MisconfiguredStatus(code) {
			r.misconfigured = code
		}
		return
	}
	reason := fmt.Sprintf("record %s entry %d (index %s, _id %s): %d %s", d.rec, d.entry, d.index, d.id, item.Status, itemError(item))
	if ingester.MisconfiguredStatus(item.Status) {
		// Index-level security refusing this user, or an index that may
		// not be created: the same for every document, so retried.
		r.misconfigured = item.Status
	}
	if permanentStatus(item.Status) {
		r.nrefuse++
		if len(r.refused) < maxReasons {
			r.refused = append(r.refused, reason)
		}
		return
	}
	r.nretry++
	if len(r.retry) < maxReasons {
		r.retry = append(r.retry, reason)
	}
}

// permanentStatus tells a refusal of the document (400 mapping errors and
// the like) from a failure of the moment (429 rejected execution, 5xx) or
// of the sink's configuration (ingester.MisconfiguredStatus).
func permanentStatus(code int) bool {
	return code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout &&
		!ingester.MisconfiguredStatus(code)
}

// flushStatus is the HTTP status of a failed _bulk request in the error
// the bulk indexer reports for it ("flush: [401 Unauthorized] {...}"), 0
// if err names none.
func flushStatus(err error) int {
	var code int
	if _, scanErr := fmt.Sscanf(err.Error(), "flush: [%d ", &code); scanErr != nil {
		return 0
	}
	return code
}

// misconfigured wraps ingester.ErrMisconfigured with what to check.
func misconfigured(what string, code int, detail string) error {
	check := "check -elasticsearch.username, -elasticsearch.password or -elasticsearch.api-key and the user's privileges"
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		check = "check -elasticsearch.addresses (the node URL, e.g. https://es:9200, with no path)"
	}
	return fmt.Errorf("%s: %w: answered %d %s: %s", check, ingester.ErrMisconfigured, code, what, detail)
}

func itemError(item esutil.BulkIndexerResponseItem) string {
	e := item.Error
	s := e.Type + ": " + e.Reason
	if e.Cause.Type != "" {
		s += " (caused by " + e.Cause.Type + ": " + e.Cause.Reason + ")"
	}
	return s
}

func (r *results) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	missing := r.total - r.ok - r.nretry - r.nrefuse
	if r.nretry > 0 || missing > 0 {
		msg := fmt.Sprintf("elasticsearch: %d of %d documents not indexed", r.nretry+missing, r.total)
		if missing > 0 {
			msg += fmt.Sprintf(" (%d without a result in the bulk response)", missing)
		}
		if len(r.retry) > 0 {
			msg += ": " + strings.Join(r.retry, "; ")
		}
		if r.misconfigured != 0 {
			return misconfigured("to _bulk", r.misconfigured, msg)
		}
		return errors.New(msg)
	}
	if r.nrefuse > 0 {
		return ingester.Permanent(fmt.Errorf("elasticsearch refused %d of %d documents: %s",
			r.nrefuse, r.total, strings.Join(r.refused, "; ")))
	}
	return nil
}

// bulkDecoder reads a _bulk response like the indexer's own decoder but
// refuses a 200 response that carries a top-level "error". Elasticsearch
// never sends one (a failed request has a non-2xx status, failed documents
// have per-item errors); servers imitating it do (ZincSearch stops at the
// first failing document and reports it only there, with "errors": false
// and the failing item marked 200). Refusing the response fails every item
// of the request as retryable instead of acknowledging lost documents.
type bulkDecoder struct{}

func (bulkDecoder) UnmarshalFromReader(r io.Reader, blk *esutil.BulkIndexerResponse) error {
	var resp struct {
		esutil.BulkIndexerResponse
		Error json.RawMessage `json:"error"`
	}
	if err := json.NewDecoder(r).Decode(&resp); err != nil {
		return err
	}
	if len(resp.Error) > 0 && string(resp.Error) != "null" {
		return fmt.Errorf("bulk response reports an error without per-item results: %.500s", resp.Error)
	}
	*blk = resp.BulkIndexerResponse
	return nil
}

// refusedError is a definitive answer of the server (a 4xx other than 408
// and 429), as opposed to it being unreachable or overloaded.
type refusedError struct{ error }

func (e *refusedError) Unwrap() error { return e.error }

// ensureTemplate installs the index template unless that was done.
func (s *Sink) ensureTemplate(ctx context.Context) error {
	if s.installed.Load() {
		return nil
	}
	s.tmplMu.Lock()
	defer s.tmplMu.Unlock()
	if s.installed.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	put := s.client.Indices.PutIndexTemplate
	resp, err := put(s.cfg.TemplateName, strings.NewReader(string(s.tmpl)), put.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("install index template %s: %w", s.cfg.TemplateName, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.IsError() {
		if ingester.MisconfiguredStatus(resp.StatusCode) {
			detail := strings.TrimSpace(string(msg))
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				detail += " (a server without composable index templates: set -elasticsearch.template.skip)"
			}
			return misconfigured("to PUT _index_template/"+s.cfg.TemplateName, resp.StatusCode, detail)
		}
		err := fmt.Errorf("install index template %s: %s: %s", s.cfg.TemplateName, resp.Status(), strings.TrimSpace(string(msg)))
		if permanentStatus(resp.StatusCode) {
			return &refusedError{err}
		}
		return err
	}
	s.installed.Store(true)
	s.log.Info("index template installed", "template", s.cfg.TemplateName, "index_patterns", s.index.wildcard())
	return nil
}

// Probe implements ingester.Prober: a cluster info call, an empty _bulk
// request (authenticated like a write; Elasticsearch refuses its empty
// body with 400 after checking the credentials) and the index template
// install (unless done or skipped) write nothing. It fails when a write
// would for reasons other than the data; a refused login or a wrong
// address wraps ingester.ErrMisconfigured. Call it at start-up to report a
// misconfigured sink before the first record arrives.
func (s *Sink) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, bulk := s.client.Info, s.client.Bulk
	for _, call := range []struct {
		what string
		do   func() (*esapi.Response, error)
	}{
		{"GET /", func() (*esapi.Response, error) { return info(info.WithContext(ctx)) }},
		{"POST /_bulk", func() (*esapi.Response, error) { return bulk(strings.NewReader(""), bulk.WithContext(ctx)) }},
	} {
		resp, err := call.do()
		if err != nil {
			return fmt.Errorf("elasticsearch %s: %w", call.what, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		detail := strings.TrimSpace(string(msg))
		switch {
		case ingester.MisconfiguredStatus(resp.StatusCode):
			return misconfigured("to "+call.what, resp.StatusCode, detail)
		case resp.IsError() && !(call.what == "POST /_bulk" && resp.StatusCode == http.StatusBadRequest):
			return fmt.Errorf("elasticsearch %s: %s: %s", call.what, resp.Status(), detail)
		}
	}
	return s.ensureTemplate(ctx)
}
