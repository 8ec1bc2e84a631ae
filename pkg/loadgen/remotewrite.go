package loadgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// SeriesConfig shapes remote-write load.
type SeriesConfig struct {
	Series           int `yaml:"series"`
	SeriesPerRequest int `yaml:"series_per_request"`
	Labels           int `yaml:"labels"`
	Clusters         int `yaml:"clusters"`
}

// Validate checks the shape.
func (c SeriesConfig) Validate() error {
	switch {
	case c.Series <= 0 || c.SeriesPerRequest <= 0:
		return fmt.Errorf("series and series-per-request must be positive")
	case c.Labels < MinLabels:
		return fmt.Errorf("labels must be at least %d (__name__, cluster, namespace, pod keep series unique)", MinLabels)
	case c.Clusters <= 0:
		return fmt.Errorf("clusters must be positive")
	}
	return nil
}

// Bodies returns how many requests cover all series once.
func (c SeriesConfig) Bodies() int { return (c.Series + c.SeriesPerRequest - 1) / c.SeriesPerRequest }

// RemoteWriteBodies builds one snappy remote-write 1.0 body per
// SeriesPerRequest series, covering Series active series. Body k holds
// series [k·n, (k+1)·n), all of cluster k mod Clusters (an agent sends its own
// cluster's series), with one sample each; labels are sorted, so the gateway
// can forward the body as received.
func RemoteWriteBodies(c SeriesConfig) ([]*Body, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	rnd := rand.New(rand.NewSource(1))
	out := make([]*Body, 0, c.Bodies())
	for k := 0; k < c.Bodies(); k++ {
		from, to := k*c.SeriesPerRequest, min((k+1)*c.SeriesPerRequest, c.Series)
		cluster := clusterName(k % c.Clusters)
		b, err := remoteWriteBody(from, to, cluster, c.Labels, rnd)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// sampleHole is a Sample message's value (8 bytes), timestamp tag and
// timestamp (6-byte varint): everything that changes between sends.
const sampleHole = 8 + 1 + 6

func remoteWriteBody(from, to int, cluster string, labels int, rnd *rand.Rand) (*Body, error) {
	var raw, ts []byte
	holes := make([]span, 0, to-from)
	st := &sampleStamper{base: make([]float64, 0, to-from), step: make([]float64, 0, to-from)}
	for i := from; i < to; i++ {
		ts = ts[:0]
		for _, l := range seriesLabels(i, cluster, labels) {
			var lb []byte
			lb = protowire.AppendTag(lb, 1, protowire.BytesType)
			lb = protowire.AppendString(lb, l.Name)
			lb = protowire.AppendTag(lb, 2, protowire.BytesType)
			lb = protowire.AppendString(lb, l.Value)
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, lb)
		}
		// Sample{value: double = 1, timestamp: int64 = 2}: 16 bytes.
		ts = protowire.AppendTag(ts, 2, protowire.BytesType)
		ts = protowire.AppendVarint(ts, 16)
		ts = protowire.AppendTag(ts, 1, protowire.Fixed64Type)
		hole := len(ts)
		ts = binary.LittleEndian.AppendUint64(ts, 0)
		ts = protowire.AppendTag(ts, 2, protowire.VarintType)
		ts = append(ts, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40) // a six-byte varint, rewritten by Stamp

		raw = protowire.AppendTag(raw, 1, protowire.BytesType)
		raw = protowire.AppendVarint(raw, uint64(len(ts)))
		holes = append(holes, span{len(raw) + hole, sampleHole})
		raw = append(raw, ts...)
		// Counters and gauges: a value that moves on every send, as real
		// series do (constant values would make Prometheus' job easier).
		st.base = append(st.base, float64(rnd.Intn(1_000_000)))
		st.step = append(st.step, float64(1+rnd.Intn(100)))
	}
	data, offsets, err := encodeHoles(raw, holes)
	if err != nil {
		return nil, err
	}
	st.offsets = offsets
	b := &Body{
		Data: data, ContentType: "application/x-protobuf", Encoding: "snappy",
		Cluster: cluster, Items: to - from, stamper: st,
	}
	b.Stamp(time.Now())
	return b, nil
}

// sampleStamper gives every sample of a remote-write body the send time in
// milliseconds, strictly after the previous send's, and its next value.
type sampleStamper struct {
	offsets    []int // of each sample's hole in the compressed body
	base, step []float64
	lastMs     int64
	round      float64
}

func (s *sampleStamper) stamp(data []byte, now time.Time) {
	ms := max(now.UnixMilli(), s.lastMs+1)
	s.lastMs = ms
	s.round++
	var tsb [6]byte
	putVarint6(tsb[:], uint64(ms))
	for k, off := range s.offsets {
		h := data[off : off+sampleHole]
		binary.LittleEndian.PutUint64(h, math.Float64bits(s.base[k]+s.round*s.step[k]))
		h[8] = byte(2<<3 | protowire.VarintType)
		copy(h[9:], tsb[:])
	}
}
