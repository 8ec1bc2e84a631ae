// Command loadgen sends realistic telemetry load to Tributary (or to any
// Prometheus remote-write or Loki push receiver, or straight to Kafka) and
// prints one JSON line with what it measured: throughput, latency, status
// codes, and the CPU and memory of watched processes. Progress goes to
// stderr. See pkg/loadgen.
//
// `loadgen bench` is `make bench`: it starts the pipeline on loopback,
// measures it phase by phase and prints a table and one JSON line (see
// pkg/loadgen/bench).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tributary-io/tributary/pkg/flagenv"
	"github.com/tributary-io/tributary/pkg/loadgen"
	"github.com/tributary-io/tributary/pkg/loadgen/bench"
	"github.com/tributary-io/tributary/pkg/server"
)

type config struct {
	Load loadgen.Config   `yaml:"load"`
	Log  server.LogConfig `yaml:"log"`
}

func main() {
	if err := runMain(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func runMain(args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "bench" {
		return runBench(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "tracegen" {
		return runTracegen(args[1:], stdout)
	}
	var cfg config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	cfg.Load.RegisterFlags(fs)
	cfg.Log.RegisterFlags(fs)
	if err := flagenv.Parse(fs, args, "TRIBUTARY_LOADGEN", &cfg); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	log, err := cfg.Log.Logger("loadgen")
	if err != nil {
		return err
	}
	// Interrupting still prints the result of what ran so far.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, cfg.Load, log)
	if err != nil {
		return err
	}
	return res.WriteJSON(stdout)
}

type benchConfig struct {
	Bench bench.Config     `yaml:"bench"`
	Log   server.LogConfig `yaml:"log"`
}

func runBench(args []string, stdout io.Writer) error {
	var cfg benchConfig
	fs := flag.NewFlagSet("loadgen bench", flag.ContinueOnError)
	cfg.Bench.RegisterFlags(fs)
	cfg.Log.RegisterFlags(fs)
	if err := flagenv.Parse(fs, args, "TRIBUTARY_LOADGEN_BENCH", &cfg); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	log, err := cfg.Log.Logger("bench")
	if err != nil {
		return err
	}
	// Interrupting stops the phases, kills what they started and still
	// prints what was measured.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return bench.Run(ctx, cfg.Bench, stdout, log)
}
