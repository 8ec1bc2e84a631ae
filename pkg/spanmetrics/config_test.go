package spanmetrics

import (
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// -spanmetrics.flush-interval is the consumer's batch delay (there is no
// second flag for it), and the defaults are valid.
func TestConfigFlags(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	c.RegisterFlags("spanmetrics.", fs)
	require.Nil(t, fs.Lookup("spanmetrics.batch.max-delay"))
	require.NoError(t, fs.Parse([]string{"-spanmetrics.flush-interval=3s", "-spanmetrics.ingester-id=a"}))
	require.Equal(t, 3*time.Second, c.Consumer.BatchMaxDelay)
	require.Equal(t, "tributary.spans", c.Consumer.Topic)
	require.Equal(t, "tributary-spanmetrics", c.Consumer.Group)
	require.Equal(t, defaultBatchMaxBytes, c.Consumer.BatchMaxBytes)
	require.Equal(t, DefaultMaxSeriesPerCluster, c.MaxSeriesPerCluster)
	require.NoError(t, c.Validate())

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"idle not longer than flush": {[]string{"-spanmetrics.series-idle-timeout=15s"}, "series-idle-timeout"},
		"negative limit":             {[]string{"-spanmetrics.max-series-per-cluster=-1"}, "max-series-per-cluster"},
		"no ingester id":             {[]string{"-spanmetrics.ingester-id="}, "ingester-id"},
		"no flush interval":          {[]string{"-spanmetrics.flush-interval=0s"}, "flush-interval"},
	} {
		t.Run(name, func(t *testing.T) {
			var c Config
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			c.RegisterFlags("spanmetrics.", fs)
			require.NoError(t, fs.Parse(append([]string{"-spanmetrics.ingester-id=a"}, tc.args...)))
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}
