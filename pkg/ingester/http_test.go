package ingester

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHTTPResult(t *testing.T) {
	for _, tc := range []struct {
		code          int
		retryAfter    string
		wantErr       bool
		permanent     bool
		misconfigured bool
		throttled     bool
		after         time.Duration
	}{
		{code: 200}, {code: 204},
		{code: 429, retryAfter: "7", wantErr: true, after: 7 * time.Second},
		{code: 429, wantErr: true, throttled: true},
		{code: 503, wantErr: true},
		{code: 500, retryAfter: "garbage", wantErr: true},
		{code: 400, wantErr: true, permanent: true},
		{code: 413, wantErr: true, permanent: true},
		{code: 422, wantErr: true, permanent: true},
		// The sink is set up wrongly (no path in the URL, expired
		// credentials): every record would be refused alike, so retry.
		{code: 401, wantErr: true, misconfigured: true},
		{code: 403, wantErr: true, misconfigured: true},
		{code: 404, wantErr: true, misconfigured: true},
		{code: 405, wantErr: true, misconfigured: true},
		{code: 407, wantErr: true, misconfigured: true},
	} {
		t.Run(http.StatusText(tc.code), func(t *testing.T) {
			resp := &http.Response{StatusCode: tc.code, Status: http.StatusText(tc.code), Header: http.Header{},
				Request: &http.Request{Method: http.MethodPost, URL: &url.URL{Scheme: "http", Host: "loki:3100", Path: "/"}}}
			if tc.retryAfter != "" {
				resp.Header.Set("Retry-After", tc.retryAfter)
			}
			err := HTTPResult("remote write", resp, "server says why")
			require.Equal(t, tc.wantErr, err != nil)
			if err == nil {
				return
			}
			require.Contains(t, err.Error(), "server says why")
			require.Equal(t, tc.permanent, IsPermanent(err), "%v", err)
			require.Equal(t, tc.misconfigured, errors.Is(err, ErrMisconfigured), "%v", err)
			require.Equal(t, tc.throttled || tc.code == 429, errors.Is(err, ErrThrottled), "%v", err)
			if tc.misconfigured {
				require.ErrorContains(t, err, "for POST /:")
			}
			var ra *RetryAfterError
			require.Equal(t, tc.after != 0, errors.As(err, &ra))
			if tc.after != 0 {
				require.Equal(t, tc.after, ra.After)
			}
		})
	}
	resp := &http.Response{StatusCode: 503, Header: http.Header{"Retry-After": {time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)}}}
	var ra *RetryAfterError
	require.True(t, errors.As(HTTPResult("x", resp, ""), &ra))
	require.InDelta(t, time.Minute, ra.After, float64(2*time.Second))
}
