package flagenv

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type testConfig struct {
	Addr  string `yaml:"addr"`
	Limit int    `yaml:"limit"`
	Name  string `yaml:"name"`
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(file, []byte("addr: from-file\nlimit: 5\nname: from-file\n"), 0o644))
	var c testConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "http.addr", "default", "")
	fs.IntVar(&c.Limit, "limit", 1, "")
	fs.StringVar(&c.Name, "name", "default", "")
	t.Setenv("TRIBUTARY_TEST_LIMIT", "7")
	require.NoError(t, Parse(fs, []string{"-config.file", file, "-name", "from-flag"}, "TRIBUTARY_TEST", &c))
	require.Equal(t, testConfig{Addr: "from-file", Limit: 7, Name: "from-flag"}, c)
}

func TestUnknownYAMLKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(file, []byte("adr: typo\n"), 0o644))
	var c testConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	err := Parse(fs, []string{"-config.file", file}, "T", &c)
	require.ErrorContains(t, err, "adr")
}

func TestBadEnv(t *testing.T) {
	var c testConfig
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.IntVar(&c.Limit, "limit", 1, "")
	t.Setenv("T_LIMIT", "many")
	require.ErrorContains(t, Parse(fs, nil, "T", &c), "T_LIMIT")
}

type nestedConfig struct {
	Gateway struct {
		RetryAfter time.Duration `yaml:"retry_after"`
		Limits     struct {
			MaxBytes int      `yaml:"max_bytes"`
			Strict   bool     `yaml:"strict"`
			Topics   []string `yaml:"topics"`
		} `yaml:"limits"`
	} `yaml:"gateway"`
}

func TestYAMLErrorsNameKeysAndLines(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "gateway:\n  limits:\n    max_byte: 5\n", []string{"line 3: unknown key gateway.limits.max_byte"}},
		{"duration", "gateway:\n  retry_after: soon\n", []string{`line 2: gateway.retry_after: "soon" is not a duration (e.g. 500ms, 10s, 1m30s)`}},
		{"several", "gateway:\n  limits:\n    max_bytes: lots\n    strict: maybe\n    topics: 3\n", []string{
			`line 3: gateway.limits.max_bytes: "lots" is not an integer`,
			`line 4: gateway.limits.strict: "maybe" is not true or false`,
			`line 5: gateway.limits.topics: "3" is not a list`,
		}},
		{"mapping expected", "gateway: 5\n", []string{`line 1: gateway: "5" is not a mapping of keys`}},
		{"list for a number", "gateway:\n  limits:\n    max_bytes: [1]\n", []string{`line 3: gateway.limits.max_bytes: a list is not an integer`}},
		{"syntax", "gateway:\n\tretry_after: 1s\n", []string{"line 2: found character that cannot start any token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "c.yaml")
			require.NoError(t, os.WriteFile(file, []byte(tc.yaml), 0o644))
			var c nestedConfig
			err := Parse(flag.NewFlagSet("x", flag.ContinueOnError), []string{"-config.file", file}, "T", &c)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			for _, goType := range []string{"time.Duration", "flagenv.", "int", "bool", "[]string", "!!"} {
				require.NotContains(t, strings.ReplaceAll(err.Error(), "an integer", ""), goType, "no Go types in %q", err)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out strings.Builder
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(&out)
	require.ErrorIs(t, Parse(fs, []string{"-version"}, "T", &testConfig{}), flag.ErrHelp)
	require.Regexp(t, `^gateway \S+ \(.*go1\.\d+.*\)\n$`, out.String())
}
