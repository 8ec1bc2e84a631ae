package main

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/require"
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
