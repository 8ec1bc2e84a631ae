package snappypush

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
)

// Config is what every push endpoint needs; sinks embed it and add their
// own fields.
type Config struct {
	URL             string        `yaml:"url"`
	Timeout         time.Duration `yaml:"timeout"`
	BasicAuthUser   string        `yaml:"basic_auth_user"`
	BasicAuthPass   string        `yaml:"basic_auth_password"`
	BearerToken     string        `yaml:"bearer_token"`
	DefaultTenant   string        `yaml:"default_tenant"`
	MaxDecodedBytes int           `yaml:"max_decoded_bytes"`
	// MaxRequestDecodedBytes bounds one request after decompression; each
	// sink registers its flag with the default its backends need.
	MaxRequestDecodedBytes int `yaml:"max_request_decoded_bytes"`
}

// RegisterFlags registers the flags under prefix (e.g. "loki."); urlHelp
// and tenantHelp describe -<prefix>url and -<prefix>default-tenant.
func (c *Config) RegisterFlags(prefix, urlHelp, tenantHelp string, fs *flag.FlagSet) {
	fs.StringVar(&c.URL, prefix+"url", "", urlHelp+" Empty: sink disabled.")
	fs.DurationVar(&c.Timeout, prefix+"timeout", 30*time.Second, "Timeout of one push request.")
	fs.StringVar(&c.BasicAuthUser, prefix+"basic-auth.username", "", "Basic auth user.")
	fs.StringVar(&c.BasicAuthPass, prefix+"basic-auth.password", "", "Basic auth password.")
	fs.StringVar(&c.BearerToken, prefix+"bearer-token", "", "Bearer token.")
	fs.StringVar(&c.DefaultTenant, prefix+"default-tenant", "", tenantHelp)
	// Far above what one record holds (the gateway cuts records at Kafka's
	// message size) and far below the backends' own request limits.
	fs.IntVar(&c.MaxDecodedBytes, prefix+"max-decoded-bytes", 64<<20, "Refuse (dead-letter) a record that decodes to more than this.")
}

// Validate checks the configuration; prefix names the flags in errors. An
// empty URL (sink disabled) is valid.
func (c *Config) Validate(prefix string) error {
	if c.URL == "" {
		return nil
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%surl %q is not an http(s) URL", prefix, c.URL)
	}
	switch {
	case c.BearerToken != "" && c.BasicAuthUser != "":
		return errors.New(prefix + "*: set basic auth or bearer token, not both")
	case c.BasicAuthPass != "" && c.BasicAuthUser == "":
		return errors.New(prefix + "basic-auth.password without a username")
	case c.Timeout <= 0:
		return errors.New(prefix + "timeout must be positive")
	case c.MaxDecodedBytes <= 0:
		return errors.New(prefix + "max-decoded-bytes must be positive")
	case c.MaxRequestDecodedBytes <= 0:
		return errors.New(prefix + "max-request-decoded-bytes must be positive")
	}
	return nil
}

// pusher builds the Pusher for c.
func (c *Config) pusher() *Pusher {
	return &Pusher{
		URL: c.URL, Timeout: c.Timeout, DefaultTenant: c.DefaultTenant,
		BasicAuthUser: c.BasicAuthUser, BasicAuthPass: c.BasicAuthPass, BearerToken: c.BearerToken,
		MaxDecodedBytes: c.MaxDecodedBytes, MaxRequestDecodedBytes: c.MaxRequestDecodedBytes,
	}
}
