package elasticsearch

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		msg  string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"disabled", func(c *Config) { c.Addresses = ""; c.Workers = 0 }, ""},
		{"several addresses", func(c *Config) { c.Addresses = "https://es-0:9200, https://es-1:9200" }, ""},
		{"not a URL", func(c *Config) { c.Addresses = "es-0:9200" }, "not an http(s) URL"},
		{"basic auth and api key", func(c *Config) { c.Username, c.APIKey = "u", "k" }, "not both"},
		{"password alone", func(c *Config) { c.Password = "p" }, "password without username"},
		{"bad index", func(c *Config) { c.Index = "Logs-YYYY" }, "elasticsearch.index"},
		{"no template name", func(c *Config) { c.TemplateName = "" }, "template name"},
		{"no template name, skipped", func(c *Config) { c.TemplateName, c.SkipTemplate = "", true }, ""},
		{"no workers", func(c *Config) { c.Workers = 0 }, "workers"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig("http://es:9200")
			tc.edit(&c)
			err := c.Validate()
			if tc.msg == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.msg)
		})
	}
}
