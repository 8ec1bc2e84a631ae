package prometheus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/sink/snappypush"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

func realConfig(url string) Config {
	return Config{Config: snappypush.Config{URL: url, Timeout: 10 * time.Second, MaxDecodedBytes: 1 << 20, MaxRequestDecodedBytes: 16 << 20}}
}

// TestMisconfiguredURL: -prometheus.url without /api/v1/write is refused by
// Prometheus (405): the sink is misconfigured, so the write is retried,
// never dead-lettered, and Probe says so without writing. With the right
// URL, Probe succeeds and a write is queryable.
func TestMisconfiguredURL(t *testing.T) {
	prom := testenv.Prometheus(t, testenv.SinkConfig)
	ctx := context.Background()
	now := time.Now().UnixMilli()
	req := &prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels:  []prompb.Label{{Name: "__name__", Value: "probe_test"}, {Name: "cluster", Value: "c"}},
		Samples: []prompb.Sample{{Value: 42, Timestamp: now}},
	}}}
	raw, err := req.Marshal()
	require.NoError(t, err)
	r := ingester.Record{Offset: 1, Value: snappy.Encode(nil, raw), Envelope: &recordpb.Envelope{Items: 1}}

	for _, base := range []string{prom.URL, prom.URL + "/"} {
		wrong := New(realConfig(base), nil)
		err := wrong.Write(ctx, []ingester.Record{r})
		require.Error(t, err)
		require.False(t, ingester.IsPermanent(err), "a wrong URL must not dead-letter: %v", err)
		require.True(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
		require.ErrorContains(t, err, "check -prometheus.url")
		t.Logf("write to %s: %v", base, err)
		require.True(t, errors.Is(wrong.Probe(ctx), ingester.ErrMisconfigured))
	}

	var _ ingester.Prober = (*Sink)(nil)
	right := New(realConfig(prom.URL+"/api/v1/write"), nil)
	require.NoError(t, right.Probe(ctx))
	require.NoError(t, right.Write(ctx, []ingester.Record{r}))
	testenv.Eventually(t, 10*time.Second, func() error {
		got, err := prom.Query(`probe_test{cluster="c"}`, time.UnixMilli(now))
		if err == nil && (len(got) != 1 || got[0].Value != 42) {
			err = fmt.Errorf("got %v", got)
		}
		return err
	})
	// The probe stored nothing: the only series is the one written.
	got, err := prom.Query(`count({__name__!=""})`, time.UnixMilli(now))
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, 1.0, got[0].Value)

	prom.Stop()
	err = right.Probe(ctx)
	require.Error(t, err)
	require.False(t, errors.Is(err, ingester.ErrMisconfigured), "%v", err)
}
