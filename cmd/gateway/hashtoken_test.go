package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/auth"
)

func TestHashToken(t *testing.T) {
	const token = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0"
	var out strings.Builder
	c := hashTokenConfig{Enabled: true, Cluster: "prod-eu", Tenant: "team-a"}
	require.NoError(t, c.Run(strings.NewReader(token+"\r\n"), &out))
	require.NotContains(t, out.String(), token)
	table, err := auth.ParseTokens([]byte("tokens:\n" + out.String()))
	require.NoError(t, err)
	require.Len(t, table, 1)
	for _, id := range table {
		require.Equal(t, "prod-eu", id.Cluster)
		require.Equal(t, "team-a", id.Tenant)
	}
	require.Contains(t, out.String(), auth.HashToken(token), "the line ending is not part of the token")

	require.ErrorContains(t, c.Run(strings.NewReader("short\n"), &out), "shorter than 16 bytes")
	require.ErrorContains(t, c.Run(strings.NewReader("has a space in the middle of it\n"), &out), "cannot be sent")
	require.ErrorContains(t, (&hashTokenConfig{Enabled: true}).Run(strings.NewReader(token), &out), "-auth.hash-token.cluster")

	// The flag works without any of the gateway's own configuration.
	cfg, err := parseConfig([]string{"-auth.hash-token", "-auth.hash-token.cluster=x", "-limits.overload-status=1"})
	require.NoError(t, err)
	require.True(t, cfg.hashToken.Enabled)
}
