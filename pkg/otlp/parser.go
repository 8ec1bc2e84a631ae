package otlp

import (
	"bytes"
	"errors"
	"unicode/utf8"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tributary-io/tributary/pkg/reject"
	"github.com/tributary-io/tributary/pkg/split"
)

// Field numbers of ExportTraceServiceRequest and its children
// (opentelemetry/proto/{collector/trace,trace,resource,common}/v1).
const (
	fRequestResourceSpans = 1

	fResourceSpansResource   = 1
	fResourceSpansScopeSpans = 2
	fResourceSpansSchemaURL  = 3

	fResourceAttributes = 1
	fResourceDropped    = 2
	fResourceEntityRefs = 3

	fEntityRefSchemaURL       = 1
	fEntityRefType            = 2
	fEntityRefIDKeys          = 3
	fEntityRefDescriptionKeys = 4

	fScopeSpansScope     = 1
	fScopeSpansSpans     = 2
	fScopeSpansSchemaURL = 3

	fScopeName       = 1
	fScopeVersion    = 2
	fScopeAttributes = 3
	fScopeDropped    = 4

	fSpanTraceID       = 1
	fSpanSpanID        = 2
	fSpanTraceState    = 3
	fSpanParentSpanID  = 4
	fSpanName          = 5
	fSpanKind          = 6
	fSpanStart         = 7
	fSpanEnd           = 8
	fSpanAttributes    = 9
	fSpanDroppedAttrs  = 10
	fSpanEvents        = 11
	fSpanDroppedEvents = 12
	fSpanLinks         = 13
	fSpanDroppedLinks  = 14
	fSpanStatus        = 15
	fSpanFlags         = 16

	fEventTime       = 1
	fEventName       = 2
	fEventAttributes = 3
	fEventDropped    = 4

	fLinkTraceID    = 1
	fLinkSpanID     = 2
	fLinkTraceState = 3
	fLinkAttributes = 4
	fLinkDropped    = 5
	fLinkFlags      = 6

	fStatusDeprecatedCode = 1
	fStatusMessage        = 2
	fStatusCode           = 3

	fKeyValueKey         = 1
	fKeyValueValue       = 2
	fKeyValueKeyStrindex = 3

	fAnyString         = 1
	fAnyBool           = 2
	fAnyInt            = 3
	fAnyDouble         = 4
	fAnyArray          = 5
	fAnyKvlist         = 6
	fAnyBytes          = 7
	fAnyStringStrindex = 8

	fArrayValues  = 1
	fKvlistValues = 1
)

// Batch is one Kafka record's worth of a request: one cluster, and one of
// its shards (0 unless Limits.Sharder spreads the cluster).
type Batch struct {
	Cluster string
	Shard   int
	// Value is a snappy block-compressed ExportTraceServiceRequest whose
	// resources all carry k8s.cluster.name = Cluster. It never aliases the
	// request.
	Value []byte
	Spans int
	// Forwarded: Value is the request exactly as received.
	Forwarded bool
}

type spanInfo struct {
	start, end int // the whole Span field, tag included, in the request
	ok         bool
}

type resourceInfo struct {
	start, end int // ResourceSpans payload in the request
	group      int // cluster: index into the Grouper's names
	rewrite    bool
	spans      [2]int // its spans: a range of Parser.spans
}

// Parser validates requests and cuts them into records. It keeps its
// buffers between calls; it is not safe for concurrent use (pool it).
type Parser struct {
	lim       Limits
	groups    split.Grouper
	resources []resourceInfo
	spans     []spanInfo
	valid     int
	refused   Refusal
	batches   []Batch

	// enc is snappy's output, copied to each record's own value: a fresh
	// snappy.MaxEncodedLen buffer per record cost its allocation and
	// zeroing (4% of the gateway's CPU under span load).
	enc []byte

	// rewrite scratch
	shard  [2]int // the shard being written, of how many (collect keeps its spans)
	raw    []byte
	hdr    []byte
	pieces []piece
	ranges [][2]int
}

// maxKeptBuffer bounds the scratch a pooled Parser keeps, so one huge
// request does not pin its memory for ever.
const maxKeptBuffer = 4 << 20

// Parse validates raw (a protobuf ExportTraceServiceRequest) and returns
// its records, valid until the next call. defaultCluster is the cluster of
// resources without k8s.cluster.name; if it is empty their spans are
// refused.
//
// An error refuses the whole request: malformed, too large, more than
// Limits.MaxClusters clusters, or no valid span at all (then a 400 that
// says why). Otherwise the records hold what was valid and Refused says
// what was left out.
func (p *Parser) Parse(raw []byte, defaultCluster string, lim Limits) ([]Batch, error) {
	p.reset(lim)
	defer p.trim()
	if lim.MaxDecodedBytes > 0 && len(raw) > lim.MaxDecodedBytes {
		return nil, reject.TooLarge("request of %d bytes exceeds the limit of %d (-limits.spans.max-decoded-bytes)", len(raw), lim.MaxDecodedBytes)
	}
	if len(defaultCluster) > maxClusterLen || !utf8.ValidString(defaultCluster) {
		return nil, reject.BadRequest("invalid default cluster %q", defaultCluster)
	}
	if err := p.walk(raw, defaultCluster); err != nil {
		var m *malformedError
		if errors.As(err, &m) {
			return nil, reject.BadRequest("%s", m.Error())
		}
		return nil, err
	}
	if p.valid == 0 {
		if p.refused.Spans > 0 {
			return nil, reject.BadRequest("%s", p.refused.Message())
		}
		return nil, nil // no spans: nothing to write, nothing wrong
	}
	if p.forwardable(raw) {
		p.batches = append(p.batches, Batch{Cluster: p.groups.Names()[0], Value: p.compress(raw), Spans: p.valid, Forwarded: true})
		return p.batches, nil
	}
	if err := p.rewrite(raw); err != nil {
		return nil, err
	}
	return p.batches, nil
}

// Refused says what the last Parse left out, or nil when it kept
// everything. Valid until the next call.
func (p *Parser) Refused() *Refusal {
	if p.refused.Spans == 0 {
		return nil
	}
	return &p.refused
}

func (p *Parser) reset(lim Limits) {
	p.lim = lim
	p.groups.Reset(lim.MaxClusters)
	p.resources = p.resources[:0]
	p.spans = p.spans[:0]
	p.valid = 0
	p.refused = Refusal{}
	clear(p.batches)
	p.batches = p.batches[:0]
}

// compress is raw snappy-encoded, in a new slice of its own size.
func (p *Parser) compress(raw []byte) []byte {
	p.enc = snappy.Encode(p.enc[:cap(p.enc)], raw)
	return bytes.Clone(p.enc)
}

func (p *Parser) trim() {
	if cap(p.raw) > maxKeptBuffer {
		p.raw = nil
	}
	if cap(p.enc) > maxKeptBuffer {
		p.enc = nil
	}
	if cap(p.hdr) > maxKeptBuffer {
		p.hdr = nil
	}
	if cap(p.spans) > maxKeptBuffer/16 {
		p.spans, p.ranges = nil, nil
	}
}

// forwardable reports whether raw can be the one record unchanged.
func (p *Parser) forwardable(raw []byte) bool {
	if p.groups.Len() != 1 || p.refused.Spans > 0 || snappy.MaxEncodedLen(len(raw)) > p.lim.MaxRecordBytes ||
		p.shards(p.groups.Names()[0]) > 1 {
		return false
	}
	for i := range p.resources {
		if p.resources[i].rewrite {
			return false
		}
	}
	return true
}

// walk validates the request, records its resources and spans, and counts
// what it refuses.
func (p *Parser) walk(b []byte, defaultCluster string) error {
	for i := 0; i < len(b); {
		f, err := readField(b, i, 0)
		if err != nil {
			return err
		}
		if f.num == fRequestResourceSpans {
			if err := want(f, protowire.BytesType, 0, "resource_spans"); err != nil {
				return err
			}
			if err := p.walkResourceSpans(f.val, f.vOff, defaultCluster); err != nil {
				return err
			}
		}
		i = f.end
	}
	return nil
}

func (p *Parser) walkResourceSpans(b []byte, base int, defaultCluster string) error {
	index := len(p.resources)
	r := resourceInfo{start: base, end: base + len(b), spans: [2]int{len(p.spans), len(p.spans)}}
	var (
		prob         *problem
		cluster      []byte
		clusterAttrs int
		scopeIndex   int
	)
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return err
		}
		switch f.num {
		case fResourceSpansResource:
			if err := want(f, protowire.BytesType, base, "ResourceSpans.resource"); err != nil {
				return err
			}
			rp, c, n, err := p.walkResource(f.val, base+f.vOff)
			if err != nil {
				return err
			}
			prob = first(prob, rp)
			if n > 0 {
				cluster = c
			}
			clusterAttrs += n
		case fResourceSpansScopeSpans:
			if err := want(f, protowire.BytesType, base, "ResourceSpans.scope_spans"); err != nil {
				return err
			}
			if err := p.walkScopeSpans(f.val, base+f.vOff, index, scopeIndex); err != nil {
				return err
			}
			scopeIndex++
		case fResourceSpansSchemaURL:
			if err := want(f, protowire.BytesType, base, "ResourceSpans.schema_url"); err != nil {
				return err
			}
			if !utf8.Valid(f.val) {
				prob = first(prob, newProblem(ReasonUTF8, "schema_url is not valid UTF-8"))
			}
		}
		i = f.end
	}
	r.spans[1] = len(p.spans)

	switch {
	case clusterAttrs > 1:
		prob = first(prob, newProblem(ReasonCluster, "%s appears %d times", ClusterAttribute, clusterAttrs))
	case clusterAttrs == 0 && defaultCluster == "":
		prob = first(prob, newProblem(ReasonNoCluster, "no %s attribute, no cluster header and no -default-cluster", ClusterAttribute))
	case clusterAttrs == 0, p.lim.OverrideCluster && string(cluster) != defaultCluster:
		cluster, r.rewrite = []byte(defaultCluster), true
	}
	if prob == nil {
		g, err := p.groups.Group(cluster)
		if err != nil {
			return err
		}
		r.group = g
	} else {
		r.rewrite = true // not forwarded as is, even without spans to refuse
	}
	// The resource's fields besides its scope spans, once rewritten: an
	// upper bound (an existing cluster attribute is counted twice).
	hdr := len(b) + clusterAttrLen(len(cluster))
	for s := r.spans[0]; s < r.spans[1]; s++ {
		sp := &p.spans[s]
		hdr -= sp.end - sp.start
		if sp.ok && prob != nil {
			p.refused.add(prob, "resource "+itoa(index), 1)
			sp.ok = false
		}
	}
	if prob == nil {
		maxRaw := maxRawRecord(p.lim)
		for s := r.spans[0]; s < r.spans[1]; s++ {
			if sp := &p.spans[s]; sp.ok && hdr+2*maxHeader+sp.end-sp.start > maxRaw {
				p.refused.add(newProblem(ReasonTooLarge, "%d bytes with its resource and scope exceed the record limit of %d bytes (-limits.spans.max-record-bytes)", hdr+sp.end-sp.start, maxRaw), "span "+itoa(s), 1)
				sp.ok = false
			}
		}
	}
	for s := r.spans[0]; s < r.spans[1]; s++ {
		if p.spans[s].ok {
			p.valid++
		}
	}
	p.resources = append(p.resources, r)
	return nil
}

// walkResource checks a Resource and returns its k8s.cluster.name value
// and how many such attributes it has.
func (p *Parser) walkResource(b []byte, base int) (prob *problem, cluster []byte, clusterAttrs int, err error) {
	attrs := 0
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, nil, 0, err
		}
		switch f.num {
		case fResourceAttributes:
			if err := want(f, protowire.BytesType, base, "Resource.attributes"); err != nil {
				return nil, nil, 0, err
			}
			attrs++
			kv, err := p.checkKeyValue(f.val, base+f.vOff, 0)
			if err != nil {
				return nil, nil, 0, err
			}
			prob = first(prob, kv.prob)
			if kv.prob == nil && string(kv.key) == ClusterAttribute {
				clusterAttrs++
				cluster = kv.str
				if !kv.isStr || len(kv.str) == 0 || len(kv.str) > maxClusterLen {
					prob = first(prob, newProblem(ReasonCluster, "%s must be a string of 1 to %d bytes", ClusterAttribute, maxClusterLen))
				}
			}
		case fResourceDropped:
			if err := want(f, protowire.VarintType, base, "Resource.dropped_attributes_count"); err != nil {
				return nil, nil, 0, err
			}
		case fResourceEntityRefs:
			if err := want(f, protowire.BytesType, base, "Resource.entity_refs"); err != nil {
				return nil, nil, 0, err
			}
			ep, err := checkEntityRef(f.val, base+f.vOff)
			if err != nil {
				return nil, nil, 0, err
			}
			prob = first(prob, ep)
		}
		i = f.end
	}
	if attrs > p.lim.MaxAttributes {
		prob = first(prob, newProblem(ReasonLimit, "resource has %d attributes, more than %d (-limits.spans.max-attributes)", attrs, p.lim.MaxAttributes))
	}
	return prob, cluster, clusterAttrs, nil
}

// checkEntityRef checks that an EntityRef's strings are UTF-8.
func checkEntityRef(b []byte, base int) (*problem, error) {
	var prob *problem
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, err
		}
		switch f.num {
		case fEntityRefSchemaURL, fEntityRefType, fEntityRefIDKeys, fEntityRefDescriptionKeys:
			if err := want(f, protowire.BytesType, base, "EntityRef string"); err != nil {
				return nil, err
			}
			if !utf8.Valid(f.val) {
				prob = first(prob, newProblem(ReasonUTF8, "entity reference with a string that is not valid UTF-8"))
			}
		}
		i = f.end
	}
	return prob, nil
}

func (p *Parser) walkScopeSpans(b []byte, base, resIndex, index int) error {
	firstSpan := len(p.spans)
	var prob *problem
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return err
		}
		switch f.num {
		case fScopeSpansScope:
			if err := want(f, protowire.BytesType, base, "ScopeSpans.scope"); err != nil {
				return err
			}
			sp, err := p.checkScope(f.val, base+f.vOff)
			if err != nil {
				return err
			}
			prob = first(prob, sp)
		case fScopeSpansSpans:
			if err := want(f, protowire.BytesType, base, "ScopeSpans.spans"); err != nil {
				return err
			}
			traceID, spanID, sp, err := p.checkSpan(f.val, base+f.vOff)
			if err != nil {
				return err
			}
			if sp != nil {
				p.refused.add(sp, spanWhere(len(p.spans), traceID, spanID), 1)
			}
			p.spans = append(p.spans, spanInfo{start: base + f.start, end: base + f.end, ok: sp == nil})
		case fScopeSpansSchemaURL:
			if err := want(f, protowire.BytesType, base, "ScopeSpans.schema_url"); err != nil {
				return err
			}
			if !utf8.Valid(f.val) {
				prob = first(prob, newProblem(ReasonUTF8, "schema_url is not valid UTF-8"))
			}
		}
		i = f.end
	}
	if prob != nil {
		where := "scope " + itoa(index) + " of resource " + itoa(resIndex)
		for s := firstSpan; s < len(p.spans); s++ {
			if p.spans[s].ok {
				p.refused.add(prob, where, 1)
				p.spans[s].ok = false
			}
		}
	}
	return nil
}

func (p *Parser) checkScope(b []byte, base int) (*problem, error) {
	var prob *problem
	attrs := 0
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, err
		}
		switch f.num {
		case fScopeName, fScopeVersion:
			if err := want(f, protowire.BytesType, base, "InstrumentationScope name or version"); err != nil {
				return nil, err
			}
			prob = first(prob, p.checkString(f.val, "scope name or version"))
		case fScopeAttributes:
			if err := want(f, protowire.BytesType, base, "InstrumentationScope.attributes"); err != nil {
				return nil, err
			}
			attrs++
			kv, err := p.checkKeyValue(f.val, base+f.vOff, 0)
			if err != nil {
				return nil, err
			}
			prob = first(prob, kv.prob)
		case fScopeDropped:
			if err := want(f, protowire.VarintType, base, "InstrumentationScope.dropped_attributes_count"); err != nil {
				return nil, err
			}
		}
		i = f.end
	}
	if attrs > p.lim.MaxAttributes {
		prob = first(prob, newProblem(ReasonLimit, "scope has %d attributes, more than %d (-limits.spans.max-attributes)", attrs, p.lim.MaxAttributes))
	}
	return prob, nil
}

// checkSpan validates one Span; prob says why it is refused.
func (p *Parser) checkSpan(b []byte, base int) (traceID, spanID []byte, prob *problem, err error) {
	var (
		start, end            uint64
		attrs, events, links  int
		lim                   = &p.lim
		malformed             = func(e error) ([]byte, []byte, *problem, error) { return nil, nil, nil, e }
		traceIDSet, spanIDSet bool
	)
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return malformed(err)
		}
		switch f.num {
		case fSpanTraceID, fSpanSpanID, fSpanParentSpanID:
			if err := want(f, protowire.BytesType, base, "Span ID"); err != nil {
				return malformed(err)
			}
			switch f.num {
			case fSpanTraceID:
				traceID, traceIDSet = f.val, true
			case fSpanSpanID:
				spanID, spanIDSet = f.val, true
			default:
				switch {
				case len(f.val) == 8 && !validID(f.val, 8):
					prob = first(prob, newProblem(ReasonID, "parent_span_id is all zero: leave it empty for a root span"))
				case len(f.val) != 0 && len(f.val) != 8:
					prob = first(prob, newProblem(ReasonID, "parent_span_id must be empty or 8 bytes; has %d", len(f.val)))
				}
			}
		case fSpanTraceState:
			if err := want(f, protowire.BytesType, base, "Span.trace_state"); err != nil {
				return malformed(err)
			}
			prob = first(prob, p.checkString(f.val, "trace_state"))
		case fSpanName:
			if err := want(f, protowire.BytesType, base, "Span.name"); err != nil {
				return malformed(err)
			}
			prob = first(prob, p.checkString(f.val, "name"))
		case fSpanKind, fSpanDroppedAttrs, fSpanDroppedEvents, fSpanDroppedLinks:
			if err := want(f, protowire.VarintType, base, "Span kind or dropped count"); err != nil {
				return malformed(err)
			}
		case fSpanStart, fSpanEnd:
			if err := want(f, protowire.Fixed64Type, base, "Span time"); err != nil {
				return malformed(err)
			}
			if f.num == fSpanStart {
				start = f.u
			} else {
				end = f.u
			}
		case fSpanFlags:
			if err := want(f, protowire.Fixed32Type, base, "Span.flags"); err != nil {
				return malformed(err)
			}
		case fSpanAttributes:
			if err := want(f, protowire.BytesType, base, "Span.attributes"); err != nil {
				return malformed(err)
			}
			attrs++
			kv, err := p.checkKeyValue(f.val, base+f.vOff, 0)
			if err != nil {
				return malformed(err)
			}
			prob = first(prob, kv.prob)
		case fSpanEvents:
			if err := want(f, protowire.BytesType, base, "Span.events"); err != nil {
				return malformed(err)
			}
			events++
			ep, err := p.checkEvent(f.val, base+f.vOff)
			if err != nil {
				return malformed(err)
			}
			prob = first(prob, ep)
		case fSpanLinks:
			if err := want(f, protowire.BytesType, base, "Span.links"); err != nil {
				return malformed(err)
			}
			links++
			lp, err := p.checkLink(f.val, base+f.vOff)
			if err != nil {
				return malformed(err)
			}
			prob = first(prob, lp)
		case fSpanStatus:
			if err := want(f, protowire.BytesType, base, "Span.status"); err != nil {
				return malformed(err)
			}
			sp, err := p.checkStatus(f.val, base+f.vOff)
			if err != nil {
				return malformed(err)
			}
			prob = first(prob, sp)
		}
		i = f.end
	}
	// The IDs first: a refusal names the span by them.
	switch {
	case !traceIDSet || !validID(traceID, 16):
		prob = idProblem("trace_id", traceID, 16)
	case !spanIDSet || !validID(spanID, 8):
		prob = idProblem("span_id", spanID, 8)
	case prob != nil:
	case end < start:
		prob = newProblem(ReasonTime, "end_time_unix_nano %d is before start_time_unix_nano %d", end, start)
	case attrs > lim.MaxAttributes:
		prob = newProblem(ReasonLimit, "%d attributes, more than %d (-limits.spans.max-attributes)", attrs, lim.MaxAttributes)
	case events > lim.MaxEvents:
		prob = newProblem(ReasonLimit, "%d events, more than %d (-limits.spans.max-events)", events, lim.MaxEvents)
	case links > lim.MaxLinks:
		prob = newProblem(ReasonLimit, "%d links, more than %d (-limits.spans.max-links)", links, lim.MaxLinks)
	}
	return traceID, spanID, prob, nil
}

func (p *Parser) checkEvent(b []byte, base int) (*problem, error) {
	var prob *problem
	attrs := 0
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, err
		}
		switch f.num {
		case fEventTime:
			if err := want(f, protowire.Fixed64Type, base, "Event.time_unix_nano"); err != nil {
				return nil, err
			}
		case fEventName:
			if err := want(f, protowire.BytesType, base, "Event.name"); err != nil {
				return nil, err
			}
			prob = first(prob, p.checkString(f.val, "event name"))
		case fEventAttributes:
			if err := want(f, protowire.BytesType, base, "Event.attributes"); err != nil {
				return nil, err
			}
			attrs++
			kv, err := p.checkKeyValue(f.val, base+f.vOff, 0)
			if err != nil {
				return nil, err
			}
			prob = first(prob, kv.prob)
		case fEventDropped:
			if err := want(f, protowire.VarintType, base, "Event.dropped_attributes_count"); err != nil {
				return nil, err
			}
		}
		i = f.end
	}
	if attrs > p.lim.MaxAttributes {
		prob = first(prob, newProblem(ReasonLimit, "an event has %d attributes, more than %d (-limits.spans.max-attributes)", attrs, p.lim.MaxAttributes))
	}
	return prob, nil
}

func (p *Parser) checkLink(b []byte, base int) (*problem, error) {
	var (
		prob            *problem
		traceID, spanID []byte
		attrs           int
	)
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, err
		}
		switch f.num {
		case fLinkTraceID, fLinkSpanID:
			if err := want(f, protowire.BytesType, base, "Link ID"); err != nil {
				return nil, err
			}
			if f.num == fLinkTraceID {
				traceID = f.val
			} else {
				spanID = f.val
			}
		case fLinkTraceState:
			if err := want(f, protowire.BytesType, base, "Link.trace_state"); err != nil {
				return nil, err
			}
			prob = first(prob, p.checkString(f.val, "link trace_state"))
		case fLinkAttributes:
			if err := want(f, protowire.BytesType, base, "Link.attributes"); err != nil {
				return nil, err
			}
			attrs++
			kv, err := p.checkKeyValue(f.val, base+f.vOff, 0)
			if err != nil {
				return nil, err
			}
			prob = first(prob, kv.prob)
		case fLinkDropped:
			if err := want(f, protowire.VarintType, base, "Link.dropped_attributes_count"); err != nil {
				return nil, err
			}
		case fLinkFlags:
			if err := want(f, protowire.Fixed32Type, base, "Link.flags"); err != nil {
				return nil, err
			}
		}
		i = f.end
	}
	switch {
	case !validID(traceID, 16):
		prob = idProblem("a link's trace_id", traceID, 16)
	case !validID(spanID, 8):
		prob = idProblem("a link's span_id", spanID, 8)
	case attrs > p.lim.MaxAttributes:
		prob = first(prob, newProblem(ReasonLimit, "a link has %d attributes, more than %d (-limits.spans.max-attributes)", attrs, p.lim.MaxAttributes))
	}
	return prob, nil
}

func (p *Parser) checkStatus(b []byte, base int) (*problem, error) {
	var prob *problem
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, err
		}
		switch f.num {
		case fStatusMessage:
			if err := want(f, protowire.BytesType, base, "Status.message"); err != nil {
				return nil, err
			}
			prob = first(prob, p.checkString(f.val, "status message"))
		case fStatusCode, fStatusDeprecatedCode:
			if err := want(f, protowire.VarintType, base, "Status.code"); err != nil {
				return nil, err
			}
		}
		i = f.end
	}
	return prob, nil
}

// keyValue is what checkKeyValue learnt of an attribute.
type keyValue struct {
	key   []byte
	str   []byte // the value, when it is a string
	isStr bool
	prob  *problem
}

func (p *Parser) checkKeyValue(b []byte, base, depth int) (keyValue, error) {
	// Fast path: a key, then a value, each field shorter than 128 bytes,
	// as every encoder writes an attribute (the fields readField's fast
	// path reads, without the loop).
	const keyTag, valueTag = fKeyValueKey<<3 | byte(protowire.BytesType), fKeyValueValue<<3 | byte(protowire.BytesType)
	if len(b) >= 4 && b[0] == keyTag && b[1] < 0x80 {
		j := 2 + int(b[1])
		if j+2 <= len(b) && b[j] == valueTag && b[j+1] < 0x80 && j+2+int(b[j+1]) == len(b) {
			str, isStr, prob, err := p.checkAnyValue(b[j+2:], base+j+2, depth)
			if err != nil {
				return keyValue{key: b[2:j]}, err // as the walk leaves it
			}
			return p.checkKey(keyValue{key: b[2:j], str: str, isStr: isStr, prob: prob}), nil
		}
	}
	return p.checkKeyValueWalk(b, base, depth)
}

// checkKeyValueWalk is checkKeyValue for any encoding of a KeyValue.
func (p *Parser) checkKeyValueWalk(b []byte, base, depth int) (keyValue, error) {
	var kv keyValue
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return kv, err
		}
		switch f.num {
		case fKeyValueKey:
			if err := want(f, protowire.BytesType, base, "KeyValue.key"); err != nil {
				return kv, err
			}
			kv.key = f.val
		case fKeyValueValue:
			if err := want(f, protowire.BytesType, base, "KeyValue.value"); err != nil {
				return kv, err
			}
			str, isStr, prob, err := p.checkAnyValue(f.val, base+f.vOff, depth)
			if err != nil {
				return kv, err
			}
			kv.str, kv.isStr, kv.prob = str, isStr, first(kv.prob, prob)
		case fKeyValueKeyStrindex:
			if err := want(f, protowire.VarintType, base, "KeyValue.key_strindex"); err != nil {
				return kv, err
			}
		}
		i = f.end
	}
	return p.checkKey(kv), nil
}

// checkKey adds to kv what is wrong with its key.
func (p *Parser) checkKey(kv keyValue) keyValue {
	switch {
	case !utf8.Valid(kv.key):
		kv.prob = newProblem(ReasonUTF8, "an attribute key is not valid UTF-8")
	case len(kv.key) == 0:
		kv.prob = first(kv.prob, newProblem(ReasonLimit, "an attribute has an empty key"))
	case len(kv.key) > p.lim.MaxAttributeKeyLen:
		kv.prob = first(kv.prob, newProblem(ReasonLimit, "attribute key of %d bytes, longer than %d (-limits.spans.max-attribute-key-length)", len(kv.key), p.lim.MaxAttributeKeyLen))
	}
	return kv
}

// checkAnyValue checks an attribute value; str is its payload when it is
// a string.
func (p *Parser) checkAnyValue(b []byte, base, depth int) (str []byte, isStr bool, prob *problem, err error) {
	if depth >= maxValueDepth {
		return nil, false, newProblem(ReasonLimit, "an attribute value nests deeper than %d levels", maxValueDepth), nil
	}
	// Fast path: a string shorter than 128 bytes, most attributes' value.
	const stringTag = fAnyString<<3 | byte(protowire.BytesType)
	if len(b) >= 2 && b[0] == stringTag && b[1] < 0x80 && 2+int(b[1]) == len(b) {
		return b[2:], true, p.checkString(b[2:], "attribute value"), nil
	}
	return p.checkAnyValueWalk(b, base, depth)
}

// checkAnyValueWalk is checkAnyValue for any encoding of an AnyValue
// nested less than maxValueDepth deep.
func (p *Parser) checkAnyValueWalk(b []byte, base, depth int) (str []byte, isStr bool, prob *problem, err error) {
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, false, nil, err
		}
		switch f.num {
		case fAnyString, fAnyBytes:
			if err := want(f, protowire.BytesType, base, "AnyValue string or bytes"); err != nil {
				return nil, false, nil, err
			}
			if f.num == fAnyString {
				str, isStr = f.val, true
				prob = first(prob, p.checkString(f.val, "attribute value"))
			} else {
				isStr = false
				prob = first(prob, p.checkLen(len(f.val)))
			}
		case fAnyBool, fAnyInt, fAnyStringStrindex:
			if err := want(f, protowire.VarintType, base, "AnyValue number"); err != nil {
				return nil, false, nil, err
			}
			isStr = false
		case fAnyDouble:
			if err := want(f, protowire.Fixed64Type, base, "AnyValue.double_value"); err != nil {
				return nil, false, nil, err
			}
			isStr = false
		case fAnyArray, fAnyKvlist:
			if err := want(f, protowire.BytesType, base, "AnyValue array or kvlist"); err != nil {
				return nil, false, nil, err
			}
			isStr = false
			prob = first(prob, p.checkLen(len(f.val)))
			lp, err := p.checkList(f.val, base+f.vOff, depth, f.num == fAnyKvlist)
			if err != nil {
				return nil, false, nil, err
			}
			prob = first(prob, lp)
		}
		i = f.end
	}
	return str, isStr, prob, nil
}

// checkList checks an ArrayValue or a KeyValueList.
func (p *Parser) checkList(b []byte, base, depth int, kvlist bool) (*problem, error) {
	var prob *problem
	for i := 0; i < len(b); {
		f, err := readField(b, i, base)
		if err != nil {
			return nil, err
		}
		if f.num == fArrayValues { // = fKvlistValues
			if err := want(f, protowire.BytesType, base, "list values"); err != nil {
				return nil, err
			}
			var ep *problem
			if kvlist {
				kv, err := p.checkKeyValue(f.val, base+f.vOff, depth+1)
				if err != nil {
					return nil, err
				}
				ep = kv.prob
			} else {
				_, _, ep, err = p.checkAnyValue(f.val, base+f.vOff, depth+1)
				if err != nil {
					return nil, err
				}
			}
			prob = first(prob, ep)
		}
		i = f.end
	}
	return prob, nil
}

func (p *Parser) checkString(s []byte, what string) *problem {
	if !utf8.Valid(s) {
		return newProblem(ReasonUTF8, "%s is not valid UTF-8", what)
	}
	if len(s) > p.lim.MaxAttributeValueLen {
		return newProblem(ReasonLimit, "%s of %d bytes, longer than %d (-limits.spans.max-attribute-value-length)", what, len(s), p.lim.MaxAttributeValueLen)
	}
	return nil
}

func (p *Parser) checkLen(n int) *problem {
	if n > p.lim.MaxAttributeValueLen {
		return newProblem(ReasonLimit, "attribute value of %d bytes, longer than %d (-limits.spans.max-attribute-value-length)", n, p.lim.MaxAttributeValueLen)
	}
	return nil
}

// idProblem says why id is not a valid ID of n bytes.
func idProblem(field string, id []byte, n int) *problem {
	if len(id) == n {
		return newProblem(ReasonID, "%s is all zero, the invalid ID", field)
	}
	return newProblem(ReasonID, "%s must be %d bytes; has %d", field, n, len(id))
}

// validID: n bytes, not all zero (W3C Trace Context's invalid ID).
func validID(id []byte, n int) bool {
	if len(id) != n {
		return false
	}
	for _, c := range id {
		if c != 0 {
			return true
		}
	}
	return false
}

// first keeps the first problem found.
func first(a, b *problem) *problem {
	if a != nil {
		return a
	}
	return b
}
