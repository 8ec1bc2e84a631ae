// Package otlplogs converts OTLP logs export requests into Loki push
// requests with the mapping Loki's own OTLP endpoint (/otlp/v1/logs)
// applies, as Loki documents it: a configured list of resource attributes
// become stream labels, every other attribute becomes structured metadata,
// the body becomes the line. The gateway writes the result as the same
// records /loki/api/v1/push produces, so the Loki and Elasticsearch sinks
// take them unchanged.
//
// The mapping, per log record:
//   - stream labels: the resource attributes of
//     default_resource_attributes_as_index_labels (Loki's default list)
//     and of resource_attributes rules with action index_label, names
//     normalized (every character but [a-zA-Z0-9_] becomes _, a leading
//     digit gets key_), map values flattened with _ between the keys; plus
//     cluster: the resource's k8s.cluster.name, else the request's default
//     cluster;
//   - line: a string body as is; any other body as OpenTelemetry's
//     AsString renders it (maps and arrays as JSON, bytes as base64);
//   - timestamp: time_unix_nano, else observed_time_unix_nano, else the
//     time the gateway received it;
//   - structured metadata: the other resource attributes, scope_name,
//     scope_version and the scope attributes, the log attributes, and
//     severity_number, severity_text, trace_id and span_id (hex), flags,
//     dropped_attributes_count and observed_timestamp (nanoseconds, when
//     the record has its own timestamp), each only when set.
package otlplogs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// DefaultIndexLabels are Loki's default_resource_attributes_as_index_labels
// (Loki 3.7; deployment.environment.name joined the documented list with
// the semantic conventions' rename).
var DefaultIndexLabels = []string{
	"cloud.availability_zone",
	"cloud.region",
	"container.name",
	"deployment.environment",
	"deployment.environment.name",
	"k8s.cluster.name",
	"k8s.container.name",
	"k8s.cronjob.name",
	"k8s.daemonset.name",
	"k8s.deployment.name",
	"k8s.job.name",
	"k8s.namespace.name",
	"k8s.pod.name",
	"k8s.replicaset.name",
	"k8s.statefulset.name",
	"service.instance.id",
	"service.name",
	"service.namespace",
}

// Actions of an attribute rule, as in Loki's otlp_config.
const (
	ActionIndexLabel         = "index_label"
	ActionStructuredMetadata = "structured_metadata"
	ActionDrop               = "drop"
)

// Config is Loki's per-tenant otlp_config, with the distributor's
// default_resource_attributes_as_index_labels beside it. The zero value
// (and an empty file) is Loki's default mapping.
type Config struct {
	// DefaultIndexLabels replaces DefaultIndexLabels when set.
	DefaultIndexLabels []string `yaml:"default_resource_attributes_as_index_labels"`
	ResourceAttributes struct {
		// IgnoreDefaults drops the default index labels: only the rules
		// below make labels.
		IgnoreDefaults   bool   `yaml:"ignore_defaults"`
		AttributesConfig []Rule `yaml:"attributes_config"`
	} `yaml:"resource_attributes"`
	ScopeAttributes []Rule `yaml:"scope_attributes"`
	LogAttributes   []Rule `yaml:"log_attributes"`
}

// Rule is one attributes_config: what to do with the attributes it names
// or whose whole name its regex matches. The first matching rule wins;
// the default index labels come before the configured rules, as in Loki.
type Rule struct {
	Action     string   `yaml:"action"`
	Attributes []string `yaml:"attributes"`
	Regex      string   `yaml:"regex"`

	names map[string]bool
	re    *regexp.Regexp
}

// LoadConfig reads a YAML file in the shape of Loki's otlp_config (unknown
// keys are an error). An empty path is the default mapping.
func LoadConfig(path string) (Config, error) {
	var c Config
	if path == "" {
		return c, c.compile()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.compile(); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) compile() error {
	check := func(what string, rules []Rule, labels bool) error {
		for i := range rules {
			r := &rules[i]
			switch r.Action {
			case ActionStructuredMetadata, ActionDrop:
			case ActionIndexLabel:
				if !labels {
					return fmt.Errorf("%s[%d]: action index_label is for resource attributes only", what, i)
				}
			default:
				return fmt.Errorf("%s[%d]: action %q: want index_label, structured_metadata or drop", what, i, r.Action)
			}
			if len(r.Attributes) == 0 && r.Regex == "" {
				return fmt.Errorf("%s[%d]: give attributes or a regex", what, i)
			}
			r.names = map[string]bool{}
			for _, a := range r.Attributes {
				r.names[a] = true
			}
			if r.Regex != "" {
				re, err := regexp.Compile("^(?:" + r.Regex + ")$")
				if err != nil {
					return fmt.Errorf("%s[%d]: regex: %w", what, i, err)
				}
				r.re = re
			}
		}
		return nil
	}
	if err := check("resource_attributes.attributes_config", c.ResourceAttributes.AttributesConfig, true); err != nil {
		return err
	}
	if err := check("scope_attributes", c.ScopeAttributes, false); err != nil {
		return err
	}
	return check("log_attributes", c.LogAttributes, false)
}

func (r *Rule) matches(name string) bool {
	return r.names[name] || (r.re != nil && r.re.MatchString(name))
}

// action is what the rules say of name; def when none matches.
func action(rules []Rule, name, def string) string {
	for i := range rules {
		if rules[i].matches(name) {
			return rules[i].Action
		}
	}
	return def
}
