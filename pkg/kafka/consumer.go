package kafka

import (
	"flag"
	"fmt"

	"github.com/IBM/sarama"
)

// Balance strategies of -kafka.consumer.balance-strategy.
const (
	BalanceSticky     = "sticky"
	BalanceRoundRobin = "roundrobin"
	BalanceRange      = "range"
)

// ConsumerConfig is what the consumer groups of a process share.
type ConsumerConfig struct {
	// BalanceStrategy assigns a group's partitions to its members. The zero
	// value is sticky.
	BalanceStrategy string `yaml:"balance_strategy"`
}

// RegisterFlags registers the flags under prefix (e.g. "kafka.consumer.").
func (c *ConsumerConfig) RegisterFlags(prefix string, fs *flag.FlagSet) {
	// Sticky, not sarama's default range: range hands each member a run of
	// consecutive partitions, and the biggest clusters' partitions landed
	// on one ingester (1.56x the mean, issue 22). Sticky spreads the counts
	// as evenly as round-robin and, unlike it, moves only the partitions
	// it must when a member joins or leaves, so a rolling restart re-reads
	// (and re-writes) the least.
	fs.StringVar(&c.BalanceStrategy, prefix+"balance-strategy", BalanceSticky,
		"How a consumer group's partitions are spread over the ingesters: sticky (even counts, fewest moves on a rebalance), roundrobin, or range (sarama's default: runs of consecutive partitions).")
}

// Validate checks the configuration.
func (c *ConsumerConfig) Validate() error {
	_, err := c.strategy()
	return err
}

func (c *ConsumerConfig) strategy() (sarama.BalanceStrategy, error) {
	switch c.BalanceStrategy {
	case BalanceSticky, "":
		return sarama.NewBalanceStrategySticky(), nil
	case BalanceRoundRobin:
		return sarama.NewBalanceStrategyRoundRobin(), nil
	case BalanceRange:
		return sarama.NewBalanceStrategyRange(), nil
	}
	return nil, fmt.Errorf("kafka.consumer.balance-strategy %q: want sticky, roundrobin or range", c.BalanceStrategy)
}

// Apply sets the group's balance strategies on sc. Range stays listed
// after the chosen one: a member offers both, and the group uses one that
// all members offer, so ingesters of a release that only knew range can
// share the group during a rolling upgrade (sticky takes over once every
// member offers it).
func (c *ConsumerConfig) Apply(sc *sarama.Config) error {
	s, err := c.strategy()
	if err != nil {
		return err
	}
	sc.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{s}
	if s.Name() != sarama.RangeBalanceStrategyName {
		sc.Consumer.Group.Rebalance.GroupStrategies = append(sc.Consumer.Group.Rebalance.GroupStrategies, sarama.NewBalanceStrategyRange())
	}
	return nil
}
