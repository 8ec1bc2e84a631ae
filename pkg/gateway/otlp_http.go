package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"mime"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/bounded"
	"github.com/tributary-io/tributary/pkg/reject"
)

// otlpRequest is one OTLP export as the HTTP and gRPC servers hand it to a
// signal's export function.
type otlpRequest struct {
	body    []byte // uncompressed protobuf, or JSON when json is set
	json    bool
	tenant  string
	cluster string // for resources without k8s.cluster.name; "" refuses them
	// reserve takes n more bytes of the in-flight budget for this request
	// (given back when it ends) before they are allocated.
	reserve func(n int) error
	// override: cluster replaces every other cluster the data claims (the
	// sender's identity, -auth.cluster-mismatch=overwrite).
	override bool
}

// otlpExport validates and writes one OTLP export request and returns the
// response to send: the signal's Export*ServiceResponse, with partial
// success when part of the request was refused. It returns only after
// Kafka acknowledged what it kept.
type otlpExport func(ctx context.Context, req *otlpRequest) (proto.Message, error)

// Content types of OTLP/HTTP.
const (
	ctProtobuf = "application/x-protobuf"
	ctJSON     = "application/json"
)

// otlpHTTP serves an OTLP/HTTP endpoint (POST /v1/traces, and later
// /v1/metrics and /v1/logs): protobuf or JSON, optionally gzip, answered
// in the request's content type, refusals as a google.rpc.Status body as
// the OTLP spec asks.
func (g *Gateway) otlpHTTP(signal string, maxDecoded int, export otlpExport) http.Handler {
	return g.instrumentAs(signal, func(w http.ResponseWriter, r *http.Request) (int, error) {
		isJSON, err := otlpContentType(r.Header.Get("Content-Type"))
		if err != nil {
			return 0, err
		}
		gzipped := false
		switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
		case "", "identity":
		case "gzip":
			gzipped = true
		default:
			return 0, reject.Unsupported("Content-Encoding %q: OTLP/HTTP bodies are gzip or not compressed", enc)
		}
		req, err := g.receive(r, signal, 0, false)
		if err != nil {
			return 0, err
		}
		defer req.release()
		var releases []func()
		defer func() {
			for _, release := range releases {
				release()
			}
		}()
		reserve := func(n int) error {
			release, err := g.reserve(int64(n))
			if err != nil {
				return err
			}
			releases = append(releases, release)
			return nil
		}
		body := req.body
		if gzipped {
			body, err = gunzip(req.body, maxDecoded, reserve)
			g.putBody(req.body)
			if err != nil {
				return 0, err
			}
		} else {
			defer g.putBody(req.body) // records never alias the body
		}
		resp, err := export(r.Context(), &otlpRequest{body: body, json: isJSON, tenant: req.tenant, cluster: req.cluster, override: req.override, reserve: reserve})
		if err != nil {
			return 0, err
		}
		writeOTLP(w, http.StatusOK, isJSON, resp)
		return http.StatusOK, nil
	}, func(w http.ResponseWriter, r *http.Request, code int, reason string) {
		isJSON, _ := otlpContentType(r.Header.Get("Content-Type"))
		writeOTLP(w, code, isJSON, &status.Status{Code: int32(grpcCode(code)), Message: reason})
	})
}

// otlpContentType tells JSON from protobuf; anything else is 415. A missing
// Content-Type is taken as protobuf, OTLP's default encoding.
func otlpContentType(ct string) (isJSON bool, err error) {
	if ct == "" {
		return false, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return false, reject.Unsupported("Content-Type %q: %v", ct, err)
	case mt == ctProtobuf:
		return false, nil
	case mt == ctJSON:
		return true, nil
	}
	return false, reject.Unsupported("Content-Type %q: want %s or %s", ct, ctProtobuf, ctJSON)
}

func writeOTLP(w http.ResponseWriter, code int, isJSON bool, m proto.Message) {
	var (
		b   []byte
		err error
	)
	if isJSON {
		w.Header().Set("Content-Type", ctJSON)
		b, err = protojson.Marshal(m)
	} else {
		w.Header().Set("Content-Type", ctProtobuf)
		b, err = proto.Marshal(m)
	}
	if err != nil { // responses are built by the gateway: cannot happen
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(code)
	w.Write(b)
}

// gunzip decompresses body, refusing more than maxBytes (413). Its first
// buffer is sized by gzip's own trailer (ISIZE: the size mod 4 GiB, written
// by every encoder), so an honest body is read in one allocation; a
// trailer that lies only costs doublings, each reserved before it is
// allocated, up to maxBytes.
func gunzip(body []byte, maxBytes int, reserve func(int) error) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, reject.BadRequest("gzip body: %v", err)
	}
	hint := 0
	if len(body) >= 4 {
		hint = int(binary.LittleEndian.Uint32(body[len(body)-4:])) + 1 // +1: the read that sees the end
		// Deflate cannot expand more than 1032:1: a trailer claiming more
		// lies, and must not buy a large buffer with a small body.
		hint = min(hint, 1032*len(body))
	}
	return bounded.ReadAll(zr, hint, maxBytes, reserve)
}
