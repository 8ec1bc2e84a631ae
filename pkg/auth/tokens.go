package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/tributary-io/tributary/pkg/filewatch"
	"github.com/tributary-io/tributary/pkg/limits"
)

// TokenEntry is one token of tokens.yaml:
//
//	tokens:
//	  - sha256: 4f1c...e2      # hex SHA-256 of the token, never the token
//	    cluster: prod-eu-1
//	    tenant: team-a         # optional
//	    limits:                # optional, pkg/limits.Cluster
//	      samples_per_second: 50000
type TokenEntry struct {
	SHA256  string          `yaml:"sha256"`
	Cluster string          `yaml:"cluster"`
	Tenant  string          `yaml:"tenant,omitempty"`
	Limits  *limits.Cluster `yaml:"limits,omitempty"`
}

type tokensDoc struct {
	Tokens []TokenEntry `yaml:"tokens"`
}

// maxClusterLen is the gateway's bound on a cluster name (its cluster
// header's).
const maxClusterLen = 256

// tenantPattern is what Loki and Mimir accept in X-Scope-OrgID.
var tenantPattern = regexp.MustCompile(`^[a-zA-Z0-9!\-_.*'()]{1,150}$`)

// TokenTable maps the SHA-256 of a token to its identity.
type TokenTable map[[sha256.Size]byte]*Identity

// HashToken is the hex SHA-256 of token, as tokens.yaml holds it.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenEntryYAML is e as an item of tokens.yaml's tokens: list, indented
// to be appended below a "tokens:" line. It refuses an entry ParseTokens
// would refuse.
func TokenEntryYAML(e TokenEntry) (string, error) {
	if _, err := e.check(); err != nil {
		return "", err
	}
	b, err := yaml.Marshal([]TokenEntry{e})
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
	return "  " + strings.Join(lines, "  ") + "\n", nil
}

// ParseTokens parses tokens.yaml. Errors name the line of the entry at
// fault. Unknown keys, a sha256 that is not 64 hex digits, a missing or
// invalid cluster, an invalid tenant and a hash listed twice are errors.
func ParseTokens(data []byte) (TokenTable, error) {
	var doc tokensDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file, no tokens
		return nil, fmt.Errorf("tokens file: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	lines := entryLines(data)
	table := make(TokenTable, len(doc.Tokens))
	firstLine := make(map[[sha256.Size]byte]int, len(doc.Tokens))
	type linedLimits struct {
		line int
		lim  limits.Cluster
	}
	clusterLimits := make(map[string]linedLimits) // the first entry with limits, per cluster
	for i, e := range doc.Tokens {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		sum, err := e.check()
		if err != nil {
			return nil, fmt.Errorf("tokens file: line %d: tokens[%d]: %w", line, i, err)
		}
		if prev, dup := firstLine[sum]; dup {
			return nil, fmt.Errorf("tokens file: line %d: tokens[%d]: sha256 already listed on line %d", line, i, prev)
		}
		firstLine[sum] = line
		if e.Limits != nil {
			if prev, ok := clusterLimits[e.Cluster]; ok && prev.lim != *e.Limits {
				return nil, fmt.Errorf("tokens file: line %d: tokens[%d]: limits of cluster %q differ from those on line %d; give them once, or the same", line, i, e.Cluster, prev.line)
			} else if !ok {
				clusterLimits[e.Cluster] = linedLimits{line: line, lim: *e.Limits}
			}
		}
		table[sum] = &Identity{Cluster: e.Cluster, Tenant: e.Tenant, Limits: e.Limits, Source: SourceToken}
	}
	return table, nil
}

func (e TokenEntry) check() ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if len(e.SHA256) != hex.EncodedLen(sha256.Size) {
		return sum, fmt.Errorf("sha256 must be %d hex digits (the SHA-256 of the token, not the token)", hex.EncodedLen(sha256.Size))
	}
	if _, err := hex.Decode(sum[:], []byte(e.SHA256)); err != nil {
		return sum, errors.New("sha256 is not hexadecimal")
	}
	if e.Cluster == "" {
		return sum, errors.New("cluster is missing")
	}
	if len(e.Cluster) > maxClusterLen || !utf8.ValidString(e.Cluster) {
		return sum, fmt.Errorf("cluster must be valid UTF-8 of at most %d bytes", maxClusterLen)
	}
	if e.Tenant != "" && (!tenantPattern.MatchString(e.Tenant) || e.Tenant == "." || e.Tenant == "..") {
		return sum, fmt.Errorf("tenant %q: want 1-150 of a-z A-Z 0-9 ! - _ . * ' ( ), not . or ..", e.Tenant)
	}
	return sum, nil
}

// entryLines is the line of each entry of the tokens list, for errors
// found after decoding.
func entryLines(data []byte) []int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "tokens" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var lines []int
		for _, n := range m.Content[i+1].Content {
			lines = append(lines, n.Line)
		}
		return lines
	}
	return nil
}

// ClusterLimits are the limits the table's entries give, by cluster.
func (t TokenTable) ClusterLimits() map[string]limits.Cluster {
	m := make(map[string]limits.Cluster)
	for _, id := range t {
		if id.Limits != nil {
			m[id.Cluster] = *id.Limits
		}
	}
	return m
}

// TokenFile is tokens.yaml, read again whenever its content changes
// (pkg/filewatch: a change applies once two polls in a row read it, so a
// file written in place is never applied half-written and cut tokens do
// not get revoked for a moment).
type TokenFile struct {
	table   atomic.Pointer[TokenTable]
	watch   *filewatch.Watcher
	metrics *metrics
	onLoad  atomic.Pointer[func(TokenTable)]
}

// loadTokenFile reads path once; it fails if the file cannot be read or
// parsed, so that the gateway does not start with a broken file. Its
// reload self-metrics are tributary_gateway_auth_tokens_reloads_total and
// tributary_gateway_auth_tokens_last_reload_success_timestamp_seconds.
func loadTokenFile(path string, interval time.Duration, reg prometheus.Registerer, m *metrics, log *slog.Logger) (*TokenFile, error) {
	f := &TokenFile{metrics: m}
	f.watch = filewatch.New(filewatch.Config{
		Path: path, Interval: interval, Flag: "-auth.tokens-file",
		MetricPrefix: "tributary_gateway_auth_tokens",
	}, f.apply, reg, log)
	if err := f.watch.Load(); err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	return f, nil
}

// OnLoad calls fn with the table now and after every successful reload.
func (f *TokenFile) OnLoad(fn func(TokenTable)) {
	f.onLoad.Store(&fn)
	fn(*f.table.Load())
}

func (f *TokenFile) apply(data []byte) error {
	table, err := ParseTokens(data)
	if err != nil {
		return err
	}
	f.table.Store(&table)
	if fn := f.onLoad.Load(); fn != nil {
		(*fn)(table)
	}
	f.metrics.tokens.Set(float64(len(table)))
	return nil
}

// Lookup is the identity of token, or nil.
//
// The presented token is hashed and the hash looked up in a map. That is
// constant time where it matters: a lookup's timing depends only on the
// SHA-256 of the presented token, which an attacker cannot steer towards a
// stored hash without a preimage, so timing tells nothing about the stored
// tokens. The tokens themselves are never compared byte by byte.
func (f *TokenFile) Lookup(token string) *Identity {
	return (*f.table.Load())[sha256.Sum256([]byte(token))]
}

// Run reads the file every interval until ctx ends. A changed file that
// parses replaces the table; one that does not is logged and counted, and
// the last good table stays.
func (f *TokenFile) Run(ctx context.Context) { f.watch.Run(ctx) }
