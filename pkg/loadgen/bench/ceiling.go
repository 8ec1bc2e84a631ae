package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ceiling runs ./pkg/remotewrite's ceiling benchmarks, compiled once with
// the gateway's PGO profile as the gateway is: the ceiling is the same code
// built the same way. One core (-test.cpu 1): the ceiling is what one core
// can do.
type ceiling struct {
	bin string // the compiled test binary
	// validate holds every BenchmarkCeilingValidate rate measured.
	validate []float64
}

// buildCeiling compiles the benchmark binary of pkg (./pkg/remotewrite,
// ./pkg/otlp) into dir.
func buildCeiling(ctx context.Context, root, dir, pkg string) (*ceiling, error) {
	bin := filepath.Join(dir, filepath.Base(pkg)+".test")
	cmd := exec.CommandContext(ctx, "go", "test", "-pgo="+filepath.Join(root, "cmd", "gateway", "default.pgo"),
		"-c", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go test -c %s: %w\n%s", pkg, err, lastLines(string(out), 5))
	}
	return &ceiling{bin: bin}, nil
}

// run runs the benchmarks matching pattern count times for d each and
// returns the output.
func (c *ceiling) run(ctx context.Context, pattern string, d time.Duration, count int) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin, "-test.run", "^$", "-test.bench", pattern,
		"-test.benchtime", fmt.Sprintf("%dms", d.Milliseconds()), "-test.cpu", "1", "-test.count", strconv.Itoa(count))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -test.bench %s: %w\n%s", c.bin, pattern, err, lastLines(string(out), 5))
	}
	return string(out), nil
}

// once runs BenchmarkCeilingValidate once for d and returns its rate.
func (c *ceiling) once(ctx context.Context, d time.Duration) (float64, bool) {
	out, err := c.run(ctx, "CeilingValidate", d, 1)
	if err != nil {
		return 0, false
	}
	vs := benchValues(out, "BenchmarkCeilingValidate")
	c.validate = append(c.validate, vs...)
	return upperMedian(vs)
}

// benchValues is every run's rate of benchmark name in `go test -bench`
// output: samples per CPU-second of its thread where the benchmark reports
// it (the gateway's rate per core is in CPU-seconds too), else samples per
// second of wall time.
func benchValues(out, name string) []float64 { return benchRates(out, name, "samples") }

// benchRates is benchValues for items other than samples (spans).
func benchRates(out, name, items string) []float64 {
	perSec, perCPU := items+"/s", items+"/cpu-s"
	var vals []float64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		units := map[string]float64{}
		for i := 2; i < len(f); i++ {
			if f[i] == perSec || f[i] == perCPU {
				if v, err := strconv.ParseFloat(f[i-1], 64); err == nil {
					units[f[i]] = v
				}
			}
		}
		if v, ok := units[perCPU]; ok {
			vals = append(vals, v)
		} else if v, ok := units[perSec]; ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// upperMedian is the middle value, the upper one of two.
func upperMedian(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2], true
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
