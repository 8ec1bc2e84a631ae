// Package otlp is the gateway side of OTLP traces: it validates an
// ExportTraceServiceRequest (protobuf, or OTLP/JSON converted once to
// protobuf) without building the OTLP objects, and turns it into Kafka
// record values, one cluster each, holding snappy-compressed
// ExportTraceServiceRequests.
//
// The cluster of a resource is its k8s.cluster.name attribute, else the
// request's default cluster, which the gateway takes from the cluster header
// or -default-cluster as for metrics and logs. When every resource already
// carries the one cluster, every span is valid and the request fits one
// record, the record value is the request exactly as received (snappy
// compressed). Otherwise the request is re-encoded by copying the bytes of
// what it keeps: resources split by cluster, k8s.cluster.name set on every
// resource, refused spans left out, records cut below Limits.MaxRecordBytes.
//
// As OTLP prescribes, a request is accepted in part: an invalid span (or
// every span of an invalid resource or scope) is refused and counted, the
// rest is kept, and the caller answers with partial_success. A request that
// is not an ExportTraceServiceRequest as a whole (malformed protobuf, wrong
// wire types, too many clusters, too large) is refused whole.
package otlp

// ClusterAttribute is the resource attribute that names the cluster.
const ClusterAttribute = "k8s.cluster.name"

// Limits bound what one request may cost and what a span may contain.
type Limits struct {
	// MaxDecodedBytes bounds the uncompressed request (413 above).
	MaxDecodedBytes int `yaml:"max_decoded_bytes"`
	// MaxRecordBytes bounds one Kafka record value (snappy-compressed);
	// larger requests are split between spans, never dropped.
	MaxRecordBytes int `yaml:"max_record_bytes"`
	// MaxAttributes bounds the attributes of each span, event, link,
	// resource and scope.
	MaxAttributes int `yaml:"max_attributes"`
	// MaxAttributeKeyLen bounds an attribute key, in bytes.
	MaxAttributeKeyLen int `yaml:"max_attribute_key_length"`
	// MaxAttributeValueLen bounds a string or bytes attribute value, the
	// encoded size of an array or key-value-list value, and span and event
	// names, in bytes.
	MaxAttributeValueLen int `yaml:"max_attribute_value_length"`
	MaxEvents            int `yaml:"max_events"`
	MaxLinks             int `yaml:"max_links"`
	// MaxClusters bounds the distinct clusters of one request (the
	// gateway's -limits.max-clusters-per-request); <= 0:
	// split.DefaultMaxClusters.
	MaxClusters int `yaml:"-"`
	// OverrideCluster makes the default cluster replace every resource's
	// k8s.cluster.name that names another cluster (the sender's identity
	// wins: -auth.cluster-mismatch=overwrite).
	OverrideCluster bool `yaml:"-"`
	// Sharder spreads hot clusters' spans over several records (one per
	// shard) by their trace id; nil: one shard per cluster.
	Sharder Sharder `yaml:"-"`
}

// Sharder says over how many shards (partitions) a cluster's spans are
// spread; 1 for most.
type Sharder interface {
	Shards(cluster string) int
}

// DefaultLimits follow the OpenTelemetry SDKs' span limits where they have
// one (128 attributes, events and links), and bound what they leave open.
func DefaultLimits() Limits {
	return Limits{
		MaxDecodedBytes: 32 << 20,  // 32 MiB: an SDK's batch of 512 spans is ~100-500 KiB
		MaxRecordBytes:  900 << 10, // below Kafka's default 1 MB message.max.bytes, with room for headers
		MaxAttributes:   128,       // the SDKs' AttributeCountLimit
		// Attribute keys are semantic-convention names, a few dozen bytes.
		MaxAttributeKeyLen: 1024,
		// The SDKs leave values unbounded; 64 KiB holds a long SQL
		// statement or a ~500-frame exception.stacktrace, while a span
		// stays small enough for one record and one Elasticsearch document.
		MaxAttributeValueLen: 64 << 10,
		MaxEvents:            128, // the SDKs' EventCountLimit
		MaxLinks:             128, // the SDKs' LinkCountLimit
	}
}

// maxValueDepth bounds how deeply array and key-value-list attribute
// values nest. Sinks flatten nested values into one string; no SDK or
// instrumentation nests more than a few levels, and protobuf-go's own
// limit (10000) would let a small request cost deep recursion.
const maxValueDepth = 16

// maxClusterLen bounds a k8s.cluster.name value, as the cluster header.
const maxClusterLen = 256
