// Package limits holds the gateway's per-cluster limits: rates (token
// buckets per cluster and signal) and per-request bounds.
package limits

// Cluster is one cluster's limits, as written in the limits file and in a
// token's entry of tokens.yaml. A zero field means no per-cluster value:
// the gateway's default (its flags) applies.
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
}
