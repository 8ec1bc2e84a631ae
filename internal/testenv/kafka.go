package testenv

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topics every test broker has.
var Topics = []string{"tributary.metrics", "tributary.logs", "tributary.spans", "tributary.dlq"}

// KafkaCluster is an in-process Kafka wire-protocol broker (franz-go kfake)
// on a loopback port.
type KafkaCluster struct {
	*kfake.Cluster
	Addr string
	Port int
}

// Kafka starts a broker with the Tributary topics (partitions each) and
// closes it when the test ends.
func Kafka(t testing.TB, partitions int32, opts ...kfake.Opt) *KafkaCluster {
	t.Helper()
	// One broker on port 0: the kernel picks the port as it binds, so no
	// other process can take it in between (opts may still set Ports).
	opts = append([]kfake.Opt{kfake.Ports(0), kfake.SeedTopics(partitions, Topics...)}, opts...)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	addr := c.ListenAddrs()[0]
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("kfake address %s: %v", addr, err)
	}
	k := &KafkaCluster{Cluster: c, Addr: addr}
	k.Port, _ = strconv.Atoi(port)
	return k
}

// ReadTopic returns every record of topic currently in the broker at addr,
// partition by partition, using a real sarama consumer.
func ReadTopic(t testing.TB, addr, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatalf("kafka consumer: %v", err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []*sarama.ConsumerMessage
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatalf("offset of %s/%d: %v", topic, p, err)
		}
		if hwm == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatalf("consume %s/%d: %v", topic, p, err)
		}
		timeout := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				out = append(out, m)
				done = m.Offset >= hwm-1
			case <-timeout:
				t.Fatalf("reading %s/%d timed out", topic, p)
			}
		}
		pc.Close()
	}
	return out
}

// Header returns the value of header key of m.
func Header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// FastGroups lets consumer groups notice a dead member quickly (kfake's
// default minimum session timeout is 6 s), for crash tests.
func FastGroups() []kfake.Opt {
	return []kfake.Opt{kfake.GroupMinSessionTimeout(time.Second)}
}

// ProduceErrorResponse answers the produce request req with code for every
// partition of topic ("" for every topic), for a kfake ControlKey. It
// returns nil when req holds no partition of topic: let the broker answer.
func ProduceErrorResponse(req kmsg.Request, topic string, code int16) kmsg.Response {
	pr := req.(*kmsg.ProduceRequest)
	resp := pr.ResponseKind().(*kmsg.ProduceResponse)
	resp.Version = pr.Version
	hit := false
	for _, rt := range pr.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			if topic == "" || rt.Topic == topic {
				sp.ErrorCode, hit = code, true
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	if !hit {
		return nil
	}
	return resp
}
