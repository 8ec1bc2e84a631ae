package otlp

import (
	"net/netip"
	"testing"

	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/k8s"
)

// FuzzDecodeBody feeds arbitrary OTLP/HTTP bodies, protobuf and JSON,
// through what the receiver does with them: decode (the official protos,
// pdata for OTLP/JSON), drop invalid spans, add the Kubernetes attributes
// and encode again. Nothing may panic, and what is queued must decode.
func FuzzDecodeBody(f *testing.F) {
	good, err := proto.Marshal(traceRequestOf(map[string]string{"k8s.pod.uid": "u", "k8s.cluster.name": "x"}, "a", "b"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, false)
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00}, false)
	f.Add([]byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"k8s.pod.ip","value":{"stringValue":"10.0.0.5"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"s","startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`), true)
	f.Add([]byte(`{"resourceSpans":[{}]}`), true)
	pods := fakePods{[]k8s.PodInfo{{Namespace: "n", Name: "p", UID: "u", Node: "x", IPs: []string{"10.0.0.5"}}}}
	e := &enricher{cluster: "c", pods: pods}
	f.Fuzz(func(t *testing.T, body []byte, json bool) {
		ct := contentProtobuf
		if json {
			ct = contentJSON
		}
		req, err := decodeBody(traces, ct, body)
		if err != nil {
			return
		}
		before := req.items()
		bad, _ := req.dropInvalid()
		if req.items() != before-bad {
			t.Fatalf("dropInvalid removed %d of %d, %d left", bad, before, req.items())
		}
		req.eachResource(func(res *resourcepb.Resource) { e.enrich(res, netip.MustParseAddr("10.0.0.5")) })
		out, err := proto.Marshal(req.message())
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		back := traces.newRequest()
		if err := proto.Unmarshal(out, back.message()); err != nil {
			t.Fatalf("queued body does not decode: %v", err)
		}
		if back.items() != req.items() {
			t.Fatalf("queued %d items, decoded %d", req.items(), back.items())
		}
	})
}
