package elasticsearch

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/tributary-io/tributary/pkg/ingester"
	"github.com/tributary-io/tributary/pkg/loadgen"
	recordpb "github.com/tributary-io/tributary/proto/record/v1"
)

// loadgenSpanRecords are n records of the load tool's OTLP bodies (100
// spans of ~10 attributes, 8 services, 3 clusters): what make bench's
// spans-sink phase puts through the sink.
func loadgenSpanRecords(b *testing.B, n int) ([]ingester.Record, int) {
	b.Helper()
	bodies, err := loadgen.OTLPBodies(loadgen.SpanConfig{Bodies: 64, SpansPerRequest: 100, SpansPerTrace: 10, Attributes: 10, Clusters: 3})
	if err != nil {
		b.Fatal(err)
	}
	var recs []ingester.Record
	spans := 0
	now := time.Now()
	for i := range n {
		body := bodies[i%len(bodies)]
		body.Stamp(now.Add(time.Duration(i) * time.Millisecond))
		recs = append(recs, ingester.Record{Topic: "tributary.spans", Offset: int64(i), Value: snappy.Encode(nil, body.Data),
			Envelope: &recordpb.Envelope{Cluster: body.Cluster, Items: uint64(body.Items), Signal: recordpb.Signal_SIGNAL_SPANS}})
		spans += body.Items
	}
	return recs, spans
}

// BenchmarkJaegerEncodeLoadgen is the conversion alone on the load tool's
// spans: records of one batch → span documents (and service documents,
// once per process).
func BenchmarkJaegerEncodeLoadgen(b *testing.B) {
	recs, spans := loadgenSpanRecords(b, 40)
	e := newJaegerEncoder(jaegerIndices(""), 64<<20)
	cache := newServiceCache(DefaultServiceCacheSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := e.encode(recs, cache); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(spans*b.N)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkJaegerWrite is the sink's whole cost per span on the ingester's
// side: conversion, _bulk bodies, requests and the response's judgement,
// against a server that acknowledges every item at once (it reads the
// body and writes the answer, nothing else).
func BenchmarkJaegerWrite(b *testing.B) {
	recs, spans := loadgenSpanRecords(b, 40)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.URL.Path != "/_bulk" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"acknowledged":true}`)
			return
		}
		var resp bytes.Buffer
		resp.WriteString(`{"took":1,"errors":false,"items":[`)
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n := 0
		for sc.Scan() {
			if n%2 == 0 {
				if n > 0 {
					resp.WriteByte(',')
				}
				resp.WriteString(`{"index":{"status":201,"result":"created"}}`)
			}
			n++
		}
		resp.WriteString("]}")
		w.Header().Set("Content-Type", "application/json")
		w.Write(resp.Bytes())
	}))
	defer srv.Close()
	cfg := jaegerTestConfig(srv.URL)
	s, err := NewJaeger(context.Background(), cfg, testLog(b))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(spans*b.N)/b.Elapsed().Seconds(), "spans/s")
}
