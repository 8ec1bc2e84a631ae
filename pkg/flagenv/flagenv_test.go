package flagenv

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

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
