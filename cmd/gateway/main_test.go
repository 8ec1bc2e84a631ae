package main

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The example file is valid, and says the defaults except where it says
// "example": a default changed without the file fails here.
func TestExampleConfig(t *testing.T) {
	fromFile, err := parseConfig([]string{"-config.file=gateway.example.yaml"})
	require.NoError(t, err)
	defaults, err := parseConfig(nil)
	require.NoError(t, err)
	defaults.Gateway.Kafka.Brokers = "kafka-0:9092,kafka-1:9092"
	require.Equal(t, defaults, fromFile)
}

func TestVersionFlag(t *testing.T) {
	_, err := parseConfig([]string{"-version"})
	require.ErrorIs(t, err, flag.ErrHelp)
}

// Every key of the configuration is in the example file, so that a new
// key (a security one above all) is shown with its default where
// operators look for it.
func TestExampleConfigHasEveryKey(t *testing.T) {
	b, err := os.ReadFile("gateway.example.yaml")
	require.NoError(t, err)
	var root yaml.Node
	require.NoError(t, yaml.Unmarshal(b, &root))
	inFile := map[string]bool{}
	var walk func(prefix string, n *yaml.Node)
	walk = func(prefix string, n *yaml.Node) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := prefix + n.Content[i].Value
			inFile[key] = true
			walk(key+".", n.Content[i+1])
		}
	}
	walk("", root.Content[0])

	var missing []string
	var keys func(prefix string, typ reflect.Type)
	keys = func(prefix string, typ reflect.Type) {
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			key := prefix + name
			if !inFile[key] {
				missing = append(missing, key)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				keys(key+".", f.Type)
			}
		}
	}
	keys("", reflect.TypeFor[config]())
	require.Empty(t, missing, "keys missing from gateway.example.yaml")
}
