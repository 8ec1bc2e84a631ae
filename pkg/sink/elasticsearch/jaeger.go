package elasticsearch

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tributary-io/tributary/pkg/ingester"
)

// JaegerConfig of the span sink: spans of tributary.spans records as
// Jaeger's Elasticsearch span and service documents.
type JaegerConfig struct {
	ClientConfig `yaml:",inline"`

	// IndexPrefix goes before jaeger-span-… and jaeger-service-…, joined
	// with a dash (Jaeger's index_prefix: both must be the same).
	IndexPrefix string `yaml:"index_prefix"`
	// CreateTemplates installs the span and service index templates at
	// start-up (Jaeger's create_mappings).
	CreateTemplates bool `yaml:"create_templates"`
	// ServiceCacheSize bounds the (day, service, operation) triples
	// remembered as written.
	ServiceCacheSize int `yaml:"service_cache_size"`
}

// DefaultServiceCacheSize is Jaeger's own bound for the same cache: ~100
// bytes an entry, ~10 MB when full. When full it is emptied, which only
// costs rewriting (overwriting) the service documents of the day.
const DefaultServiceCacheSize = 100000

// RegisterFlags registers the flags under prefix (e.g. "jaeger.").
func (c *JaegerConfig) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.ClientConfig.RegisterFlags(prefix, fs)
	fs.StringVar(&c.IndexPrefix, prefix+"index-prefix", "", "Prefix of the span and service indices (<prefix>-jaeger-span-YYYY-MM-DD); the same as Jaeger's index_prefix. Empty: none.")
	fs.BoolVar(&c.CreateTemplates, prefix+"create-templates", true, "Install the jaeger-span and jaeger-service index templates at start-up (Jaeger's create_mappings). Turn off when Jaeger or the operator installs them.")
	fs.IntVar(&c.ServiceCacheSize, prefix+"service-cache-size", DefaultServiceCacheSize, "Service/operation pairs per day remembered as written, so their service document is sent once per ingester.")
}

// Validate checks the configuration. A disabled sink is valid.
func (c *JaegerConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if err := c.ClientConfig.Validate(); err != nil {
		return err
	}
	if err := validIndexName(jaegerIndices(c.IndexPrefix).span + "2006-01-02"); err != nil {
		return fmt.Errorf("%s: %w", c.flag("index-prefix"), err)
	}
	if c.ServiceCacheSize <= 0 {
		return fmt.Errorf("%s: must be positive", c.flag("service-cache-size"))
	}
	return nil
}

// jaegerIndexNames are the two index name prefixes; the UTC day of the
// span's start (YYYY-MM-DD, Jaeger's default date layout) completes them.
type jaegerIndexNames struct {
	span, service string
}

// jaegerIndices applies Jaeger's prefix rule: "p" gives "p-jaeger-span-",
// and a prefix that already ends with the dash gets no second one.
func jaegerIndices(prefix string) jaegerIndexNames {
	if prefix != "" && !strings.HasSuffix(prefix, "-") {
		prefix += "-"
	}
	return jaegerIndexNames{span: prefix + "jaeger-span-", service: prefix + "jaeger-service-"}
}

// JaegerSink writes span records as Jaeger's span and service documents
// (see jaeger_document.go for the mapping). It is safe for concurrent use.
type JaegerSink struct {
	*bulkWriter
	names    jaegerIndexNames
	maxBytes int
	encs     sync.Pool // *jaegerEncoder
	services *serviceCache
}

// NewJaeger builds the sink and installs the index templates unless
// cfg.CreateTemplates is off, with the rules of New.
func NewJaeger(ctx context.Context, cfg JaegerConfig, log *slog.Logger) (*JaegerSink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names := jaegerIndices(cfg.IndexPrefix)
	var templates []indexTemplate
	if cfg.CreateTemplates {
		var err error
		if templates, err = jaegerTemplates(names); err != nil {
			return nil, err
		}
	}
	w, err := newBulkWriter(ctx, cfg.ClientConfig, templates, "set -"+cfg.flag("create-templates")+"=false", log.With("sink", "jaeger"))
	if err != nil {
		return nil, err
	}
	s := &JaegerSink{bulkWriter: w, names: names, maxBytes: cfg.MaxDecodedBytes, services: newServiceCache(cfg.ServiceCacheSize)}
	s.encs.New = func() any { return newJaegerEncoder(s.names, s.maxBytes) }
	return s, nil
}

// Close stops the bulk indexer, flushing what is queued, and the client.
// Call it after the last Write.
func (s *JaegerSink) Close(ctx context.Context) error { return s.close(ctx) }

// Write implements ingester.Sink: it returns nil only when Elasticsearch
// acknowledged every span document of every record, and the service
// document of each (day, service, operation) not yet written by this
// process. An undecodable record (not snappy, not an
// ExportTraceServiceRequest, a span ID of the wrong length) or a document
// refused with a 4xx is a Permanent error naming the record; anything else
// is retried, and the span documents' content-derived ids make the retry
// an overwrite.
func (s *JaegerSink) Write(ctx context.Context, recs []ingester.Record) error {
	enc := s.encs.Get().(*jaegerEncoder)
	defer s.encs.Put(enc)
	docs, services, err := enc.encode(recs, s.services)
	if err != nil {
		return ingester.Permanent(err)
	}
	if err := s.write(ctx, docs); err != nil {
		return err
	}
	// Remembered only once indexed: a failed write sends them again.
	s.services.add(services)
	return nil
}

// Probe implements ingester.Prober, as Sink.Probe.
func (s *JaegerSink) Probe(ctx context.Context) error { return s.probe(ctx) }

// serviceCache remembers the service documents written, by index and id.
type serviceCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

func newServiceCache(max int) *serviceCache {
	return &serviceCache{max: max, seen: make(map[string]struct{})}
}

func (c *serviceCache) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[key]
	return ok
}

func (c *serviceCache) add(keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if len(c.seen) >= c.max {
			// Emptied, not evicted one by one: yesterday's entries go too,
			// and what is forgotten is only written (overwritten) again.
			clear(c.seen)
		}
		c.seen[k] = struct{}{}
	}
}

// spanDay is the UTC day of a span start in nanoseconds since the epoch.
func spanDay(startNanos uint64) string {
	return time.Unix(int64(startNanos/1e9), int64(startNanos%1e9)).UTC().Format("2006-01-02")
}
