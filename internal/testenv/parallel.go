package testenv

import (
	"flag"
	"strconv"
)

// DefaultParallel sets -test.parallel to n unless the command line gave
// it; call it from TestMain after flag.Parse. go test's default is
// GOMAXPROCS (2 on the CI machine), which leaves the cores idle when the
// parallel tests mostly wait on wall-clock time with their servers idle.
func DefaultParallel(n int) {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}
