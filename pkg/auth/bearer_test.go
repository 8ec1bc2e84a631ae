package auth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header, want, err string
	}{
		{header: "", want: ""},
		{header: "Bearer abc.DEF-123_~+/=", want: "abc.DEF-123_~+/="},
		{header: "bearer abc", want: "abc"},
		{header: "BEARER  abc", want: "abc"},
		{header: "Basic dXNlcjpwYXNz", err: `want "Bearer <token>"`},
		{header: "Bearer", err: `want "Bearer <token>"`},
		{header: "Bearer ", err: "empty bearer token"},
		{header: "abc", err: `want "Bearer <token>"`},
		{header: "Bearer a b", err: "outside visible ASCII"},
		{header: "Bearer a\x00", err: "outside visible ASCII"},
		{header: "Bearer é", err: "outside visible ASCII"},
		{header: "Bearer " + strings.Repeat("x", maxTokenLen+1), err: "longer than 4096"},
	} {
		got, err := BearerToken(tc.header)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, "%q", tc.header)
			require.Empty(t, got)
			continue
		}
		require.NoError(t, err, "%q", tc.header)
		require.Equal(t, tc.want, got)
	}
}
