// Package gatewayhttp is the agent's HTTP client to the gateway, shared by
// every component that sends (logs, events, spans): the gateway section's
// TLS and bearer token, and the retry policy (which answers to retry, and
// how long to wait).
package gatewayhttp

import (
	"cmp"
	"fmt"
	"net/http"
	"time"

	config_util "github.com/prometheus/common/config"

	"github.com/tributary-io/tributary/pkg/agent/metrics"
)

// DefaultTimeout bounds one request when the gateway section sets none:
// the gateway answers only after Kafka acknowledged (acks=all), which takes
// milliseconds when healthy and seconds when a broker fails over.
const DefaultTimeout = 30 * time.Second

// Client builds an *http.Client from the gateway section: TLS (CA, client
// certificate, insecure_skip_verify), the timeout of one request, and
// "Authorization: Bearer <token>" read from BearerTokenFile on every
// request, so a rotated token needs no restart.
//
// It is Prometheus's own HTTP client configuration (the one the metrics
// half's remote write uses), so the two halves of the agent read the same
// files the same way: the CA and client certificate files are read again
// when they change.
func Client(gw metrics.GatewayConfig) (*http.Client, error) {
	cfg := config_util.HTTPClientConfig{
		TLSConfig: config_util.TLSConfig{
			CAFile:             gw.TLS.CAFile,
			CertFile:           gw.TLS.CertFile,
			KeyFile:            gw.TLS.KeyFile,
			InsecureSkipVerify: gw.TLS.InsecureSkipVerify,
		},
		FollowRedirects: false, // a redirected POST would lose its body
		EnableHTTP2:     true,
	}
	if gw.BearerTokenFile != "" {
		cfg.Authorization = &config_util.Authorization{Type: "Bearer", CredentialsFile: gw.BearerTokenFile}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gateway client: %w", err)
	}
	c, err := config_util.NewClientFromConfig(cfg, "tributary-agent")
	if err != nil {
		return nil, fmt.Errorf("gateway client: %w", err)
	}
	c.Timeout = cmp.Or(time.Duration(gw.Timeout), DefaultTimeout)
	return c, nil
}

// Retryable reports whether a response status should be retried: 408
// (request timeout), 429 (rate limited) and every 5xx (the gateway's
// overload answer is 503 with Retry-After). Any other 4xx is the gateway
// refusing the request for what it is: sending it again gets the same
// answer.
func Retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status/100 == 5
}
