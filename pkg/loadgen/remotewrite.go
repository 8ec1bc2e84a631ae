package loadgen

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// SeriesConfig shapes remote-write load.
type SeriesConfig struct {
	Series           int `yaml:"series"`
	SeriesPerRequest int `yaml:"series_per_request"`
	Labels           int `yaml:"labels"`
	Clusters         int `yaml:"clusters"`
	// ClusterPrefix, when set, names the clusters <prefix>0 ... <prefix>N-1
	// instead of the realistic names.
	ClusterPrefix string `yaml:"cluster_prefix"`
	// ClusterSkew, when above 0, gives the clusters Zipf-like sizes
	// (bodies per cluster falling as 1/rank^s) with the largest holding
	// this share of all series; 0: every cluster the same size.
	ClusterSkew float64 `yaml:"cluster_skew"`
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
	case c.ClusterSkew < 0 || c.ClusterSkew >= 1:
		return fmt.Errorf("cluster-skew must be in [0, 1)")
	case c.ClusterSkew > 0 && c.Bodies() < c.Clusters:
		return fmt.Errorf("cluster-skew needs at least one request body per cluster: series / series-per-request = %d < clusters = %d", c.Bodies(), c.Clusters)
	}
	return nil
}

// clusterOf names the cluster of body k of n.
func (c SeriesConfig) clusterOf(k int, sizes []int) string {
	i := k % c.Clusters
	if sizes != nil {
		i = 0
		for left := k; left >= sizes[i]; i++ {
			left -= sizes[i]
		}
	}
	if c.ClusterPrefix != "" {
		return c.ClusterPrefix + strconv.Itoa(i)
	}
	return clusterName(i)
}

// ZipfShares are the shares of n clusters whose sizes fall as 1/rank^s,
// s chosen so that the largest holds share of the total (0 < share < 1;
// below 1/n the sizes are even).
func ZipfShares(n int, share float64) []float64 {
	w := make([]float64, n)
	lo, hi := 0.0, 8.0
	for range 100 {
		s := (lo + hi) / 2
		total := 0.0
		for i := range w {
			w[i] = 1 / math.Pow(float64(i+1), s)
			total += w[i]
		}
		for i := range w {
			w[i] /= total
		}
		if w[0] < share {
			lo = s
		} else {
			hi = s
		}
	}
	return w
}

// clusterSizes apportions the bodies over the clusters by ZipfShares
// (largest remainders), at least one body each; nil without skew.
func (c SeriesConfig) clusterSizes() []int {
	if c.ClusterSkew == 0 {
		return nil
	}
	n, bodies := c.Clusters, c.Bodies()
	shares := ZipfShares(n, c.ClusterSkew)
	sizes := make([]int, n)
	sum := 0
	order := make([]int, n) // clusters by the part of a body their share lost
	for i, s := range shares {
		exact := s * float64(bodies)
		sizes[i] = max(1, int(exact))
		sum += sizes[i]
		order[i] = i
	}
	lost := func(i int) float64 { return shares[i]*float64(bodies) - float64(sizes[i]) }
	sort.SliceStable(order, func(a, b int) bool { return lost(order[a]) > lost(order[b]) })
	for j := 0; sum < bodies; j = (j + 1) % n {
		sizes[order[j]]++
		sum++
	}
	for sum > bodies { // the one-body floor of the smallest: taken from the largest
		sizes[0]--
		sum--
	}
	return sizes
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
	sizes := c.clusterSizes()
	for k := 0; k < c.Bodies(); k++ {
		from, to := k*c.SeriesPerRequest, min((k+1)*c.SeriesPerRequest, c.Series)
		cluster := c.clusterOf(k, sizes)
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
