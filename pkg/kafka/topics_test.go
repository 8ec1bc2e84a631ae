package kafka

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/tributary-io/tributary/internal/testenv"
)

// threeBrokers is a kfake cluster of 3 brokers holding the Tributary
// topics with 4 partitions each (replication factor 3).
func threeBrokers(t *testing.T) *testenv.KafkaCluster {
	t.Helper()
	return testenv.Kafka(t, 4, kfake.Ports(testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)))
}

func testAdmin(t *testing.T, addr string) sarama.ClusterAdmin {
	t.Helper()
	kc := Config{Brokers: addr, ClientID: "test", Version: "2.8.0", Timeout: 2 * time.Second}
	admin, err := kc.NewAdmin()
	require.NoError(t, err)
	t.Cleanup(func() { admin.Close() })
	return admin
}

func minInsync(t *testing.T, admin sarama.ClusterAdmin, topic string) string {
	t.Helper()
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"min.insync.replicas"}})
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name == "min.insync.replicas" {
			return e.Value
		}
	}
	t.Fatalf("no min.insync.replicas for %s", topic)
	return ""
}

// Missing topics are created with the configured partitions (per-topic
// overrides included), replication factor and min.insync.replicas=2; a
// second check (another replica starting) finds nothing to report.
func TestCheckTopicsCreates(t *testing.T) {
	k := threeBrokers(t)
	admin := testAdmin(t, k.Addr)
	cfg := TopicsConfig{Create: true, Partitions: 6, ReplicationFactor: 3, PartitionsPerTopic: TopicPartitions{"new.dlq": 2}}
	problems, err := CheckTopics(context.Background(), admin, cfg, []string{"new.metrics", "new.dlq", "new.metrics"})
	require.NoError(t, err)
	require.Empty(t, problems)
	metas, err := admin.DescribeTopics([]string{"new.metrics", "new.dlq"})
	require.NoError(t, err)
	got := map[string]int{}
	for _, m := range metas {
		require.Equal(t, sarama.ErrNoError, m.Err, m.Name)
		got[m.Name] = len(m.Partitions)
		require.Len(t, m.Partitions[0].Replicas, 3, m.Name)
	}
	require.Equal(t, map[string]int{"new.metrics": 6, "new.dlq": 2}, got)
	require.Equal(t, "2", minInsync(t, admin, "new.metrics"))

	problems, err = CheckTopics(context.Background(), admin, cfg, []string{"new.metrics", "new.dlq"})
	require.NoError(t, err)
	require.Empty(t, problems)
}

// The start-up check names the topic and the values of each problem.
func TestCheckTopicsFindings(t *testing.T) {
	k := threeBrokers(t)
	admin := testAdmin(t, k.Addr)
	one, four := "1", "4"
	require.NoError(t, admin.CreateTopic("weak.isr", &sarama.TopicDetail{NumPartitions: 12, ReplicationFactor: 3,
		ConfigEntries: map[string]*string{"min.insync.replicas": &one}}, false))
	require.NoError(t, admin.CreateTopic("isr.above.rf", &sarama.TopicDetail{NumPartitions: 12, ReplicationFactor: 3,
		ConfigEntries: map[string]*string{"min.insync.replicas": &four}}, false))
	require.NoError(t, admin.CreateTopic("two.replicas", &sarama.TopicDetail{NumPartitions: 12, ReplicationFactor: 2}, false))
	two := "2"
	require.NoError(t, admin.CreateTopic("good", &sarama.TopicDetail{NumPartitions: 12, ReplicationFactor: 3,
		ConfigEntries: map[string]*string{"min.insync.replicas": &two}}, false))

	cfg := TopicsConfig{Partitions: 12, ReplicationFactor: 3}
	for _, tc := range []struct {
		topic string
		want  []string // one per problem
	}{
		{"good", nil},
		// Seeded by kfake: 4 partitions, 3 replicas, the broker's default
		// min.insync.replicas of 1.
		{"tributary.metrics", []string{"topic tributary.metrics has 4 partitions, fewer than the 12 configured",
			"topic tributary.metrics has min.insync.replicas=1 with replication factor 3"}},
		{"weak.isr", []string{"topic weak.isr has min.insync.replicas=1 with replication factor 3"}},
		{"isr.above.rf", []string{"topic isr.above.rf has min.insync.replicas=4 above its replication factor 3: every acks=all write fails"}},
		{"two.replicas", []string{"topic two.replicas has replication factor 2, below the 3 configured"}},
		{"missing", []string{"topic missing does not exist"}},
	} {
		t.Run(tc.topic, func(t *testing.T) {
			problems, err := CheckTopics(context.Background(), admin, cfg, []string{tc.topic})
			require.NoError(t, err)
			require.Len(t, problems, len(tc.want), "%q", problems)
			for i, want := range tc.want {
				require.Contains(t, problems[i], want)
			}
		})
	}
	// Without -kafka.topics.create a missing topic stays missing.
	metas, err := admin.DescribeTopics([]string{"missing"})
	require.NoError(t, err)
	require.ErrorIs(t, metas[0].Err, sarama.ErrUnknownTopicOrPartition)
}

// With -kafka.topics.strict a problem stops the process (Run returns);
// without it Run logs and waits for the end.
func TestTopicCheckRun(t *testing.T) {
	t.Parallel()
	k := testenv.Kafka(t, 4)
	kc := Config{Brokers: k.Addr, ClientID: "test", Version: "2.8.0", Timeout: 2 * time.Second}
	check := TopicCheck{Kafka: kc, Topics: TopicsConfig{Partitions: 12, ReplicationFactor: 1, Strict: true}, Names: []string{"tributary.metrics"}, Log: quietLog}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := check.Run(ctx)
	require.ErrorIs(t, err, ErrTopicCheck)
	require.ErrorContains(t, err, "tributary.metrics has 4 partitions")

	check.Topics.Strict = false
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, check.Run(ctx))
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second, "Run returned before its context ended")
}

func TestTopicsFlags(t *testing.T) {
	var c TopicsConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.RegisterFlags("kafka.topics.", fs)
	require.NoError(t, fs.Parse([]string{"-kafka.topics.partitions-per-topic=tributary.metrics=24, tributary.dlq=3"}))
	require.NoError(t, c.Validate())
	require.Equal(t, 24, c.partitions("tributary.metrics"))
	require.Equal(t, 3, c.partitions("tributary.dlq"))
	require.Equal(t, 12, c.partitions("tributary.logs"))
	require.Equal(t, 3, c.ReplicationFactor)
	require.False(t, c.Create)
	err := fs.Parse([]string{"-kafka.topics.partitions-per-topic=tributary.metrics"})
	require.True(t, err != nil && strings.Contains(err.Error(), "want topic=partitions"), "%v", err)
	c.Partitions = 0
	require.ErrorContains(t, c.Validate(), "kafka.topics.partitions")
}
