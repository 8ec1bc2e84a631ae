// Package events ships the cluster's Kubernetes events to the gateway as
// log lines, from one agent per cluster (the leader of the agents' Lease),
// resuming where the previous leader stopped.
package events

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
)

// Config is the events section of the agent's file. Present (even empty)
// turns the watcher on; it needs the kubernetes section with
// leader_election.
type Config struct {
	// ResumeConfigMap names the ConfigMap, in the leader election's
	// namespace, that holds the resume point: the resourceVersion up to
	// which every event was acknowledged by the gateway.
	ResumeConfigMap string `yaml:"resume_configmap"`
	// BatchSize is the most events in one push.
	BatchSize int `yaml:"batch_size"`
	// BatchWait is how long an event may wait for others to share its push.
	BatchWait model.Duration `yaml:"batch_wait"`
	// MaxPending bounds the events read from the apiserver but not yet
	// acknowledged by the gateway; when full, the watch is not read (the
	// apiserver keeps the events) until the gateway takes more.
	MaxPending int `yaml:"max_pending"`
}

// Defaults.
const (
	DefaultResumeConfigMap = "tributary-agent-events"
	// 500 events of ~600 B (JSON line + labels) is a ~300 KB push before
	// snappy: far below the gateway's body limit, and at most 500 events
	// that a leader killed between the gateway's answer and the resume
	// point's write sends twice.
	DefaultBatchSize = 500
	// 1 s: events show up in Loki within about a second, and the resume
	// ConfigMap is written at most about once a second.
	DefaultBatchWait = time.Second
	// 10000 events (~6 MB): a burst of a rollout of a large deployment
	// fits; beyond it the apiserver holds them.
	DefaultMaxPending = 10000
)

// Validate fills defaults and checks the section.
func (c *Config) Validate() error {
	if c.ResumeConfigMap == "" {
		c.ResumeConfigMap = DefaultResumeConfigMap
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.BatchWait == 0 {
		c.BatchWait = model.Duration(DefaultBatchWait)
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.BatchSize < 0 || c.MaxPending < 0 || c.BatchWait < 0 {
		return fmt.Errorf("batch_size (%d), batch_wait (%s) and max_pending (%d) must not be negative", c.BatchSize, c.BatchWait, c.MaxPending)
	}
	if c.MaxPending < c.BatchSize {
		return fmt.Errorf("max_pending %d is below batch_size %d", c.MaxPending, c.BatchSize)
	}
	return nil
}
