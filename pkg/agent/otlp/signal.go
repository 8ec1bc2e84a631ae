package otlp

import (
	"bytes"
	"fmt"

	"go.opentelemetry.io/collector/pdata/ptrace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// signal is what the relay needs to know of one OTLP signal: traces here,
// metrics and logs in signal_metrics_logs.go, each with its own request
// type; receiver, batching, budget and relay are shared.
type signal struct {
	// name is the signal label of the self-metrics: traces, metrics, logs.
	name string
	// path is the OTLP HTTP path, on the receiver and on the gateway.
	path string
	// newRequest is an empty export request to decode into.
	newRequest func() request
	// jsonToProto turns an OTLP/JSON body into the protobuf encoding.
	// OTLP/JSON is not protojson: IDs are hex, not base64.
	jsonToProto func(body []byte) ([]byte, error)
	// rejected reads the partial success of a gateway's answer (a
	// protobuf export response); an empty body is full success.
	rejected func(body []byte) (int64, string, error)
}

// request is one decoded export request.
type request interface {
	// message is the request's protobuf message.
	message() proto.Message
	// eachResource calls fn with the resource of every resource group,
	// creating it where the sender left it out.
	eachResource(fn func(*resourcepb.Resource))
	// dropInvalid removes the items the gateway would refuse for their
	// shape alone (so one bad span does not cost a whole batch its
	// delivery) and returns how many it removed and the first reason.
	dropInvalid() (int, string)
	// items counts the request's items (spans, data points, log records).
	items() int
	// response is the export response for a request of which rejected
	// items were refused for msg.
	response(rejected int64, msg string) proto.Message
}

var traces = &signal{
	name:       "traces",
	path:       "/v1/traces",
	newRequest: func() request { return traceRequest{&coltracepb.ExportTraceServiceRequest{}} },
	jsonToProto: func(body []byte) ([]byte, error) {
		var u ptrace.JSONUnmarshaler
		td, err := u.UnmarshalTraces(body)
		if err != nil {
			return nil, err
		}
		var m ptrace.ProtoMarshaler
		return m.MarshalTraces(td)
	},
	rejected: func(body []byte) (int64, string, error) {
		var resp coltracepb.ExportTraceServiceResponse
		if err := proto.Unmarshal(body, &resp); err != nil {
			return 0, "", err
		}
		ps := resp.GetPartialSuccess()
		return ps.GetRejectedSpans(), ps.GetErrorMessage(), nil
	},
}

type traceRequest struct {
	*coltracepb.ExportTraceServiceRequest
}

func (r traceRequest) message() proto.Message { return r.ExportTraceServiceRequest }

func (r traceRequest) eachResource(fn func(*resourcepb.Resource)) {
	for _, rs := range r.ResourceSpans {
		if rs == nil {
			continue
		}
		if rs.Resource == nil {
			rs.Resource = &resourcepb.Resource{}
		}
		fn(rs.Resource)
	}
}

func (r traceRequest) items() int {
	n := 0
	for _, rs := range r.ResourceSpans {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

var (
	zeroTraceID = make([]byte, 16)
	zeroSpanID  = make([]byte, 8)
)

// dropInvalid keeps the spans the gateway's validation accepts for their
// IDs and times (UTF-8 was checked by the decoder; attribute limits are
// the gateway's configuration and are left to it). Resource and scope
// groups left empty are removed.
func (r traceRequest) dropInvalid() (int, string) {
	dropped, first := 0, ""
	rss := r.ResourceSpans[:0]
	for _, rs := range r.ResourceSpans {
		if rs == nil {
			continue
		}
		sss := rs.ScopeSpans[:0]
		for _, ss := range rs.ScopeSpans {
			if ss == nil {
				continue
			}
			spans := ss.Spans[:0]
			for _, s := range ss.Spans {
				if why := invalidSpan(s); why != "" {
					dropped++
					if first == "" {
						first = why
					}
					continue
				}
				spans = append(spans, s)
			}
			ss.Spans = spans
			if len(spans) > 0 {
				sss = append(sss, ss)
			}
		}
		rs.ScopeSpans = sss
		if len(sss) > 0 {
			rss = append(rss, rs)
		}
	}
	r.ResourceSpans = rss
	return dropped, first
}

func invalidSpan(s interface {
	GetTraceId() []byte
	GetSpanId() []byte
	GetParentSpanId() []byte
	GetStartTimeUnixNano() uint64
	GetEndTimeUnixNano() uint64
}) string {
	switch tid, sid, pid := s.GetTraceId(), s.GetSpanId(), s.GetParentSpanId(); {
	case len(tid) != 16 || bytes.Equal(tid, zeroTraceID):
		return fmt.Sprintf("span with trace ID %x: want 16 bytes, not all zero", tid)
	case len(sid) != 8 || bytes.Equal(sid, zeroSpanID):
		return fmt.Sprintf("span with span ID %x (trace %x): want 8 bytes, not all zero", sid, tid)
	case len(pid) != 0 && len(pid) != 8:
		return fmt.Sprintf("span %x of trace %x: parent span ID %x, want 8 bytes or none", sid, tid, pid)
	case s.GetEndTimeUnixNano() < s.GetStartTimeUnixNano():
		return fmt.Sprintf("span %x of trace %x ends before it starts", sid, tid)
	}
	return ""
}

func (r traceRequest) response(rejected int64, msg string) proto.Message {
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rejected > 0 || msg != "" {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: rejected, ErrorMessage: msg}
	}
	return resp
}
