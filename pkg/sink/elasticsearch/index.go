package elasticsearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// indexPattern is a compiled Config.Index: literal text and the date tokens
// YYYY, MM, DD, HH, replaced by an entry's UTC time.
type indexPattern struct {
	parts []patternPart
}

type patternPart struct {
	lit string // when tok == 0
	tok byte   // 'Y', 'M', 'D', 'H'
}

var patternTokens = []struct {
	text string
	tok  byte
}{{"YYYY", 'Y'}, {"MM", 'M'}, {"DD", 'D'}, {"HH", 'H'}}

func parseIndexPattern(s string) (indexPattern, error) {
	var p indexPattern
	lit := 0 // start of the pending literal
	for i := 0; i < len(s); {
		matched := false
		for _, t := range patternTokens {
			if strings.HasPrefix(s[i:], t.text) {
				if lit < i {
					p.parts = append(p.parts, patternPart{lit: s[lit:i]})
				}
				p.parts = append(p.parts, patternPart{tok: t.tok})
				i += len(t.text)
				lit = i
				matched = true
				break
			}
		}
		if matched {
			continue
		}
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return p, fmt.Errorf("%q: upper-case %q is not part of a date token (YYYY, MM, DD, HH) and index names are lowercase", s, c)
		}
		i++
	}
	if lit < len(s) {
		p.parts = append(p.parts, patternPart{lit: s[lit:]})
	}
	// A sample name must be a valid index name; the dates only add digits.
	if err := validIndexName(p.name(time.Date(2006, 1, 2, 15, 0, 0, 0, time.UTC))); err != nil {
		return p, fmt.Errorf("%q: %w", s, err)
	}
	return p, nil
}

// name is the index of an entry at t.
func (p indexPattern) name(t time.Time) string {
	t = t.UTC()
	b := make([]byte, 0, 64)
	for _, part := range p.parts {
		switch part.tok {
		case 'Y':
			b = appendPadded(b, t.Year(), 4)
		case 'M':
			b = appendPadded(b, int(t.Month()), 2)
		case 'D':
			b = appendPadded(b, t.Day(), 2)
		case 'H':
			b = appendPadded(b, t.Hour(), 2)
		default:
			b = append(b, part.lit...)
		}
	}
	return string(b)
}

// wildcard is the index pattern that matches every name p produces, for
// the index template.
func (p indexPattern) wildcard() string {
	var b strings.Builder
	for _, part := range p.parts {
		if part.tok == 0 {
			b.WriteString(part.lit)
		} else if !strings.HasSuffix(b.String(), "*") {
			b.WriteByte('*')
		}
	}
	return b.String()
}

func appendPadded(b []byte, v, width int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	s := strconv.Itoa(v)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// validIndexName applies Elasticsearch's rules for index names.
func validIndexName(s string) error {
	switch {
	case s == "":
		return errors.New("index name is empty")
	case s == "." || s == "..":
		return fmt.Errorf("index name %q is not allowed", s)
	case len(s) > 255:
		return fmt.Errorf("index name is longer than 255 bytes")
	case strings.ContainsAny(s[:1], "-_+"):
		return fmt.Errorf("index name %q starts with %q", s, s[:1])
	case strings.ContainsAny(s, `\/*?"<>| ,#:`):
		return fmt.Errorf(`index name %q contains one of \ / * ? " < > | space , # :`, s)
	case strings.ToLower(s) != s:
		return fmt.Errorf("index name %q is not lowercase", s)
	}
	return nil
}

// templateBody is the composable index template for the indices of p.
//
// Stream labels and structured metadata are "flattened" fields: each object
// is one field mapping whatever its keys, every leaf value a keyword. Key
// names are kept exactly as sent. As objects of keyword fields instead,
// `app` next to `app.kubernetes.io/name` would be a mapping conflict (dots
// expand into objects, and labels.app cannot be a keyword and an object),
// and every distinct name across all clusters would add a field until the
// index hit index.mapping.total_fields.limit and refused documents. The
// price: label values are keywords only (term, prefix, wildcard, terms
// aggregations; no full text, no numeric ranges), and field pickers do not
// list the keys.
func templateBody(p indexPattern) ([]byte, error) {
	// ignore_above keeps a huge value from failing the whole document with
	// Lucene's 32766-byte term limit: 8191 characters of up to 4 bytes fit.
	flattened := map[string]any{"type": "flattened", "ignore_above": 8191}
	t := map[string]any{
		"index_patterns": []string{p.wildcard()},
		// Above the built-in templates (logs-*-* etc. are 100): two
		// overlapping patterns of one priority fail the install.
		"priority": 200,
		"_meta":    map[string]any{"managed_by": "tributary"},
		"template": map[string]any{
			"mappings": map[string]any{
				"properties": map[string]any{
					// Loki timestamps are nanoseconds; date_nanos keeps
					// entries of one millisecond in order.
					"@timestamp": map[string]any{"type": "date_nanos"},
					"message":    map[string]any{"type": "text"},
					"cluster":    map[string]any{"type": "keyword"},
					"tenant":     map[string]any{"type": "keyword"},
					"labels":     flattened,
					"metadata":   flattened,
				},
			},
		},
	}
	return json.Marshal(t)
}
