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

// document is one Elasticsearch document to index. It refers to its record
// by name only: the caller reuses records once Write returned, and a late
// bulk result may still arrive.
type document struct {
	rec   string // topic/partition/offset
	entry int    // position of the log entry (or span) in its record
	index string
	id    string
	body  []byte
}

// indexTemplate is a composable index template installed before the first
// document is written.
type indexTemplate struct {
	name     string
	body     []byte
	patterns string // for the log line
}

// bulkWriter is what the sinks of this package share: the client, one bulk
// indexer, the index templates to install before any document, and the
// rules that sort a _bulk answer into indexed, retryable and refused.
type bulkWriter struct {
	cfg    ClientConfig
	log    *slog.Logger
	client *elasticsearch.Client
	bulk   esutil.BulkIndexer
	// templates are installed, in order, before the first document;
	// skipHint says how to turn that off, for error messages.
	templates []indexTemplate
	skipHint  string

	tmplMu    sync.Mutex
	installed atomic.Bool
	closed    atomic.Bool
}

// newBulkWriter builds the client and the bulk indexer and installs the
// templates. A server that refuses a template (no composable templates,
// bad credentials, a conflicting template) is an error; an unreachable or
// overloaded one is not: the install is then retried before the first
// write, which fails until it succeeds, so that no index is ever created
// without its template. No templates: nothing to install.
func newBulkWriter(ctx context.Context, cfg ClientConfig, templates []indexTemplate, skipHint string, log *slog.Logger) (*bulkWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, fmt.Errorf("elasticsearch: no addresses configured (-%s)", cfg.flag("addresses"))
	}
	ecfg := elasticsearch.Config{
		Addresses: cfg.AddressList(),
		Username:  cfg.Username,
		Password:  cfg.Password,
		APIKey:    cfg.APIKey,
		Transport: http.DefaultTransport.(*http.Transport).Clone(),
	}
	var err error
	if cfg.CAFile != "" {
		if ecfg.CACert, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, fmt.Errorf("elasticsearch CA: %w", err)
		}
	}
	client, err := elasticsearch.NewClient(ecfg)
	if err != nil {
		return nil, fmt.Errorf("elasticsearch client: %w", err)
	}
	w := &bulkWriter{cfg: cfg, log: log, client: client, templates: templates, skipHint: skipHint}

	if len(templates) == 0 {
		w.installed.Store(true)
	} else if err := w.ensureTemplates(ctx); err != nil {
		var refused *refusedError
		if errors.As(err, &refused) {
			return nil, fmt.Errorf("%w (%s if this server has no composable index templates or you install them yourself)", err, skipHint)
		}
		if errors.Is(err, ingester.ErrMisconfigured) {
			w.log.Error("elasticsearch sink misconfigured; writes wait until it is fixed", "err", err)
		} else {
			w.log.Warn("index template not installed yet; writes wait for it", "err", err)
		}
	}

	w.bulk, err = esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
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
		OnError: func(_ context.Context, err error) { w.log.Debug("bulk indexer", "err", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("elasticsearch bulk indexer: %w", err)
	}
	return w, nil
}

type cancelKey struct{}

// close stops the bulk indexer, flushing what is queued, and the client.
func (w *bulkWriter) close(ctx context.Context) error {
	if w.closed.Swap(true) {
		return nil
	}
	return errors.Join(w.bulk.Close(ctx), w.client.Close(ctx))
}

// write indexes docs ("index" action: a replay overwrites) and returns nil
// only when Elasticsearch acknowledged every one. A document refused with
// a 4xx (a mapping conflict, say) makes a Permanent error naming its
// record; anything else (network, 429, 5xx, a result missing from the
// response) is retryable, and the retry sends every document again.
func (w *bulkWriter) write(ctx context.Context, docs []document) error {
	if w.closed.Load() {
		return errors.New("elasticsearch sink is closed")
	}
	if len(docs) == 0 {
		return nil
	}
	if err := w.ensureTemplates(ctx); err != nil {
		return err
	}
	res := &results{total: len(docs), cfg: &w.cfg}
	for i := range docs {
		d := &docs[i]
		err := w.bulk.Add(ctx, esutil.BulkIndexerItem{
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
	if err := w.bulk.Flush(ctx); err != nil {
		return fmt.Errorf("elasticsearch: flush: %w", err)
	}
	return res.err()
}

// results collects the outcome of one write's documents.
type results struct {
	total int
	cfg   *ClientConfig

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
func (c *ClientConfig) misconfigured(what string, code int, detail string) error {
	check := fmt.Sprintf("check -%s, -%s or -%s and the user's privileges", c.flag("username"), c.flag("password"), c.flag("api-key"))
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		check = fmt.Sprintf("check -%s (the node URL, e.g. https://es:9200, with no path)", c.flag("addresses"))
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
			return r.cfg.misconfigured("to _bulk", r.misconfigured, msg)
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

// ensureTemplates installs the index templates unless that was done.
func (w *bulkWriter) ensureTemplates(ctx context.Context) error {
	if w.installed.Load() {
		return nil
	}
	w.tmplMu.Lock()
	defer w.tmplMu.Unlock()
	if w.installed.Load() {
		return nil
	}
	for _, t := range w.templates {
		if err := w.installTemplate(ctx, t); err != nil {
			return err
		}
	}
	w.installed.Store(true)
	return nil
}

func (w *bulkWriter) installTemplate(ctx context.Context, t indexTemplate) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	put := w.client.Indices.PutIndexTemplate
	resp, err := put(t.name, bytes.NewReader(t.body), put.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("install index template %s: %w", t.name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.IsError() {
		if ingester.MisconfiguredStatus(resp.StatusCode) {
			detail := strings.TrimSpace(string(msg))
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				detail += " (a server without composable index templates: " + w.skipHint + ")"
			}
			return w.cfg.misconfigured("to PUT _index_template/"+t.name, resp.StatusCode, detail)
		}
		err := fmt.Errorf("install index template %s: %s: %s", t.name, resp.Status(), strings.TrimSpace(string(msg)))
		if permanentStatus(resp.StatusCode) {
			return &refusedError{err}
		}
		return err
	}
	w.log.Info("index template installed", "template", t.name, "index_patterns", t.patterns)
	return nil
}

// probe is ingester.Prober for the sinks of this package: a cluster info
// call, an empty _bulk request (authenticated like a write; Elasticsearch
// refuses its empty body with 400 after checking the credentials) and the
// template installs (unless done or turned off) write nothing. It fails
// when a write would for reasons other than the data; a refused login or a
// wrong address wraps ingester.ErrMisconfigured.
func (w *bulkWriter) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	info, bulk := w.client.Info, w.client.Bulk
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
			return w.cfg.misconfigured("to "+call.what, resp.StatusCode, detail)
		case resp.IsError() && !(call.what == "POST /_bulk" && resp.StatusCode == http.StatusBadRequest):
			return fmt.Errorf("elasticsearch %s: %s: %s", call.what, resp.Status(), detail)
		}
	}
	return w.ensureTemplates(ctx)
}
