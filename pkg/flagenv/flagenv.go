// Package flagenv loads a component's configuration in the order a user
// expects: defaults, then the YAML file (-config.file, unknown keys are an
// error), then environment variables, then command-line flags.
//
// Every flag "a.b-c" of a binary with env prefix "TRIBUTARY_GATEWAY" can be
// set as TRIBUTARY_GATEWAY_A_B_C.
package flagenv

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/pkg/server"
)

// EnvName is the environment variable for flag name under prefix.
func EnvName(prefix, name string) string {
	r := strings.NewReplacer(".", "_", "-", "_")
	return prefix + "_" + strings.ToUpper(r.Replace(name))
}

// Parse fills cfg (whose fields are bound to flags in fs) from args, the
// environment and, if -config.file is given, a YAML file. Errors in the
// file name its YAML keys and lines. After -help or -version (printed to
// fs.Output()) it returns flag.ErrHelp: the caller exits with success.
func Parse(fs *flag.FlagSet, args []string, envPrefix string, cfg any) error {
	var file string
	var version bool
	fs.StringVar(&file, "config.file", "", "YAML configuration file. Flags and environment variables override it.")
	fs.BoolVar(&version, "version", false, "Print the version and exit.")
	usage := fs.Usage
	fs.Usage = func() {
		if usage != nil {
			usage()
		} else {
			fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		fmt.Fprintf(fs.Output(), "\nEvery flag can also be set by environment variable, e.g. -%s as %s.\n",
			"config.file", EnvName(envPrefix, "config.file"))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if version {
		fmt.Fprintln(fs.Output(), fs.Name(), server.Version())
		return flag.ErrHelp
	}
	if file == "" {
		file = os.Getenv(EnvName(envPrefix, "config.file"))
	}
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("read config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		// An empty file decodes as io.EOF and is fine.
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("config file %s: %w", file, yamlError(data, err))
		}
	}
	if err := FromEnv(fs, envPrefix); err != nil {
		return err
	}
	// Flags given on the command line win over the file.
	return fs.Parse(args)
}

// FromEnv sets each flag of fs not given on the command line from its
// environment variable (EnvName(envPrefix, name)), if that is set.
func FromEnv(fs *flag.FlagSet, envPrefix string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(EnvName(envPrefix, f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s: %w", EnvName(envPrefix, f.Name), e)
			}
		}
	})
	return err
}
