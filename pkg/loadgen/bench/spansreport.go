package bench

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// spansBoundKeys adds to r, for each request size the spans phase ran,
// the highest gateway / Collector ratio the gateway's floor allows:
// spans_ceiling_vs_otelcol_per_core_<proto>[_<n>], the floor (parse and
// compress on one core) over the Collector's spans per CPU-second. A
// gateway that received and produced for free would reach it; a target
// above it cannot be met by receiving faster.
func spansBoundKeys(r results) {
	for _, n := range spansSizes(r) {
		floor, ok := r.get(spansKey("spans_ceiling_per_core_sec", n))
		if !ok || floor == 0 {
			continue
		}
		for _, proto := range []string{"grpc", "http"} {
			if oc, ok := r.get(spansKey("spans_otelcol_"+proto+"_per_core_sec", n)); ok && oc > 0 {
				r[spansKey("spans_ceiling_vs_otelcol_per_core_"+proto, n)] = floor / oc
			}
		}
	}
}

// spansSizes are the request sizes with results in r, ascending.
func spansSizes(r results) []int {
	var sizes []int
	for k := range r {
		rest, ok := strings.CutPrefix(k, "spans_gateway_grpc_per_sec")
		if !ok {
			continue
		}
		n := 100
		if rest != "" {
			var err error
			if n, err = strconv.Atoi(strings.TrimPrefix(rest, "_")); err != nil {
				continue
			}
		}
		sizes = append(sizes, n)
	}
	sort.Ints(sizes)
	return sizes
}

// writeSpansTable prints the spans phase by request size: spans per
// CPU-second of the gateway and the Collector, their ratio, the gateway's
// floor and the ratio it bounds.
func writeSpansTable(b *bytes.Buffer, r results) {
	sizes := spansSizes(r)
	if len(sizes) == 0 {
		return
	}
	fmt.Fprintf(b, "\n%-44s", "spans per CPU-second, by spans per request")
	for _, n := range sizes {
		fmt.Fprintf(b, " %10d", n)
	}
	b.WriteString("\n" + strings.Repeat("-", 44+11*len(sizes)) + "\n")
	value := func(label string, get func(n int) (float64, bool), ratio bool) {
		fmt.Fprintf(b, "%-44s", label)
		for _, n := range sizes {
			v, ok := get(n)
			s := formatValue(v, ok)
			if ok && ratio {
				s = strconv.FormatFloat(v, 'f', 2, 64)
			}
			fmt.Fprintf(b, " %10s", s)
		}
		b.WriteString("\n")
	}
	key := func(k string) func(int) (float64, bool) {
		return func(n int) (float64, bool) { return r.get(spansKey(k, n)) }
	}
	for _, proto := range []string{"grpc", "http"} {
		value("gateway, OTLP "+proto, key("spans_gateway_"+proto+"_per_core_sec"), false)
		value("Collector, OTLP "+proto, key("spans_otelcol_"+proto+"_per_core_sec"), false)
		value("  gateway / Collector", func(n int) (float64, bool) {
			g, okG := r.get(spansKey("spans_gateway_"+proto+"_per_core_sec", n))
			c, okC := r.get(spansKey("spans_otelcol_"+proto+"_per_core_sec", n))
			if !okG || !okC || c == 0 {
				return 0, false
			}
			return g / c, true
		}, true)
		value("  floor / Collector (the ratio's bound)", key("spans_ceiling_vs_otelcol_per_core_"+proto), true)
	}
	value("gateway floor: parse + compress, 1 core", key("spans_ceiling_per_core_sec"), false)
}
