package kafka

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// TopicsConfig is how a process creates and checks the topics it uses.
type TopicsConfig struct {
	// Create creates missing topics at start with Partitions (or the
	// topic's entry in PartitionsPerTopic) and ReplicationFactor.
	Create             bool            `yaml:"create"`
	Partitions         int             `yaml:"partitions"`
	PartitionsPerTopic TopicPartitions `yaml:"partitions_per_topic"`
	ReplicationFactor  int             `yaml:"replication_factor"`
	// Strict makes any finding of the start-up check fatal instead of a
	// warning.
	Strict bool `yaml:"strict"`
}

// TopicPartitions maps a topic to its partition count; as a flag,
// "topic=n,topic=n".
type TopicPartitions map[string]int

// String implements flag.Value.
func (t *TopicPartitions) String() string {
	if t == nil {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*t)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, (*t)[k]))
	}
	return strings.Join(parts, ",")
}

// Set implements flag.Value.
func (t *TopicPartitions) Set(s string) error {
	m := TopicPartitions{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(v)
		if !ok || k == "" || err != nil || n < 1 {
			return fmt.Errorf("%q: want topic=partitions with partitions >= 1", kv)
		}
		m[k] = n
	}
	*t = m
	return nil
}

// RegisterFlags registers the flags under prefix (e.g. "kafka.topics.").
func (c *TopicsConfig) RegisterFlags(prefix string, fs *flag.FlagSet) {
	fs.BoolVar(&c.Create, prefix+"create", false, "Create missing topics at start with -kafka.topics.partitions and -kafka.topics.replication-factor (and min.insync.replicas 2 when the replication factor is 3 or more, else 1).")
	// 12 divides evenly among 1, 2, 3, 4, 6 and 12 ingesters of a sink, and
	// is enough partitions to spread a few dozen clusters' keys.
	fs.IntVar(&c.Partitions, prefix+"partitions", 12, "Partitions of each topic: created with this many, and an existing topic with fewer is reported at start.")
	fs.Var(&c.PartitionsPerTopic, prefix+"partitions-per-topic", "Per-topic partition counts overriding -kafka.topics.partitions, as topic=n,topic=n.")
	// 3 is what acks=all needs to survive the loss of a broker with
	// min.insync.replicas=2; a single-broker setup (the demo) passes 1.
	fs.IntVar(&c.ReplicationFactor, prefix+"replication-factor", 3, "Replication factor of created topics; an existing topic with fewer replicas is reported at start. 1 for a single broker.")
	fs.BoolVar(&c.Strict, prefix+"strict", false, "Exit at start when the topic check finds a problem (a missing topic, too few partitions or replicas, a min.insync.replicas that does not fit acks=all) instead of logging a warning.")
}

// Validate checks the configuration.
func (c *TopicsConfig) Validate() error {
	if c.Partitions < 1 {
		return errors.New("kafka.topics.partitions must be at least 1")
	}
	if c.ReplicationFactor < 1 || c.ReplicationFactor > 32767 {
		return errors.New("kafka.topics.replication-factor must be between 1 and 32767")
	}
	return nil
}

func (c *TopicsConfig) partitions(topic string) int {
	if n, ok := c.PartitionsPerTopic[topic]; ok {
		return n
	}
	return c.Partitions
}

// minInsyncFor is the min.insync.replicas a created topic gets: with
// acks=all a write is acknowledged once this many replicas have it, so 2
// of 3 survives one broker's loss without losing acknowledged records and
// keeps accepting writes while one broker is down.
func minInsyncFor(rf int) int {
	if rf >= 3 {
		return 2
	}
	return 1
}

// ErrTopicCheck marks findings of the topic check (with Strict, fatal).
var ErrTopicCheck = errors.New("kafka topic check failed")

// CheckTopics creates missing topics (with Create) and reports what is
// wrong with the topics: missing, fewer partitions or replicas than
// configured, or a min.insync.replicas that makes acks=all fail every
// write (above the replication factor) or mean less than it promises
// (below 2 with 3 replicas or more). The error is for talking to Kafka.
func CheckTopics(ctx context.Context, admin sarama.ClusterAdmin, c TopicsConfig, topics []string) ([]string, error) {
	topics = slices.Compact(slices.Sorted(slices.Values(topics)))
	metas, err := admin.DescribeTopics(topics)
	if err != nil {
		return nil, fmt.Errorf("describe topics %s: %w", strings.Join(topics, ","), err)
	}
	var problems []string
	var created []string
	for _, m := range metas {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !errors.Is(m.Err, sarama.ErrUnknownTopicOrPartition) {
			continue
		}
		if !c.Create {
			problems = append(problems, fmt.Sprintf("topic %s does not exist: create it, or start with -kafka.topics.create", m.Name))
			continue
		}
		rf := c.ReplicationFactor
		minISR := strconv.Itoa(minInsyncFor(rf))
		err := admin.CreateTopic(m.Name, &sarama.TopicDetail{
			NumPartitions: int32(c.partitions(m.Name)), ReplicationFactor: int16(rf),
			ConfigEntries: map[string]*string{"min.insync.replicas": &minISR},
		}, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) { // another replica may have won
			problems = append(problems, fmt.Sprintf("create topic %s (%d partitions, replication factor %d): %v", m.Name, c.partitions(m.Name), rf, err))
			continue
		}
		created = append(created, m.Name)
	}
	if len(created) > 0 {
		if metas, err = admin.DescribeTopics(topics); err != nil {
			return nil, fmt.Errorf("describe topics %s: %w", strings.Join(topics, ","), err)
		}
	}
	for _, m := range metas {
		switch {
		case errors.Is(m.Err, sarama.ErrUnknownTopicOrPartition):
			continue // reported above
		case m.Err != sarama.ErrNoError:
			problems = append(problems, fmt.Sprintf("topic %s: %v", m.Name, m.Err))
			continue
		}
		p, err := checkTopic(admin, c, m)
		if err != nil {
			return nil, err
		}
		problems = append(problems, p...)
	}
	return problems, nil
}

func checkTopic(admin sarama.ClusterAdmin, c TopicsConfig, m *sarama.TopicMetadata) ([]string, error) {
	var problems []string
	if want := c.partitions(m.Name); len(m.Partitions) < want {
		problems = append(problems, fmt.Sprintf("topic %s has %d partitions, fewer than the %d configured (-kafka.topics.partitions): fewer ingesters can share it; add partitions with kafka-topics.sh --alter (it moves keys to other partitions once)",
			m.Name, len(m.Partitions), want))
	}
	rf := 0
	for _, p := range m.Partitions {
		if rf == 0 || len(p.Replicas) < rf {
			rf = len(p.Replicas)
		}
	}
	if rf < c.ReplicationFactor {
		problems = append(problems, fmt.Sprintf("topic %s has replication factor %d, below the %d configured (-kafka.topics.replication-factor): losing a broker can lose acknowledged records",
			m.Name, rf, c.ReplicationFactor))
	}
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: m.Name, ConfigNames: []string{"min.insync.replicas"}})
	if err != nil {
		problems = append(problems, fmt.Sprintf("topic %s: could not read min.insync.replicas (grant DescribeConfigs on the topic): %v", m.Name, err))
		return problems, nil
	}
	for _, e := range entries {
		if e.Name != "min.insync.replicas" {
			continue
		}
		minISR, err := strconv.Atoi(e.Value)
		if err != nil {
			problems = append(problems, fmt.Sprintf("topic %s: min.insync.replicas %q is not a number", m.Name, e.Value))
			break
		}
		switch {
		case minISR > rf:
			problems = append(problems, fmt.Sprintf("topic %s has min.insync.replicas=%d above its replication factor %d: every acks=all write fails with NOT_ENOUGH_REPLICAS", m.Name, minISR, rf))
		case rf >= 3 && minISR < 2:
			problems = append(problems, fmt.Sprintf("topic %s has min.insync.replicas=%d with replication factor %d: acks=all is satisfied by the leader alone, and losing it loses acknowledged records; set min.insync.replicas=2", m.Name, minISR, rf))
		}
	}
	return problems, nil
}

// TopicCheck runs CheckTopics once Kafka answers, for a process's run
// group.
type TopicCheck struct {
	Kafka  Config
	Topics TopicsConfig
	Names  []string // the topics the process produces to or consumes
	Log    *slog.Logger
}

// Run connects (retrying while Kafka does not answer), creates and checks
// the topics and logs each problem as a warning. With Strict it returns an
// error wrapping ErrTopicCheck when there is one, which stops the process;
// otherwise it waits for ctx to end.
func (t TopicCheck) Run(ctx context.Context) error {
	backoff := connectMinBackoff
	for {
		problems, err := t.once(ctx)
		if err == nil {
			for _, p := range problems {
				t.Log.Warn("kafka topic check: "+p, "strict", t.Topics.Strict)
			}
			if len(problems) > 0 && t.Topics.Strict {
				return fmt.Errorf("%w (-kafka.topics.strict): %s", ErrTopicCheck, strings.Join(problems, "; "))
			}
			if len(problems) == 0 {
				t.Log.Info("kafka topics checked", "topics", strings.Join(t.Names, ","))
			}
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		t.Log.Warn("kafka topic check: kafka not reachable, retrying", "retry_in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, connectMaxBackoff)
	}
	<-ctx.Done()
	return nil
}

func (t TopicCheck) once(ctx context.Context) ([]string, error) {
	admin, err := t.Kafka.NewAdmin()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	return CheckTopics(ctx, admin, t.Topics, t.Names)
}

// NewAdmin connects a cluster admin client.
func (c *Config) NewAdmin() (sarama.ClusterAdmin, error) {
	sc, err := c.Sarama()
	if err != nil {
		return nil, err
	}
	// The admin client refreshes the metadata of all topics once when it
	// connects; without Full it has no topic to ask for and fails.
	sc.Metadata.Full = true
	admin, err := sarama.NewClusterAdmin(c.BrokerList(), sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %s: %w", c.Brokers, c.Explain(err))
	}
	return admin, nil
}
