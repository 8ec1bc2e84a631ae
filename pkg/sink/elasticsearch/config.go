package elasticsearch

import (
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ClientConfig is what the sinks of this package share: where the nodes
// are, how to log in, and how documents are sent in _bulk requests.
type ClientConfig struct {
	// Addresses is a comma-separated list of node URLs. Empty: sink disabled.
	Addresses string `yaml:"addresses"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	APIKey    string `yaml:"api_key"`
	// CAFile is a PEM file of the CA that signed the nodes' certificates
	// (Elasticsearch 8 serves HTTPS with its own CA by default).
	CAFile string `yaml:"ca_file"`

	// Flush settings of the bulk indexer. Write flushes before it returns;
	// these bound the size of one _bulk request and how many run at once.
	FlushBytes    int           `yaml:"flush_bytes"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	Workers       int           `yaml:"workers"`

	// Timeout of one request (a _bulk request, a template install).
	Timeout time.Duration `yaml:"timeout"`
	// MaxDecodedBytes refuses a record that decodes to more than this.
	MaxDecodedBytes int `yaml:"max_decoded_bytes"`

	// flagPrefix names the flags in error messages ("elasticsearch.").
	flagPrefix string
}

// Config of the Elasticsearch sink for logs.
type Config struct {
	ClientConfig `yaml:",inline"`

	// Index is the index name pattern, see IndexPatternHelp.
	Index string `yaml:"index"`
	// TemplateName is the composable index template installed at start-up
	// for the indices Index produces.
	TemplateName string `yaml:"template_name"`
	// SkipTemplate leaves the template alone: for servers without composable
	// templates, or when the operator installs an equivalent one.
	SkipTemplate bool `yaml:"skip_template"`
}

// IndexPatternHelp documents the syntax of Config.Index.
const IndexPatternHelp = `Index name pattern. The tokens YYYY, MM, DD and HH are replaced by the year, month, day and hour of each log entry's own timestamp in UTC; everything else is literal. Index names are lowercase, so any other upper-case letter is an error.`

// DefaultIndex makes one index per day, by entry time.
const DefaultIndex = "tributary-logs-YYYY.MM.DD"

// RegisterFlags registers the flags under prefix (e.g. "elasticsearch.").
func (c *Config) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.ClientConfig.RegisterFlags(prefix, fs)
	fs.StringVar(&c.Index, prefix+"index", DefaultIndex, IndexPatternHelp)
	fs.StringVar(&c.TemplateName, prefix+"template.name", "tributary-logs", "Composable index template installed at start-up for the indices of -"+prefix+"index.")
	fs.BoolVar(&c.SkipTemplate, prefix+"template.skip", false, "Do not install the index template (the server lacks composable templates, or you manage an equivalent one: labels and metadata must be mapped as flattened).")
}

// RegisterFlags registers the connection and bulk flags under prefix.
func (c *ClientConfig) RegisterFlags(prefix string, fs *flag.FlagSet) {
	c.flagPrefix = prefix
	fs.StringVar(&c.Addresses, prefix+"addresses", "", "Comma-separated Elasticsearch node URLs, e.g. https://es-0:9200,https://es-1:9200. Empty: sink disabled.")
	fs.StringVar(&c.Username, prefix+"username", "", "Basic auth user.")
	fs.StringVar(&c.Password, prefix+"password", "", "Basic auth password.")
	fs.StringVar(&c.APIKey, prefix+"api-key", "", "API key (base64 of id:key), instead of basic auth.")
	fs.StringVar(&c.CAFile, prefix+"ca-file", "", "PEM file of the CA of the nodes' HTTPS certificates. Empty: system roots.")
	// Elastic's guidance for bulk requests is 5–15 MB.
	fs.IntVar(&c.FlushBytes, prefix+"flush.bytes", 5<<20, "Largest _bulk request body; a batch is split into requests of this size.")
	fs.DurationVar(&c.FlushInterval, prefix+"flush.interval", 5*time.Second, "Flush of items left queued by a write whose context ended. Writes flush themselves before returning.")
	// Two requests in flight per ingester: enough to keep a node's bulk
	// thread pool busy without queueing (429) when several ingesters write.
	fs.IntVar(&c.Workers, prefix+"flush.workers", 2, "_bulk requests in flight at once.")
	fs.DurationVar(&c.Timeout, prefix+"timeout", 30*time.Second, "Timeout of one request to Elasticsearch.")
	fs.IntVar(&c.MaxDecodedBytes, prefix+"max-decoded-bytes", 64<<20, "Refuse (dead-letter) a record that decodes to more than this.")
}

// flag is the full name of the flag name under c's prefix, for messages.
func (c *ClientConfig) flag(name string) string {
	if c.flagPrefix == "" {
		return "elasticsearch." + name
	}
	return c.flagPrefix + name
}

// Enabled reports whether the sink is configured.
func (c *ClientConfig) Enabled() bool { return strings.TrimSpace(c.Addresses) != "" }

// AddressList splits Addresses.
func (c *ClientConfig) AddressList() []string {
	var out []string
	for _, a := range strings.Split(c.Addresses, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Validate checks the configuration. A disabled sink is valid.
func (c *Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if err := c.ClientConfig.Validate(); err != nil {
		return err
	}
	if _, err := parseIndexPattern(c.Index); err != nil {
		return fmt.Errorf("%s: %w", c.flag("index"), err)
	}
	if !c.SkipTemplate && c.TemplateName == "" {
		return fmt.Errorf("%s: template name is empty (set one, or skip the template)", c.flag("template.name"))
	}
	return nil
}

// Validate checks the connection and bulk settings. A disabled sink is
// valid.
func (c *ClientConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	for _, a := range c.AddressList() {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s: %q is not an http(s) URL", c.flag("addresses"), a)
		}
	}
	if c.APIKey != "" && c.Username != "" {
		return fmt.Errorf("%s and %s: set basic auth or an API key, not both", c.flag("username"), c.flag("api-key"))
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("%s: password without username", c.flag("password"))
	}
	switch {
	case c.FlushBytes <= 0:
		return fmt.Errorf("%s: flush bytes must be positive", c.flag("flush.bytes"))
	case c.FlushInterval <= 0:
		return fmt.Errorf("%s: flush interval must be positive", c.flag("flush.interval"))
	case c.Workers <= 0:
		return fmt.Errorf("%s: flush workers must be positive", c.flag("flush.workers"))
	case c.Timeout <= 0:
		return fmt.Errorf("%s: timeout must be positive", c.flag("timeout"))
	case c.MaxDecodedBytes <= 0:
		return fmt.Errorf("%s: max decoded bytes must be positive", c.flag("max-decoded-bytes"))
	}
	return nil
}
