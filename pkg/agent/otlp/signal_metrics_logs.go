package otlp

import (
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"
)

// metricsSignal and logsSignal relay OTLP metrics and logs like traces.
// Their requests are passed on whole: what the gateway refuses of them
// (delta temporality, a resource without a cluster) depends on its
// configuration, and the agent sets the cluster on every resource anyway.
var (
	metricsSignal = &signal{
		name:       "metrics",
		path:       "/v1/metrics",
		newRequest: func() request { return metricsRequest{&colmetricspb.ExportMetricsServiceRequest{}} },
		jsonToProto: func(body []byte) ([]byte, error) {
			var u pmetric.JSONUnmarshaler
			md, err := u.UnmarshalMetrics(body)
			if err != nil {
				return nil, err
			}
			var m pmetric.ProtoMarshaler
			return m.MarshalMetrics(md)
		},
		rejected: func(body []byte) (int64, string, error) {
			var resp colmetricspb.ExportMetricsServiceResponse
			if err := proto.Unmarshal(body, &resp); err != nil {
				return 0, "", err
			}
			ps := resp.GetPartialSuccess()
			return ps.GetRejectedDataPoints(), ps.GetErrorMessage(), nil
		},
	}
	logsSignal = &signal{
		name:       "logs",
		path:       "/v1/logs",
		newRequest: func() request { return logsRequest{&collogspb.ExportLogsServiceRequest{}} },
		jsonToProto: func(body []byte) ([]byte, error) {
			var u plog.JSONUnmarshaler
			ld, err := u.UnmarshalLogs(body)
			if err != nil {
				return nil, err
			}
			var m plog.ProtoMarshaler
			return m.MarshalLogs(ld)
		},
		rejected: func(body []byte) (int64, string, error) {
			var resp collogspb.ExportLogsServiceResponse
			if err := proto.Unmarshal(body, &resp); err != nil {
				return 0, "", err
			}
			ps := resp.GetPartialSuccess()
			return ps.GetRejectedLogRecords(), ps.GetErrorMessage(), nil
		},
	}
)

type metricsRequest struct {
	*colmetricspb.ExportMetricsServiceRequest
}

func (r metricsRequest) message() proto.Message { return r.ExportMetricsServiceRequest }

func (r metricsRequest) eachResource(fn func(*resourcepb.Resource)) {
	for _, rm := range r.ResourceMetrics {
		if rm == nil {
			continue
		}
		if rm.Resource == nil {
			rm.Resource = &resourcepb.Resource{}
		}
		fn(rm.Resource)
	}
}

func (r metricsRequest) dropInvalid() (int, string) { return 0, "" }

// items counts data points, as OTLP's partial success does.
func (r metricsRequest) items() int {
	n := 0
	for _, rm := range r.ResourceMetrics {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				n += len(m.GetGauge().GetDataPoints()) + len(m.GetSum().GetDataPoints()) + len(m.GetHistogram().GetDataPoints()) +
					len(m.GetExponentialHistogram().GetDataPoints()) + len(m.GetSummary().GetDataPoints())
			}
		}
	}
	return n
}

func (r metricsRequest) response(rejected int64, msg string) proto.Message {
	resp := &colmetricspb.ExportMetricsServiceResponse{}
	if rejected > 0 || msg != "" {
		resp.PartialSuccess = &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: rejected, ErrorMessage: msg}
	}
	return resp
}

type logsRequest struct {
	*collogspb.ExportLogsServiceRequest
}

func (r logsRequest) message() proto.Message { return r.ExportLogsServiceRequest }

func (r logsRequest) eachResource(fn func(*resourcepb.Resource)) {
	for _, rl := range r.ResourceLogs {
		if rl == nil {
			continue
		}
		if rl.Resource == nil {
			rl.Resource = &resourcepb.Resource{}
		}
		fn(rl.Resource)
	}
}

func (r logsRequest) dropInvalid() (int, string) { return 0, "" }

func (r logsRequest) items() int {
	n := 0
	for _, rl := range r.ResourceLogs {
		for _, sl := range rl.GetScopeLogs() {
			n += len(sl.GetLogRecords())
		}
	}
	return n
}

func (r logsRequest) response(rejected int64, msg string) proto.Message {
	resp := &collogspb.ExportLogsServiceResponse{}
	if rejected > 0 || msg != "" {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: rejected, ErrorMessage: msg}
	}
	return resp
}
