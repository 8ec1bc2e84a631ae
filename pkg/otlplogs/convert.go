package otlplogs

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/tributary-io/tributary/pkg/otlp"
)

// ClusterAttribute is the resource attribute that names the cluster, and
// ClusterLabel the stream label the gateway sets from it.
const (
	ClusterAttribute = "k8s.cluster.name"
	ClusterLabel     = "cluster"
)

// DecodeCost is the memory decoding an OTLP logs request of n bytes may
// take besides the body (pdata objects, the push request and its snappy
// copy), for the caller's budget: BenchmarkConvert allocates ~9 bytes per
// body byte in all, not all of it live at once.
func DecodeCost(n int) int { return 8 * n }

// ReasonNoCluster is the refusal reason of records whose resource has no
// cluster, as a self-metric label value.
const ReasonNoCluster = "no_cluster"

// Result is one request converted.
type Result struct {
	// Body is a snappy-compressed Loki PushRequest of what was kept; nil
	// when nothing was.
	Body []byte
	// Records counts the request's log records, Rejected those refused;
	// Message says why.
	Records, Rejected int
	Message           string
}

// Converter converts requests with one mapping. It is safe for concurrent
// use.
type Converter struct {
	cfg         Config
	resRules    []Rule
	defaultsSet map[string]bool
	now         func() time.Time
}

// NewConverter returns a converter for a compiled cfg (LoadConfig).
func NewConverter(cfg Config) *Converter {
	c := &Converter{cfg: cfg, resRules: cfg.ResourceAttributes.AttributesConfig, defaultsSet: map[string]bool{}, now: time.Now}
	if !cfg.ResourceAttributes.IgnoreDefaults {
		defaults := cfg.DefaultIndexLabels
		if defaults == nil {
			defaults = DefaultIndexLabels
		}
		for _, a := range defaults {
			c.defaultsSet[a] = true
		}
	}
	return c
}

// resourceAction: the default index labels come first, then the rules,
// then structured metadata.
func (c *Converter) resourceAction(name string) string {
	if c.defaultsSet[name] {
		return ActionIndexLabel
	}
	return action(c.resRules, name, ActionStructuredMetadata)
}

// Convert decodes an ExportLogsServiceRequest (protobuf, or OTLP/JSON when
// isJSON) and maps it to one push request, one stream per resource (Loki
// merges streams with equal labels). Resources without k8s.cluster.name
// belong to defaultCluster; with it empty, their records are refused and
// counted. A body that does not decode is refused whole (400).
func (c *Converter) Convert(body []byte, isJSON bool, defaultCluster string) (Result, error) {
	req := plogotlp.NewExportRequest()
	if err := otlp.Decode(req, body, isJSON, "logs"); err != nil {
		return Result{}, err
	}
	ld := req.Logs()
	res := Result{Records: ld.LogRecordCount()}
	now := c.now()
	var pr push.PushRequest
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		attrs := rl.Resource().Attributes()
		cluster := defaultCluster
		if v, ok := attrs.Get(ClusterAttribute); ok {
			cluster = v.AsString()
		}
		if cluster == "" || !utf8.ValidString(cluster) {
			n := 0
			for j := range rl.ScopeLogs().Len() {
				n += rl.ScopeLogs().At(j).LogRecords().Len()
			}
			if res.Message == "" && n > 0 {
				res.Message = fmt.Sprintf("%d log records of a resource without %s, and neither the cluster header nor -default-cluster is set", n, ClusterAttribute)
			}
			res.Rejected += n
			continue
		}
		var lbls, resMeta []push.LabelAdapter
		attrs.Range(func(k string, v pcommon.Value) bool {
			switch c.resourceAction(k) {
			case ActionIndexLabel:
				lbls = flatten(lbls, k, v)
			case ActionStructuredMetadata:
				resMeta = flatten(resMeta, k, v)
			}
			return true
		})
		lbls = setLabel(lbls, ClusterLabel, cluster)
		st := push.Stream{Labels: render(lbls)}
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			sl := sls.At(j)
			scopeMeta := slices.Clone(resMeta)
			if n := sl.Scope().Name(); n != "" {
				scopeMeta = append(scopeMeta, push.LabelAdapter{Name: "scope_name", Value: n})
			}
			if v := sl.Scope().Version(); v != "" {
				scopeMeta = append(scopeMeta, push.LabelAdapter{Name: "scope_version", Value: v})
			}
			sl.Scope().Attributes().Range(func(k string, v pcommon.Value) bool {
				if action(c.cfg.ScopeAttributes, k, ActionStructuredMetadata) != ActionDrop {
					scopeMeta = flatten(scopeMeta, k, v)
				}
				return true
			})
			lrs := sl.LogRecords()
			for k := range lrs.Len() {
				st.Entries = append(st.Entries, c.entry(lrs.At(k), scopeMeta, now))
			}
		}
		if len(st.Entries) > 0 {
			pr.Streams = append(pr.Streams, st)
		}
	}
	if len(pr.Streams) == 0 {
		return res, nil
	}
	raw, err := pr.Marshal()
	if err != nil {
		return Result{}, fmt.Errorf("encode push request: %w", err)
	}
	res.Body = snappy.Encode(nil, raw)
	return res, nil
}

func (c *Converter) entry(lr plog.LogRecord, scopeMeta []push.LabelAdapter, now time.Time) push.Entry {
	meta := slices.Clone(scopeMeta)
	lr.Attributes().Range(func(k string, v pcommon.Value) bool {
		if action(c.cfg.LogAttributes, k, ActionStructuredMetadata) != ActionDrop {
			meta = flatten(meta, k, v)
		}
		return true
	})
	if n := lr.SeverityNumber(); n != 0 {
		meta = append(meta, push.LabelAdapter{Name: "severity_number", Value: strconv.Itoa(int(n))})
	}
	if s := lr.SeverityText(); s != "" {
		meta = append(meta, push.LabelAdapter{Name: "severity_text", Value: s})
	}
	if id := lr.TraceID(); !id.IsEmpty() {
		meta = append(meta, push.LabelAdapter{Name: "trace_id", Value: hex.EncodeToString(id[:])})
	}
	if id := lr.SpanID(); !id.IsEmpty() {
		meta = append(meta, push.LabelAdapter{Name: "span_id", Value: hex.EncodeToString(id[:])})
	}
	if f := lr.Flags(); f != 0 {
		meta = append(meta, push.LabelAdapter{Name: "flags", Value: strconv.FormatUint(uint64(f), 10)})
	}
	if n := lr.DroppedAttributesCount(); n != 0 {
		meta = append(meta, push.LabelAdapter{Name: "dropped_attributes_count", Value: strconv.FormatUint(uint64(n), 10)})
	}
	ts, observed := lr.Timestamp(), lr.ObservedTimestamp()
	var at time.Time
	switch {
	case ts != 0:
		at = ts.AsTime()
		if observed != 0 {
			meta = append(meta, push.LabelAdapter{Name: "observed_timestamp", Value: strconv.FormatUint(uint64(observed), 10)})
		}
	case observed != 0:
		at = observed.AsTime()
	default:
		at = now
	}
	line := lr.Body().AsString()
	return push.Entry{Timestamp: at, Line: line, StructuredMetadata: dedupe(meta)}
}

// flatten appends attribute k as name/value pairs: a map value becomes
// one pair per leaf, its keys joined with _.
func flatten(dst []push.LabelAdapter, k string, v pcommon.Value) []push.LabelAdapter {
	if v.Type() == pcommon.ValueTypeMap {
		v.Map().Range(func(sub string, sv pcommon.Value) bool {
			dst = flatten(dst, k+"_"+sub, sv)
			return true
		})
		return dst
	}
	return append(dst, push.LabelAdapter{Name: NormalizeName(k), Value: v.AsString()})
}

// NormalizeName makes an attribute name a Loki label name: every
// character but [a-zA-Z0-9_] becomes _, and a leading digit gets "key_".
func NormalizeName(k string) string {
	var b strings.Builder
	b.Grow(len(k) + 4)
	if k != "" && k[0] >= '0' && k[0] <= '9' {
		b.WriteString("key_")
	}
	for _, r := range k {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// setLabel sets name to value, over any label of the same name.
func setLabel(lbls []push.LabelAdapter, name, value string) []push.LabelAdapter {
	lbls = slices.DeleteFunc(lbls, func(l push.LabelAdapter) bool { return l.Name == name })
	return append(lbls, push.LabelAdapter{Name: name, Value: value})
}

// dedupe keeps the last pair of each name (a log attribute over a scope or
// resource one of the same normalized name).
func dedupe(meta []push.LabelAdapter) push.LabelsAdapter {
	if len(meta) < 2 {
		return meta
	}
	seen := make(map[string]int, len(meta))
	out := meta[:0]
	for _, l := range meta {
		if i, ok := seen[l.Name]; ok {
			out[i].Value = l.Value
			continue
		}
		seen[l.Name] = len(out)
		out = append(out, l)
	}
	return out
}

// render writes labels as a Loki stream selector, sorted by name, the last
// of equal names winning.
func render(lbls []push.LabelAdapter) string {
	lbls = dedupe(lbls)
	slices.SortFunc(lbls, func(a, b push.LabelAdapter) int { return strings.Compare(a.Name, b.Name) })
	var sb strings.Builder
	sb.WriteByte('{')
	for i, l := range lbls {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(l.Name)
		sb.WriteByte('=')
		sb.WriteString(strconv.Quote(l.Value))
	}
	sb.WriteByte('}')
	return sb.String()
}
