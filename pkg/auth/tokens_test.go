package auth

import (
	"bytes"
	"crypto/sha256"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/pkg/limits"
)

var (
	tokenA = "token-of-cluster-a-0123456789"
	tokenB = "token-of-cluster-b-0123456789"
)

func tokensYAML(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

func TestParseTokens(t *testing.T) {
	table, err := ParseTokens(tokensYAML(
		"tokens:",
		"  - sha256: "+HashToken(tokenA),
		"    cluster: a",
		"    limits:",
		"      samples_per_second: 100",
		"  - sha256: "+strings.ToUpper(HashToken(tokenB)),
		"    cluster: b",
		"    tenant: team-b",
	))
	require.NoError(t, err)
	require.Len(t, table, 2)
	a := table[sha256.Sum256([]byte(tokenA))]
	require.Equal(t, &Identity{Cluster: "a", Limits: &limits.Cluster{SamplesPerSecond: 100}, Source: SourceToken}, a)
	b := table[sha256.Sum256([]byte(tokenB))]
	require.Equal(t, &Identity{Cluster: "b", Tenant: "team-b", Source: SourceToken}, b, "upper-case hex is the same hash")
	require.Equal(t, map[string]limits.Cluster{"a": {SamplesPerSecond: 100}}, table.ClusterLimits())

	empty, err := ParseTokens(nil)
	require.NoError(t, err)
	require.Empty(t, empty, "an empty file: no tokens")
}

func TestParseTokensErrorsNameTheLine(t *testing.T) {
	hashA := HashToken(tokenA)
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"token in clear", tokensYAML("tokens:", "  - sha256: "+tokenA, "    cluster: a"), "line 2: tokens[0]: sha256 must be 64 hex digits"},
		{"not hex", tokensYAML("tokens:", "  - sha256: "+strings.Repeat("z", 64), "    cluster: a"), "line 2: tokens[0]: sha256 is not hexadecimal"},
		{"no cluster", tokensYAML("tokens:", "  - sha256: "+hashA, "    cluster: a", "  - sha256: "+HashToken(tokenB)), "line 4: tokens[1]: cluster is missing"},
		{"bad tenant", tokensYAML("tokens:", "  - sha256: "+hashA, "    cluster: a", "    tenant: a/b"), `line 2: tokens[0]: tenant "a/b"`},
		{"duplicate", tokensYAML("tokens:", "  - sha256: "+hashA, "    cluster: a", "  - sha256: "+hashA, "    cluster: b"), "line 4: tokens[1]: sha256 already listed on line 2"},
		{"unknown key", tokensYAML("tokens:", "  - sha256: "+hashA, "    cluster: a", "    clustr: b"), "line 4: field clustr not found"},
		{"wrong type", tokensYAML("tokens:", "  - sha256: "+hashA, "    cluster: a", "    limits: 5"), "line 4: cannot unmarshal"},
		{"not yaml", []byte("tokens: [\n"), "tokens file:"},
		{"limits disagree", tokensYAML("tokens:",
			"  - sha256: "+hashA, "    cluster: a", "    limits: {samples_per_second: 1}",
			"  - sha256: "+HashToken(tokenB), "    cluster: a", "    limits: {samples_per_second: 2}"),
			`line 5: tokens[1]: limits of cluster "a" differ from those on line 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTokens(tc.file)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), tokenA, "a token is never echoed")
		})
	}
}

// The table holds hashes only: presenting a stored hash as the token, or
// a token one byte off, finds nothing.
func TestLookupHashesThePresentedToken(t *testing.T) {
	path := writeTokens(t, t.TempDir(), tokensYAML("tokens:", "  - sha256: "+HashToken(tokenA), "    cluster: a"))
	f, err := loadTokens(t, path, prometheus.NewRegistry(), discard())
	require.NoError(t, err)
	require.Equal(t, "a", f.Lookup(tokenA).Cluster)
	require.Nil(t, f.Lookup(HashToken(tokenA)), "the hash is not a token")
	require.Nil(t, f.Lookup(tokenA[:len(tokenA)-1]+"X"))
	require.Nil(t, f.Lookup(""))
	for sum := range *f.table.Load() {
		require.Equal(t, sha256.Sum256([]byte(tokenA)), sum, "keyed by SHA-256, nothing in clear")
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writeTokens(t *testing.T, dir string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, "tokens.yaml")
	// Write and rename, as a Secret update does: a reader never sees half.
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
	return path
}

const tokensMetrics = "tributary_gateway_auth_tokens"

func loadTokens(t *testing.T, path string, reg *prometheus.Registry, log *slog.Logger) (*TokenFile, error) {
	t.Helper()
	return loadTokenFile(path, time.Hour, reg, newMetrics(reg), log)
}

// reloads is <prefix>_reloads_total{outcome} of a pkg/filewatch watcher.
func reloads(t *testing.T, reg *prometheus.Registry, prefix, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != prefix+"_reloads_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s_reloads_total{outcome=%q}", prefix, outcome)
	return 0
}

// A changed file takes effect; a broken one is logged and counted once and
// the last good one stays; fixing it takes effect again.
func TestTokenFileReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	path := writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: "+HashToken(tokenA), "    cluster: a"))
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	f, err := loadTokens(t, path, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	var loaded []int
	f.OnLoad(func(t TokenTable) { loaded = append(loaded, len(t)) })
	require.Equal(t, []int{1}, loaded, "OnLoad sees the current table at once")
	// A change applies on the second poll that reads it.
	poll := func() { f.watch.Poll(); f.watch.Poll() }

	poll() // unchanged: nothing happens
	require.Equal(t, 1.0, reloads(t, reg, tokensMetrics, "success"), "the start-up load only")

	writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: "+HashToken(tokenB), "    cluster: b"))
	poll()
	require.Nil(t, f.Lookup(tokenA), "revoked")
	require.Equal(t, "b", f.Lookup(tokenB).Cluster)
	require.Equal(t, 2.0, reloads(t, reg, tokensMetrics, "success"))
	require.Equal(t, []int{1, 1}, loaded)

	writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: nope", "    cluster: c"))
	poll()
	poll()
	require.Equal(t, "b", f.Lookup(tokenB).Cluster, "the last good table stays")
	require.Equal(t, 1.0, reloads(t, reg, tokensMetrics, "error"), "a bad file is counted once")
	require.Contains(t, logs.String(), "line 2: tokens[0]: sha256 must be 64 hex digits")
	require.Contains(t, logs.String(), "-auth.tokens-file refused")
	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.tokens))

	writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: "+HashToken(tokenA), "    cluster: a", "  - sha256: "+HashToken(tokenB), "    cluster: b"))
	poll()
	require.Equal(t, "a", f.Lookup(tokenA).Cluster)
	require.Equal(t, 2.0, testutil.ToFloat64(f.metrics.tokens))
	require.Equal(t, []int{1, 1, 2}, loaded)
	require.NotContains(t, logs.String(), tokenA)
}

// A tokens file written in place can be read half-written, and its first
// half parses: applied, it would revoke every token in the second half
// until the next poll. It is never applied.
func TestTokenFileHalfWrittenIsNeverApplied(t *testing.T) {
	dir := t.TempDir()
	path := writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: "+HashToken(tokenA), "    cluster: a"))
	f, err := loadTokens(t, path, prometheus.NewRegistry(), discard())
	require.NoError(t, err)
	var loaded [][]string
	f.OnLoad(func(t TokenTable) {
		var clusters []string
		for _, id := range t {
			clusters = append(clusters, id.Cluster)
		}
		slices.Sort(clusters)
		loaded = append(loaded, clusters)
	})

	// The new file gives b a token and keeps a's, after b's: its first
	// half, cut after b's entry, parses and lacks a.
	full := tokensYAML("tokens:", "  - sha256: "+HashToken(tokenB), "    cluster: b", "  - sha256: "+HashToken(tokenA), "    cluster: a")
	half := full[:bytes.Index(full, []byte("  - sha256: "+HashToken(tokenA)))]
	_, err = ParseTokens(half)
	require.NoError(t, err, "the half parses: only the watcher keeps it out")
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	defer fh.Close()
	_, err = fh.Write(half)
	require.NoError(t, err)
	f.watch.Poll()
	require.Equal(t, "a", clusterOf(f, tokenA), "half a file read: a's token still works")
	_, err = fh.Write(full[len(half):])
	require.NoError(t, err)
	f.watch.Poll()
	require.Equal(t, "a", clusterOf(f, tokenA))
	require.Nil(t, f.Lookup(tokenB), "the whole file read once: not applied yet")
	f.watch.Poll()
	require.Equal(t, "a", clusterOf(f, tokenA))
	require.Equal(t, "b", clusterOf(f, tokenB), "the whole file read twice: applied")
	require.Equal(t, [][]string{{"a"}, {"a", "b"}}, loaded, "no table without a was ever in force")
}

// clusterOf is the cluster of token, "" for an unknown token.
func clusterOf(f *TokenFile, token string) string {
	if id := f.Lookup(token); id != nil {
		return id.Cluster
	}
	return ""
}

// Run polls: a change is seen within a few intervals.
func TestTokenFileRunPolls(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: "+HashToken(tokenA), "    cluster: a"))
	reg := prometheus.NewRegistry()
	f, err := loadTokenFile(path, 10*time.Millisecond, reg, newMetrics(reg), discard())
	require.NoError(t, err)
	go f.Run(t.Context())
	writeTokens(t, dir, tokensYAML("tokens:", "  - sha256: "+HashToken(tokenB), "    cluster: b"))
	require.Eventually(t, func() bool { return f.Lookup(tokenB) != nil }, 5*time.Second, 10*time.Millisecond)
}

func TestTokenEntryYAMLRoundTrips(t *testing.T) {
	text, err := TokenEntryYAML(TokenEntry{SHA256: HashToken(tokenA), Cluster: "prod: eu", Tenant: "t"})
	require.NoError(t, err)
	require.NotContains(t, text, tokenA)
	table, err := ParseTokens([]byte("tokens:\n" + text))
	require.NoError(t, err)
	require.Equal(t, &Identity{Cluster: "prod: eu", Tenant: "t", Source: SourceToken}, table[sha256.Sum256([]byte(tokenA))])
	_, err = TokenEntryYAML(TokenEntry{SHA256: HashToken(tokenA)})
	require.ErrorContains(t, err, "cluster is missing")
}
