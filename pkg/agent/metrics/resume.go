package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang/snappy"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/tsdb/wlog"
)

// Prometheus's remote-write queue reads the WAL from "now" when it starts:
// whatever a previous run had scraped but not sent is skipped, so a restart
// during a gateway outage would lose the outage's data. The resumer closes
// that gap. It keeps a mark on disk, "every sample at or before this
// timestamp was acknowledged by the gateway", advanced every few seconds
// from the queue's highest sent timestamp minus WALConfig.ResendMargin; at
// start it reads the WAL segments of the previous runs and sends every
// sample after the mark before the mark may move again.
//
// Resent samples are older than what the live queue sends meanwhile, so the
// sink must accept out-of-order samples (an OOO window, which the pipeline
// needs anyway for Kafka replays); a sample sent twice is dropped by the
// sink as identical.

const (
	markFile = "tributary-resume-mark"
	// markEvery bounds how much a crash (no final save) adds to the resend.
	markEvery        = 5 * time.Second
	resendBatch      = 2000 // samples per request, as the live queue
	resendMaxBackoff = 30 * time.Second
)

type resumer struct {
	cfg    WALConfig
	remote *remote.Storage
	m      *selfMetrics
	log    *slog.Logger

	mu   sync.Mutex
	mark int64 // ms

	// target of the resend: set by run from the running configuration.
	send func(ctx context.Context, body []byte) (int, time.Duration, error)

	backlogDone atomic.Bool
	pending     atomic.Int64 // samples of the backlog not yet acknowledged
}

func newResumer(cfg WALConfig, rs *remote.Storage, m *selfMetrics, log *slog.Logger) *resumer {
	r := &resumer{cfg: cfg, remote: rs, m: m, log: log.With("component", "resume")}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, markFile))
	switch {
	case err == nil:
		r.mark, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			r.log.Warn("unreadable resume mark; resending the whole WAL", "err", err)
			r.mark = 0
		}
	case !errors.Is(err, os.ErrNotExist):
		r.log.Warn("cannot read the resume mark; resending the whole WAL", "err", err)
	}
	r.m.resumeMark.Set(float64(r.mark) / 1000)
	return r
}

// Mark is the acknowledged timestamp (ms) kept on disk.
func (r *resumer) Mark() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mark
}

// backlog is the previous runs' WAL: its checkpoint and segments, opened
// before this run's WAL starts, so a truncation while it is being sent
// cannot take the files away.
type backlog struct {
	readers []io.ReadCloser
}

func (b *backlog) Close() {
	if b == nil {
		return
	}
	for _, r := range b.readers {
		r.Close()
	}
	b.readers = nil
}

func (r *resumer) openBacklog() (*backlog, error) {
	dir := filepath.Join(r.cfg.Dir, "wal")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		r.backlogDone.Store(true)
		return nil, nil
	}
	b := &backlog{}
	first := -1
	cp, cpIndex, err := wlog.LastCheckpoint(dir)
	switch {
	case err == nil:
		rc, err := wlog.NewSegmentsRangeReader(wlog.SegmentRange{Dir: cp, First: -1, Last: -1})
		if err != nil {
			return nil, fmt.Errorf("open WAL checkpoint %s: %w", cp, err)
		}
		b.readers = append(b.readers, rc)
		first = cpIndex + 1
	case !errors.Is(err, record.ErrNotFound):
		return nil, fmt.Errorf("find WAL checkpoint: %w", err)
	}
	_, last, err := wlog.Segments(dir)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("list WAL segments: %w", err)
	}
	if last >= 0 && last >= first {
		rc, err := wlog.NewSegmentsRangeReader(wlog.SegmentRange{Dir: dir, First: first, Last: last})
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("open WAL segments: %w", err)
		}
		b.readers = append(b.readers, rc)
	}
	return b, nil
}

// run resends the backlog, then advances the mark until ctx ends.
func (r *resumer) run(ctx context.Context, b *backlog, send func(ctx context.Context, body []byte) (int, time.Duration, error), external labels.Labels) {
	r.send = send
	if b != nil && !r.backlogDone.Load() {
		err := r.resend(ctx, b, external)
		b.Close()
		if err != nil {
			r.log.Warn("resend from the WAL stopped; it starts again after a restart", "err", err)
		} else {
			r.backlogDone.Store(true)
		}
	}
	t := time.NewTicker(markEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.save()
		}
	}
}

// save moves the mark to what the live queue acknowledged, once the
// backlog is through.
func (r *resumer) save() {
	if !r.backlogDone.Load() {
		return
	}
	sent := r.remote.LowestSentTimestamp()
	if sent <= 0 {
		return
	}
	next := sent - time.Duration(r.cfg.ResendMargin).Milliseconds()
	r.mu.Lock()
	defer r.mu.Unlock()
	if next <= r.mark {
		return
	}
	path := filepath.Join(r.cfg.Dir, markFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(next, 10)+"\n"), 0o644); err != nil {
		r.log.Warn("write resume mark", "err", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		r.log.Warn("write resume mark", "err", err)
		return
	}
	r.mark = next
	r.m.resumeMark.Set(float64(next) / 1000)
}

// walSample is one float or histogram sample of the backlog (h or fh set
// for a native histogram).
type walSample struct {
	ref chunks.HeadSeriesRef
	t   int64
	v   float64
	h   *histogram.Histogram
	fh  *histogram.FloatHistogram
}

// resend sends every sample (float and native histogram) after the mark
// found in the backlog.
func (r *resumer) resend(ctx context.Context, b *backlog, external labels.Labels) error {
	after := r.Mark()
	dec := record.NewDecoder(labels.NewSymbolTable(), r.log)
	series := map[chunks.HeadSeriesRef]labels.Labels{}
	var (
		batch   []walSample
		samples []record.RefSample
		hists   []record.RefHistogramSample
		fhists  []record.RefFloatHistogramSample
		refs    []record.RefSeries
		total   int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n := len(batch)
		err := r.post(ctx, encode(batch, series, external))
		batch = batch[:0]
		if err != nil {
			if permanent, ok := errors.AsType[permanentError](err); ok {
				r.m.resent.WithLabelValues("dropped").Add(float64(n))
				r.log.Error("gateway refused resent samples; dropped", "samples", n, "err", permanent.error)
				return nil
			}
			return err
		}
		r.m.resent.WithLabelValues("sent").Add(float64(n))
		r.pending.Add(-int64(n))
		return nil
	}
	add := func(s walSample) error {
		if s.t <= after {
			return nil
		}
		if _, ok := series[s.ref]; !ok {
			return nil
		}
		batch = append(batch, s)
		total++
		r.pending.Add(1)
		if len(batch) >= resendBatch {
			return flush()
		}
		return nil
	}
	start := time.Now()
	for _, rc := range b.readers {
		rd := wlog.NewReader(rc)
		for rd.Next() {
			rec := rd.Record()
			var err error
			switch dec.Type(rec) {
			case record.Series:
				refs, err = dec.Series(rec, refs[:0])
				for _, s := range refs {
					series[s.Ref] = s.Labels
				}
			case record.Samples, record.SamplesV2:
				samples, err = dec.Samples(rec, samples[:0])
				for _, s := range samples {
					if err == nil {
						err = add(walSample{ref: s.Ref, t: s.T, v: s.V})
					}
				}
			case record.HistogramSamples, record.CustomBucketsHistogramSamples, record.HistogramSamplesV2:
				hists, err = dec.HistogramSamples(rec, hists[:0])
				for _, s := range hists {
					if err == nil {
						err = add(walSample{ref: s.Ref, t: s.T, h: s.H})
					}
				}
			case record.FloatHistogramSamples, record.CustomBucketsFloatHistogramSamples, record.FloatHistogramSamplesV2:
				fhists, err = dec.FloatHistogramSamples(rec, fhists[:0])
				for _, s := range fhists {
					if err == nil {
						err = add(walSample{ref: s.Ref, t: s.T, fh: s.FH})
					}
				}
			}
			if err != nil {
				return fmt.Errorf("resend WAL record: %w", err)
			}
		}
		if err := rd.Err(); err != nil {
			// A torn last record of a crashed run: what came before is sent.
			r.log.Warn("WAL read stopped early", "err", err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	r.log.Info("resent the previous run's unacknowledged samples", "samples", total, "after", time.UnixMilli(after).UTC(), "duration", time.Since(start))
	return nil
}

func encode(batch []walSample, series map[chunks.HeadSeriesRef]labels.Labels, external labels.Labels) []byte {
	idx := map[chunks.HeadSeriesRef]int{}
	req := &prompb.WriteRequest{}
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, s := range batch {
		i, ok := idx[s.ref]
		if !ok {
			b.Reset(series[s.ref])
			external.Range(func(l labels.Label) {
				if b.Get(l.Name) == "" {
					b.Set(l.Name, l.Value)
				}
			})
			ts := prompb.TimeSeries{}
			b.Labels().Range(func(l labels.Label) {
				ts.Labels = append(ts.Labels, prompb.Label{Name: l.Name, Value: l.Value})
			})
			i = len(req.Timeseries)
			idx[s.ref] = i
			req.Timeseries = append(req.Timeseries, ts)
		}
		ts := &req.Timeseries[i]
		switch {
		case s.h != nil:
			ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(s.t, s.h))
		case s.fh != nil:
			ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(s.t, s.fh))
		default:
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: s.t, Value: s.v})
		}
	}
	raw, err := req.Marshal()
	if err != nil {
		panic(err) // only fails on a nil message
	}
	return snappy.Encode(nil, raw)
}

// permanentError is a refusal retrying cannot change (4xx except 429).
type permanentError struct{ error }

// post sends one request, retrying network errors, 5xx and 429 with
// backoff, honouring Retry-After, until ctx ends.
func (r *resumer) post(ctx context.Context, body []byte) error {
	backoff := 100 * time.Millisecond
	for {
		code, retryAfter, err := r.send(ctx, body)
		switch {
		case err == nil && code/100 == 2:
			return nil
		case err == nil && code/100 == 4 && code != http.StatusTooManyRequests:
			return permanentError{fmt.Errorf("gateway answered %d", code)}
		}
		wait := backoff
		if retryAfter > 0 {
			wait = retryAfter
		}
		backoff = min(2*backoff, resendMaxBackoff)
		r.m.resendRetries.Inc()
		r.log.Debug("resend failed; retrying", "code", code, "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// httpSender posts remote-write bodies with the remote_write entry's own
// client settings (bearer token file, TLS).
func httpSender(url string, cfg config_util.HTTPClientConfig, timeout time.Duration) (func(context.Context, []byte) (int, time.Duration, error), error) {
	client, err := config_util.NewClientFromConfig(cfg, "agent_resend")
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, body []byte) (int, time.Duration, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return 0, 0, err
		}
		req.Header.Set("Content-Encoding", "snappy")
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
		req.Header.Set("User-Agent", "tributary-agent")
		resp, err := client.Do(req)
		if err != nil {
			return 0, 0, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		resp.Body.Close()
		var after time.Duration
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			after = time.Duration(s) * time.Second
		}
		return resp.StatusCode, after, nil
	}, nil
}
