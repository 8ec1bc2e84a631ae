package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tributary-io/tributary/pkg/agent/gatewayhttp"
)

// maxAnswerBody bounds what is read of the gateway's answer: a partial
// success or a refusal's reason fits.
const maxAnswerBody = 64 << 10

// clusterHeader is the gateway's default -cluster-header: the cluster of
// data that names none. Every resource names it (k8s.cluster.name); the
// header is for a gateway that reads it first.
const clusterHeader = "X-Tributary-Cluster"

// send delivers b to the gateway, then releases its bytes from the budget.
func (r *Relay) send(ctx context.Context, p *pipe, b *batch) {
	defer r.budget.release(b.bytes)
	r.deliver(ctx, p, b.parts)
}

// deliver posts parts as one request and retries network errors, 408, 429
// and 5xx (waiting as gatewayhttp.Backoff says, Retry-After first) until
// the gateway answers otherwise or ctx ends. A refusal (another 4xx) of
// several parts is retried part by part, so one sender's bad request does
// not cost the others theirs; a part refused alone is dropped.
func (r *Relay) deliver(ctx context.Context, p *pipe, parts []part) {
	items := 0
	for _, pt := range parts {
		items += pt.items
	}
	body, err := r.encode(parts)
	if err != nil {
		r.m.dropped.WithLabelValues(p.sig.name, reasonGatewayRefused).Add(float64(items))
		r.log.Error("cannot encode a batch for the gateway; dropped", "signal", p.sig.name, "items", items, "err", err)
		return
	}
	bo := gatewayhttp.Backoff{Min: time.Duration(r.cfg.MinBackoff), Max: time.Duration(r.cfg.MaxBackoff)}
	for {
		resp, answer, err := r.post(ctx, p, body)
		switch {
		case err == nil && resp.StatusCode/100 == 2:
			rejected, msg, perr := p.sig.rejected(answer)
			if perr != nil {
				// The data is in Kafka; only the answer is unreadable.
				r.warn.Log(ctx, slog.LevelDebug, "answer", "unreadable answer from the gateway; counted as all relayed", "err", perr)
				rejected = 0
			}
			rejected = min(rejected, int64(items))
			if rejected > 0 {
				r.m.dropped.WithLabelValues(p.sig.name, reasonGatewayPartial).Add(float64(rejected))
				r.warn.Log(ctx, slog.LevelWarn, "partial", "the gateway refused part of a batch", "signal", p.sig.name, "rejected", rejected, "of", items, "reason", msg)
			}
			r.m.relayed.WithLabelValues(p.sig.name).Add(float64(int64(items) - rejected))
			p.ok()
			return
		case err == nil && !gatewayhttp.Retryable(resp.StatusCode):
			if len(parts) > 1 {
				for _, pt := range parts {
					r.deliver(ctx, p, []part{pt})
				}
				return
			}
			r.m.dropped.WithLabelValues(p.sig.name, reasonGatewayRefused).Add(float64(items))
			p.fail(resp.Status + ": " + reason(resp, answer))
			r.warn.Log(ctx, slog.LevelWarn, "refused", "the gateway refused a request; dropped", "signal", p.sig.name, "items", items, "status", resp.Status, "reason", reason(resp, answer))
			return
		}
		if err != nil {
			p.fail(err.Error())
		} else {
			p.fail(resp.Status + ": " + reason(resp, answer))
		}
		wait := bo.Next(resp)
		r.m.retries.WithLabelValues(p.sig.name).Inc()
		r.warn.Log(ctx, slog.LevelWarn, "retry", "sending to the gateway failed; retrying", "signal", p.sig.name, "err", p.lastError(), "wait", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			r.m.dropped.WithLabelValues(p.sig.name, reasonShutdown).Add(float64(items))
			return
		}
	}
}

// encode concatenates the parts (one valid export request) and compresses
// them as configured.
func (r *Relay) encode(parts []part) ([]byte, error) {
	var buf bytes.Buffer
	if r.cfg.Compression != "gzip" {
		for _, pt := range parts {
			buf.Write(pt.body)
		}
		return buf.Bytes(), nil
	}
	zw := gzip.NewWriter(&buf)
	for _, pt := range parts {
		if _, err := zw.Write(pt.body); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// post sends one attempt. The response's body is read (up to
// maxAnswerBody) and closed; resp keeps its status and headers.
func (r *Relay) post(ctx context.Context, p *pipe, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", contentProtobuf)
	if r.cfg.Compression == "gzip" {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set(clusterHeader, r.cluster)
	resp, err := r.http.Do(req)
	if err != nil {
		r.m.sends.WithLabelValues(p.sig.name, "error").Inc()
		return nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody))
	_, _ = io.Copy(io.Discard, resp.Body) // reuse the connection
	r.m.sends.WithLabelValues(p.sig.name, strconv.Itoa(resp.StatusCode)).Inc()
	if err != nil && resp.StatusCode/100 == 2 {
		// Acknowledged; the partial success is lost, not the data.
		return resp, nil, nil
	}
	return resp, answer, nil
}

// reason is the text of an error answer: the message of an OTLP
// google.rpc.Status, or the body as it is.
func reason(resp *http.Response, answer []byte) string {
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == contentProtobuf {
		var st spb.Status
		if proto.Unmarshal(answer, &st) == nil {
			return st.GetMessage()
		}
	}
	return string(answer)
}

func (p *pipe) ok() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastOK = time.Now()
}

func (p *pipe) fail(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(msg) > 300 {
		msg = msg[:300] + "…"
	}
	p.lastErr, p.lastErrAt = msg, time.Now()
}

func (p *pipe) lastError() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}
