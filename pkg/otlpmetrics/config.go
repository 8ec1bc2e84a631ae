// Package otlpmetrics converts OTLP metrics export requests into Prometheus
// remote-write 1.0 requests with the translator Prometheus's own OTLP
// receiver uses (storage/remote/otlptranslator/prometheusremotewrite), so
// that series reach the sink with the names, labels and target_info that
// Prometheus would have stored had it received the OTLP request itself.
//
// What differs from Prometheus's receiver, on purpose:
//   - every series carries a cluster label: the resource's k8s.cluster.name,
//     else the request's default cluster; a data point attribute named
//     cluster never overrides it;
//   - a metric the translator refuses (delta temporality, an unknown type,
//     a name it cannot build) is refused alone, with its data points counted
//     for OTLP's partial success, instead of failing the whole request;
//   - delta temporality is never turned into cumulative: a stateless gateway
//     with several replicas cannot keep the running sums that conversion
//     needs (Prometheus's otlp-deltatocumulative keeps them in one process).
package otlpmetrics

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/config"
)

// Config is Prometheus's otlp: configuration section, as gateway flags,
// plus the delta choice Prometheus makes with a feature flag.
type Config struct {
	// TranslationStrategy is otlp.translation_strategy:
	// UnderscoreEscapingWithSuffixes (Prometheus's default),
	// UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes or
	// NoTranslation.
	TranslationStrategy               string   `yaml:"translation_strategy"`
	PromoteResourceAttributes         []string `yaml:"promote_resource_attributes"`
	PromoteAllResourceAttributes      bool     `yaml:"promote_all_resource_attributes"`
	IgnoreResourceAttributes          []string `yaml:"ignore_resource_attributes"`
	KeepIdentifyingResourceAttributes bool     `yaml:"keep_identifying_resource_attributes"`
	ConvertHistogramsToNHCB           bool     `yaml:"convert_histograms_to_nhcb"`
	PromoteScopeMetadata              bool     `yaml:"promote_scope_metadata"`
	// AllowDeltaTemporality writes delta sums and histograms as they come,
	// each sample the change over its interval, as Prometheus's
	// otlp-native-delta-ingestion feature does (type unknown, no _total
	// suffix); PromQL's rate() and increase() are then wrong for them, use
	// sum_over_time(). Off, such metrics are refused (partial success
	// naming each).
	AllowDeltaTemporality bool `yaml:"allow_delta_temporality"`
	// LookbackDelta spaces target_info's samples over a request's time
	// range, as Prometheus does with its query.lookback-delta.
	LookbackDelta time.Duration `yaml:"lookback_delta"`
}

// stringList is a comma-separated flag value.
type stringList struct{ p *[]string }

func (l stringList) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

func (l stringList) Set(s string) error {
	*l.p = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l.p = append(*l.p, v)
		}
	}
	return nil
}

// RegisterFlags registers the flags under prefix (e.g. "otlp.metrics.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.StringVar(&c.TranslationStrategy, prefix+"translation-strategy", string(otlptranslator.UnderscoreEscapingWithSuffixes), "How OTLP metric and attribute names become Prometheus names, as Prometheus's otlp.translation_strategy: UnderscoreEscapingWithSuffixes (Prometheus's default: http.server.duration in s -> http_server_duration_seconds), UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes or NoTranslation (both need -limits.metrics.utf8-names and Prometheus 3 sinks).")
	fs.Var(stringList{&c.PromoteResourceAttributes}, prefix+"promote-resource-attributes", "Comma-separated resource attributes copied as labels onto every series of their resource, as Prometheus's otlp.promote_resource_attributes (e.g. k8s.namespace.name,k8s.pod.name). All resource attributes are on target_info anyway.")
	fs.BoolVar(&c.PromoteAllResourceAttributes, prefix+"promote-all-resource-attributes", false, "Copy every resource attribute but those of -"+prefix+"ignore-resource-attributes as labels, as Prometheus's otlp.promote_all_resource_attributes. Excludes -"+prefix+"promote-resource-attributes.")
	fs.Var(stringList{&c.IgnoreResourceAttributes}, prefix+"ignore-resource-attributes", "Comma-separated resource attributes not promoted by -"+prefix+"promote-all-resource-attributes.")
	fs.BoolVar(&c.KeepIdentifyingResourceAttributes, prefix+"keep-identifying-resource-attributes", false, "Keep service.name, service.namespace and service.instance.id on target_info as well as in job and instance, as Prometheus's otlp.keep_identifying_resource_attributes.")
	fs.BoolVar(&c.ConvertHistogramsToNHCB, prefix+"convert-histograms-to-nhcb", false, "Write explicit-bucket histograms as native histograms with custom buckets instead of _bucket/_sum/_count series, as Prometheus's otlp.convert_histograms_to_nhcb. Needs sinks that accept them (Prometheus 3).")
	fs.BoolVar(&c.PromoteScopeMetadata, prefix+"promote-scope-metadata", false, "Add otel_scope_name, otel_scope_version, otel_scope_schema_url and otel_scope_<attribute> labels, as Prometheus's otlp.promote_scope_metadata.")
	fs.BoolVar(&c.AllowDeltaTemporality, prefix+"allow-delta-temporality", false, "Write delta sums and histograms as they come (each sample is the change over its interval; metric type unknown), as Prometheus's otlp-native-delta-ingestion feature. Off: metrics with delta temporality are refused, named in the partial success. The gateway never converts delta to cumulative: its replicas keep no running sums.")
	// Prometheus's default query.lookback-delta.
	fs.DurationVar(&c.LookbackDelta, prefix+"lookback-delta", 5*time.Minute, "Spacing of target_info samples over a request's time range; set it to the sink Prometheus's -query.lookback-delta.")
}

// Validate checks the configuration with Prometheus's own rules for its
// otlp: section. utf8Names is whether the gateway accepts UTF-8 names
// (-limits.metrics.utf8-names).
func (c *Config) Validate(utf8Names bool) error {
	s := otlptranslator.TranslationStrategyOption(c.TranslationStrategy)
	switch s {
	case otlptranslator.UnderscoreEscapingWithSuffixes, otlptranslator.UnderscoreEscapingWithoutSuffixes:
	case otlptranslator.NoUTF8EscapingWithSuffixes, otlptranslator.NoTranslation:
		if !utf8Names {
			return fmt.Errorf("otlp.metrics.translation-strategy %s writes UTF-8 names: it needs -limits.metrics.utf8-names (and sinks that accept them)", s)
		}
	default:
		return fmt.Errorf("otlp.metrics.translation-strategy %q: want UnderscoreEscapingWithSuffixes, UnderscoreEscapingWithoutSuffixes, NoUTF8EscapingWithSuffixes or NoTranslation", c.TranslationStrategy)
	}
	if c.PromoteAllResourceAttributes && len(c.PromoteResourceAttributes) > 0 {
		return errors.New("otlp.metrics.promote-all-resource-attributes and otlp.metrics.promote-resource-attributes cannot both be set")
	}
	if !c.PromoteAllResourceAttributes && len(c.IgnoreResourceAttributes) > 0 {
		return errors.New("otlp.metrics.ignore-resource-attributes needs otlp.metrics.promote-all-resource-attributes")
	}
	for _, l := range [][]string{c.PromoteResourceAttributes, c.IgnoreResourceAttributes} {
		seen := map[string]bool{}
		for _, a := range l {
			if seen[a] {
				return fmt.Errorf("otlp.metrics: resource attribute %q listed twice", a)
			}
			seen[a] = true
		}
	}
	if c.LookbackDelta < 0 {
		return errors.New("otlp.metrics.lookback-delta must not be negative")
	}
	return nil
}

// prometheusConfig is c as Prometheus's own configuration type.
func (c *Config) prometheusConfig() config.OTLPConfig {
	return config.OTLPConfig{
		PromoteAllResourceAttributes:      c.PromoteAllResourceAttributes,
		PromoteResourceAttributes:         c.PromoteResourceAttributes,
		IgnoreResourceAttributes:          c.IgnoreResourceAttributes,
		TranslationStrategy:               otlptranslator.TranslationStrategyOption(c.TranslationStrategy),
		KeepIdentifyingResourceAttributes: c.KeepIdentifyingResourceAttributes,
		ConvertHistogramsToNHCB:           c.ConvertHistogramsToNHCB,
		PromoteScopeMetadata:              c.PromoteScopeMetadata,
	}
}
