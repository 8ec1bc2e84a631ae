package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"

	"github.com/tributary-io/tributary/internal/testenv"
)

// The development broker keeps its topics across a restart (data dir).
func TestDevbrokerPersists(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	addr := testenv.Addr(port)
	start := func() *testenv.Process {
		p := testenv.StartProcess(t, "devbroker", testenv.Binary(t, "devbroker"),
			[]string{"-port", fmt.Sprint(port), "-data-dir", dir, "-partitions", "2"})
		waitFor(t, func() bool {
			c, err := sarama.NewClient([]string{addr}, sarama.NewConfig())
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return p
	}
	p := start()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	prod, err := sarama.NewSyncProducer([]string{addr}, cfg)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: "tributary.metrics", Key: sarama.StringEncoder("c"), Value: sarama.StringEncoder(fmt.Sprint("v", i))})
		require.NoError(t, err)
	}
	prod.Close()
	require.NoError(t, p.Stop(20*time.Second))

	start()
	recs := testenv.ReadTopic(t, addr, "tributary.metrics")
	require.Len(t, recs, 3)
	for i, r := range recs {
		require.Equal(t, fmt.Sprint("v", i), string(r.Value))
	}
}
