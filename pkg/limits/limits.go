// Package limits holds the gateway's per-cluster limits: rates (token
// buckets per cluster and signal) and per-request bounds.
package limits

import (
	"fmt"
	"math"
)

// Cluster is one cluster's limits, as written in the limits file and in a
// token's entry of tokens.yaml. A zero field means no per-cluster value:
// the gateway's default (its flags) applies.
//
// Rates are per second (samples, decoded log line bytes, spans); 0 leaves
// the value to the next layer, a negative rate lifts a rate set below (no
// limit for this cluster). A burst of 0 is 10 s of the rate (DefaultBurst).
type Cluster struct {
	SamplesPerSecond  float64 `yaml:"samples_per_second"`
	SamplesBurst      int     `yaml:"samples_burst"`
	LogBytesPerSecond float64 `yaml:"log_bytes_per_second"`
	LogBytesBurst     int     `yaml:"log_bytes_burst"`
	SpansPerSecond    float64 `yaml:"spans_per_second"`
	SpansBurst        int     `yaml:"spans_burst"`

	MaxSeriesPerRequest  int `yaml:"max_series_per_request"`
	MaxStreamsPerRequest int `yaml:"max_streams_per_request"`
	MaxSpansPerRequest   int `yaml:"max_spans_per_request"`
	MaxLabelsPerSeries   int `yaml:"max_labels_per_series"`
	MaxLabelNameLength   int `yaml:"max_label_name_length"`
	MaxLabelValueLength  int `yaml:"max_label_value_length"`
	MaxLineBytes         int `yaml:"max_line_bytes"`
	// MaxSpanAttributes and MaxSpanAttributeValueLength bound spans'
	// attributes (-limits.spans.max-attributes, -limits.spans.max-attribute-value-length).
	MaxSpanAttributes           int `yaml:"max_span_attributes"`
	MaxSpanAttributeValueLength int `yaml:"max_span_attribute_value_length"`
}

// DefaultBurstSeconds sizes a burst left at 0: ten seconds of the rate. A
// request larger than the burst can never pass, and senders batch several
// seconds at a time (Prometheus' remote write up to 2000 samples a request,
// Promtail 1 MiB, after a short outage many such requests back to back);
// Mimir's default burst is 20 s of its rate, Loki's 1.5 s.
const DefaultBurstSeconds = 10

// Over is c with every zero field taken from base: c's layer wins where it
// says something.
func (c Cluster) Over(base Cluster) Cluster {
	f := func(v *float64, b float64) {
		if *v == 0 {
			*v = b
		}
	}
	i := func(v *int, b int) {
		if *v == 0 {
			*v = b
		}
	}
	f(&c.SamplesPerSecond, base.SamplesPerSecond)
	i(&c.SamplesBurst, base.SamplesBurst)
	f(&c.LogBytesPerSecond, base.LogBytesPerSecond)
	i(&c.LogBytesBurst, base.LogBytesBurst)
	f(&c.SpansPerSecond, base.SpansPerSecond)
	i(&c.SpansBurst, base.SpansBurst)
	i(&c.MaxSeriesPerRequest, base.MaxSeriesPerRequest)
	i(&c.MaxStreamsPerRequest, base.MaxStreamsPerRequest)
	i(&c.MaxSpansPerRequest, base.MaxSpansPerRequest)
	i(&c.MaxLabelsPerSeries, base.MaxLabelsPerSeries)
	i(&c.MaxLabelNameLength, base.MaxLabelNameLength)
	i(&c.MaxLabelValueLength, base.MaxLabelValueLength)
	i(&c.MaxLineBytes, base.MaxLineBytes)
	i(&c.MaxSpanAttributes, base.MaxSpanAttributes)
	i(&c.MaxSpanAttributeValueLength, base.MaxSpanAttributeValueLength)
	return c
}

// Validate checks that no bound is negative and rates are numbers.
func (c Cluster) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"samples_per_second", c.SamplesPerSecond}, {"log_bytes_per_second", c.LogBytesPerSecond}, {"spans_per_second", c.SpansPerSecond}} {
		if math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			return fmt.Errorf("%s is %v: want a number (negative: no limit)", r.name, r.v)
		}
	}
	for _, b := range []struct {
		name string
		v    int
	}{
		{"samples_burst", c.SamplesBurst}, {"log_bytes_burst", c.LogBytesBurst}, {"spans_burst", c.SpansBurst},
		{"max_series_per_request", c.MaxSeriesPerRequest}, {"max_streams_per_request", c.MaxStreamsPerRequest},
		{"max_spans_per_request", c.MaxSpansPerRequest}, {"max_labels_per_series", c.MaxLabelsPerSeries},
		{"max_label_name_length", c.MaxLabelNameLength}, {"max_label_value_length", c.MaxLabelValueLength},
		{"max_line_bytes", c.MaxLineBytes}, {"max_span_attributes", c.MaxSpanAttributes},
		{"max_span_attribute_value_length", c.MaxSpanAttributeValueLength},
	} {
		if b.v < 0 {
			return fmt.Errorf("%s is %d: want 0 (not set) or more", b.name, b.v)
		}
	}
	return nil
}

// Signal is what a rate counts.
type Signal uint8

// The rated signals.
const (
	Samples  Signal = iota // metrics: samples and histogram samples
	LogBytes               // logs: decoded line bytes
	Spans                  // spans
	numSignals
)

// String is the signal's name in the gateway's metrics.
func (s Signal) String() string {
	return [...]string{"metrics", "logs", "spans"}[s]
}

// rateName and burstName are the limits' names in the file, used in
// refusals and as the reason label of the refusal counter.
func (s Signal) rateName() string {
	return [...]string{"samples_per_second", "log_bytes_per_second", "spans_per_second"}[s]
}

func (s Signal) burstName() string {
	return [...]string{"samples_burst", "log_bytes_burst", "spans_burst"}[s]
}

// unit names what a rate counts, for messages.
func (s Signal) unit() string {
	return [...]string{"samples", "log line bytes", "spans"}[s]
}

// Rate is c's rate and burst for s; a rate <= 0 is no limit.
func (c Cluster) Rate(s Signal) (perSecond float64, burst int) {
	switch s {
	case Samples:
		perSecond, burst = c.SamplesPerSecond, c.SamplesBurst
	case LogBytes:
		perSecond, burst = c.LogBytesPerSecond, c.LogBytesBurst
	case Spans:
		perSecond, burst = c.SpansPerSecond, c.SpansBurst
	}
	if perSecond <= 0 {
		return 0, 0
	}
	if burst == 0 {
		burst = int(min(math.Ceil(perSecond*DefaultBurstSeconds), math.MaxInt32))
	}
	return perSecond, burst
}
