package lokipush

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/tributary-io/tributary/pkg/shard"
)

// labelPair is one name="value" of a stream. In the protobuf path the strings
// alias the decoded request and are valid only while Parse runs.
type labelPair struct{ name, value string }

// parseLabels parses a stream's label string the way Loki's push path does
// (syntax.ParseLabels → promql ParseMetric), restricted to what a stream
// selector needs:
//
//	'{' [ name '=' "value" { ',' name '=' "value" } [ ',' ] ] '}'
//
// with ' ', '\t', '\n', '\r' allowed between tokens, names matching
// [a-zA-Z_][a-zA-Z0-9_]* and values Go-quoted with double quotes. A blank
// string is no labels, as for ParseMetric. It appends the pairs in input
// order, empty values and duplicates included, to dst; the caller applies
// Loki's rules to them. It does not allocate unless a value contains an
// escape sequence.
//
// Deliberately narrower than promql: no metric name before '{', no quoted
// (UTF-8) label names, no single-quoted or backquoted values, no '#' comments.
// No Loki client sends those, and the gateway rewrites label strings it
// cannot keep byte for byte.
func parseLabels(s string, dst []labelPair) ([]labelPair, error) {
	i := skipSpace(s, 0)
	if i == len(s) {
		return dst, nil
	}
	if s[i] != '{' {
		return dst, errors.New(`expected "{"`)
	}
	i = skipSpace(s, i+1)
	for {
		if i == len(s) {
			return dst, errors.New("unexpected end of input inside braces")
		}
		if s[i] == '}' {
			break
		}
		// name
		start := i
		if !isNameStart(s[i]) {
			return dst, fmt.Errorf("unexpected character %q at %d, expected a label name", s[i], i)
		}
		for i++; i < len(s) && isNameChar(s[i]); i++ {
		}
		name := s[start:i]
		i = skipSpace(s, i)
		if i == len(s) || s[i] != '=' {
			return dst, fmt.Errorf(`expected "=" after label name %q`, name)
		}
		i = skipSpace(s, i+1)
		if i == len(s) || s[i] != '"' {
			return dst, fmt.Errorf("expected a double-quoted value for label %q", name)
		}
		value, n, err := parseQuoted(s[i:])
		if err != nil {
			return dst, fmt.Errorf("label %q: %w", name, err)
		}
		dst = append(dst, labelPair{name: name, value: value})
		i = skipSpace(s, i+n)
		if i < len(s) && s[i] == ',' {
			i = skipSpace(s, i+1)
			continue
		}
		if i < len(s) && s[i] == '}' {
			break
		}
		return dst, fmt.Errorf(`expected "," or "}" after label %q`, name)
	}
	if i = skipSpace(s, i+1); i != len(s) {
		return dst, fmt.Errorf("unexpected %q after labels", s[i])
	}
	return dst, nil
}

// parseQuoted reads the double-quoted string at the start of s and returns its
// value and the number of bytes it took. Escapes are Go's (and PromQL's); raw
// newlines and invalid UTF-8 are refused, as PromQL's lexer does.
func parseQuoted(s string) (string, int, error) {
	escaped, ascii := false, true
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			raw := s[:i+1]
			if !ascii && !utf8.ValidString(raw) {
				return "", 0, errors.New("invalid UTF-8 in value")
			}
			if !escaped {
				return s[1:i], i + 1, nil
			}
			v, err := strconv.Unquote(raw)
			if err != nil {
				return "", 0, fmt.Errorf("invalid escape sequence in %s", raw)
			}
			return v, i + 1, nil
		case c == '\\':
			escaped = true
			i++ // the escaped byte cannot end the string
			if i < len(s) && s[i] >= utf8.RuneSelf {
				ascii = false
			}
		case c == '\n':
			return "", 0, errors.New("unterminated quoted string")
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", 0, errors.New("unterminated quoted string")
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func isNameStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

func isNameChar(c byte) bool { return isNameStart(c) || ('0' <= c && c <= '9') }

func validLabelName(s string) bool {
	if s == "" || !isNameStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isNameChar(s[i]) {
			return false
		}
	}
	return true
}

// labelSet is a stream's labels after Loki's normalisation: empty values
// dropped (Loki treats them as absent), the cluster label found.
type labelSet struct {
	pairs   []labelPair // non-empty values, input order
	cluster string      // value of the cluster label; "" if absent
}

// normalize drops empty-valued pairs in place and finds the cluster label.
func normalize(pairs []labelPair) labelSet {
	out := pairs[:0]
	var cluster string
	for _, p := range pairs {
		if p.value == "" {
			continue
		}
		if p.name == ClusterLabel {
			cluster = p.value
		}
		out = append(out, p)
	}
	return labelSet{pairs: out, cluster: cluster}
}

// hash hashes the labels but the cluster label, whatever their order: a
// stream maps to the same shard whether its cluster label was sent or is
// added by the gateway.
func (ls labelSet) hash() uint64 {
	var h shard.Labels
	for _, p := range ls.pairs {
		if p.name != ClusterLabel {
			h.AddString(p.name, p.value)
		}
	}
	return h.Sum()
}

// shardOf is the shard of a stream of cluster with labels ls: 0 unless
// opt.Sharder spreads the cluster.
func (ls labelSet) shardOf(cluster string, opt *Options) int {
	if opt.Sharder == nil {
		return 0
	}
	if k := opt.Sharder.Shards(cluster); k > 1 {
		return shard.Of(ls.hash(), k)
	}
	return 0
}

// override drops the cluster label when opt.OverrideCluster is set and it
// names another cluster than opt.DefaultCluster, which is then added in
// its place (the pairs are filtered in place).
func (ls labelSet) override(opt Options) labelSet {
	if !opt.OverrideCluster || ls.cluster == "" || ls.cluster == opt.DefaultCluster {
		return ls
	}
	out := ls.pairs[:0]
	for _, p := range ls.pairs {
		if p.name != ClusterLabel {
			out = append(out, p)
		}
	}
	return labelSet{pairs: out}
}

// checkStream applies the gateway's rule (a stream has a cluster label, or
// there is a default cluster dflt to add) and Loki's to ls.
func (ls labelSet) checkStream(lim Limits, dflt string, name func() string) error {
	var add string
	if ls.cluster == "" && len(ls.pairs) > 0 {
		if dflt == "" {
			return badStream(name(), "no %s label and no default cluster", ClusterLabel)
		}
		add = dflt
	}
	return ls.check(lim, add, name)
}

// check applies Loki's ValidateLabels rules (pkg/distributor/validator.go) to
// the labels the stream will have once the gateway has added the cluster
// label (addCluster), so that the sink's Loki cannot refuse what the gateway
// accepted. name renders the stream for the error message.
func (ls labelSet) check(lim Limits, addCluster string, name func() string) error {
	if len(ls.pairs) == 0 {
		return badStream(name(), "error at least one label pair is required per stream")
	}
	n := len(ls.pairs)
	if addCluster != "" {
		n++
	}
	for _, p := range ls.pairs {
		if p.name == serviceNameLabel { // Loki does not count the label it may add itself
			n--
			break
		}
	}
	if lim.MaxLabelNamesPerStream > 0 && n > lim.MaxLabelNamesPerStream {
		return badStream(name(), "stream has %d label names; limit %d", n, lim.MaxLabelNamesPerStream)
	}
	if lim.MaxLabelValueLen > 0 && len(addCluster) > lim.MaxLabelValueLen {
		return badStream(name(), "default cluster %q is longer than the label value limit %d", short(addCluster), lim.MaxLabelValueLen)
	}
	for _, p := range ls.pairs {
		if lim.MaxLabelNameLen > 0 && len(p.name) > lim.MaxLabelNameLen {
			return badStream(name(), "label name too long: %d bytes, limit %d: %q", len(p.name), lim.MaxLabelNameLen, short(p.name))
		}
		if lim.MaxLabelValueLen > 0 && len(p.value) > lim.MaxLabelValueLen {
			return badStream(name(), "label value too long: %d bytes, limit %d: %q", len(p.value), lim.MaxLabelValueLen, short(p.value))
		}
	}
	if dup, ok := duplicateName(ls.pairs); ok {
		return badStream(name(), "duplicate label name: %q", dup)
	}
	return nil
}

// duplicateName reports a name that occurs twice. Label counts are small
// (they are checked against the limit first), so the quadratic scan is the
// fast, allocation-free choice; without a limit it sorts a copy.
func duplicateName(pairs []labelPair) (string, bool) {
	if len(pairs) > 32 {
		names := make([]string, len(pairs))
		for i, p := range pairs {
			names[i] = p.name
		}
		slices.Sort(names)
		for i := 1; i < len(names); i++ {
			if names[i] == names[i-1] {
				return names[i], true
			}
		}
		return "", false
	}
	for i := 1; i < len(pairs); i++ {
		for j := 0; j < i; j++ {
			if pairs[i].name == pairs[j].name {
				return pairs[i].name, true
			}
		}
	}
	return "", false
}

// render writes the labels in Loki's canonical form ({a="b", c="d"}, sorted by
// name, values quoted with strconv.Quote as Prometheus' labels.String does),
// with cluster="<cluster>" added when cluster is not empty.
func (ls labelSet) render(cluster string) string {
	var arr [16]labelPair
	pairs := append(arr[:0], ls.pairs...)
	if cluster != "" {
		pairs = append(pairs, labelPair{name: ClusterLabel, value: cluster})
	}
	slices.SortStableFunc(pairs, func(a, b labelPair) int { return strings.Compare(a.name, b.name) })
	size := 2
	for _, p := range pairs {
		size += len(p.name) + len(p.value) + 5
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, p := range pairs {
		if i > 0 {
			b = append(b, ',', ' ')
		}
		b = append(b, p.name...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, p.value)
	}
	b = append(b, '}')
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is not touched again
}
