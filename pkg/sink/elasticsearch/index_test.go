package elasticsearch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIndexName(t *testing.T) {
	for _, tc := range []struct {
		pattern  string
		at       time.Time
		want     string
		wildcard string
	}{
		{DefaultIndex, time.Date(2024, 5, 1, 23, 59, 59, 999999999, time.UTC), "tributary-logs-2024.05.01", "tributary-logs-*.*.*"},
		{DefaultIndex, time.Date(2024, 5, 2, 0, 0, 0, 0, time.UTC), "tributary-logs-2024.05.02", "tributary-logs-*.*.*"},
		// The entry's time in UTC, not the zone it was written in.
		{DefaultIndex, time.Date(2024, 5, 2, 1, 30, 0, 0, time.FixedZone("CEST", 2*3600)), "tributary-logs-2024.05.01", "tributary-logs-*.*.*"},
		{"logs-YYYY.MM.DD-HH", time.Date(2024, 12, 31, 7, 0, 0, 0, time.UTC), "logs-2024.12.31-07", "logs-*.*.*-*"},
		{"logs-YYYYMMDD", time.Date(1999, 1, 2, 0, 0, 0, 0, time.UTC), "logs-19990102", "logs-*"},
		{"logs-YYYY.MM", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "logs-2024.02", "logs-*.*"},
		{"all-logs", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "all-logs", "all-logs"},
		{"logs-yyyy-mm", time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC), "logs-yyyy-mm", "logs-yyyy-mm"}, // lower case is literal
	} {
		t.Run(tc.pattern+"@"+tc.at.String(), func(t *testing.T) {
			p, err := parseIndexPattern(tc.pattern)
			require.NoError(t, err)
			require.Equal(t, tc.want, p.name(tc.at))
			require.Equal(t, tc.wildcard, p.wildcard())
		})
	}
}

func TestIndexPatternRefused(t *testing.T) {
	for _, tc := range []struct{ pattern, msg string }{
		{"", "empty"},
		{"Tributary-YYYY", `upper-case 'T'`},
		{"logs-YYYY-Mon", `upper-case 'M'`},
		{"logs-YYY", `upper-case 'Y'`},
		{"-logs-YYYY", `starts with "-"`},
		{"_logs", `starts with "_"`},
		{"logs/YYYY", "contains"},
		{"logs YYYY", "contains"},
		{"logs*", "contains"},
		{"remote:logs", "contains"},
		{"..", "not allowed"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			_, err := parseIndexPattern(tc.pattern)
			require.ErrorContains(t, err, tc.msg)
		})
	}
}
