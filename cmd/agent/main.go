// Command agent runs on every node of a cluster: it scrapes Prometheus
// targets, keeps the samples in a write-ahead log on disk and sends them to
// the Tributary gateway with the cluster label on every series.
//
//	agent -config.file=agent.yml     run the agent
//	agent status [-addr=URL]         print a running agent's status page
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/tributary-io/tributary/pkg/agent"
	"github.com/tributary-io/tributary/pkg/flagenv"
	"github.com/tributary-io/tributary/pkg/server"
)

const envPrefix = "TRIBUTARY_AGENT"

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "status" {
		err = status(os.Args[2:], os.Stdout)
	} else {
		err = runMain(os.Args[1:])
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		os.Exit(1)
	}
}

type flags struct {
	configFile    string
	listenAddr    string
	flushDeadline time.Duration
	pprof         bool
	releasePages  bool
	log           server.LogConfig
	gc            server.GCConfig
}

func (f *flags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.configFile, "config.file", "agent.yml", "The agent's YAML configuration (cluster, gateway, metrics; see the README). ${NAME} is replaced by the environment variable NAME; unknown keys are an error. Reloaded on SIGHUP and POST /-/reload.")
	fs.StringVar(&f.listenAddr, "http.listen-addr", ":9095", "Address of the agent's HTTP server: /metrics, /-/healthy, /-/ready, /-/reload, /status.")
	fs.DurationVar(&f.flushDeadline, "shutdown.flush-timeout", 30*time.Second, "On SIGTERM, how long to wait for the send queue (and each of logs, events, otlp) to reach the gateway. What is left stays in the WAL (logs: unacknowledged lines are read again from their position) and is resent after the restart.")
	fs.BoolVar(&f.pprof, "debug.pprof", false, "Serve Go profiles under /debug/pprof/.")
	fs.BoolVar(&f.releasePages, "runtime.release-startup-pages", true, "Linux: when the agent starts and 10 s, 30 s and 1 min later, unmap the pages of its binary that start-up touched (madvise MADV_DONTNEED). They are clean file pages that stay in the page cache, which the kernel reclaims under memory pressure anyway; pages used again are mapped back on their next touch, without I/O. Lowers RSS by ~25 MiB; false keeps them mapped.")
	f.log.RegisterFlags(fs)
	// 100 (Go's default): the agent's heap is the WAL's series table and
	// the scrape caches, all live. 50 was measured against it in make
	// bench's agent phase (three pairs of runs at 10k series, two at 100k):
	// RSS 1-5 MiB lower at 10k, inside the runs' own ±5 MiB spread, and no
	// measurable change at 100k; not worth the extra GC cycles. Most of the
	// RSS at 10k is the binary's own pages (~42 MiB), which GC cannot touch.
	f.gc.RegisterFlags(fs, 100, "no limit")
}

// parseFlags parses args, then fills flags not given from the environment
// (TRIBUTARY_AGENT_<FLAG>).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (subcommands: status)", fs.Arg(0))
	}
	return flagenv.FromEnv(fs, envPrefix)
}

func runMain(args []string) error {
	var f flags
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	f.register(fs)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "Usage: agent [flags]          run the agent")
		fmt.Fprintln(out, "       agent status [-addr=URL] print a running agent's targets, WAL and send queue")
		fmt.Fprintln(out, "\nThe agent scrapes the targets of metrics.scrape_configs (Prometheus's own format), keeps")
		fmt.Fprintln(out, "the samples in a WAL on disk (metrics.wal) and sends them to gateway.url with")
		fmt.Fprintln(out, "cluster=<cluster> on every series. With an events section, the agent elected on")
		fmt.Fprintln(out, "kubernetes.leader_election also ships the cluster's Kubernetes events as log lines. Flags:")
		fs.PrintDefaults()
		fmt.Fprintf(out, "\nEvery flag can also be set by environment variable, e.g. -config.file as %s.\n", flagenv.EnvName(envPrefix, "config.file"))
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.gc.Validate(); err != nil {
		return err
	}
	log, err := f.log.Logger("agent")
	if err != nil {
		return err
	}
	f.gc.Apply(0, log)
	cfg, mcfg, err := agent.LoadFile(f.configFile)
	if err != nil {
		return err
	}
	reg := server.Registry()
	// The Kubernetes client, the leader election and the pod informer are
	// built (and later run) by the agent, which shares them between its
	// parts.
	a, err := agent.New(cfg, mcfg, agent.Params{
		ConfigFile:    f.configFile,
		FlushDeadline: f.flushDeadline,
		Registry:      reg,
		Logger:        log,
		// Package initialisation touches most of the binary's code and
		// read-only data, ~45 MiB of which steady work never uses again.
		ReleaseStartupPages: f.releasePages,
	})
	if err != nil {
		return err
	}

	var g run.Group
	server.Signals(&g, log)
	{
		// SIGHUP: reload; a refused file is logged and the old one runs on.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		stop := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case <-hup:
					_ = a.Reload()
				case <-stop:
					return nil
				}
			}
		}, func(error) {
			signal.Stop(hup)
			close(stop)
		})
	}
	{
		// The metrics pipeline and the components stop and flush (up to
		// -shutdown.flush-timeout); then the leader election releases the
		// Lease, so nothing cluster-wide is still shipping when a follower
		// takes over.
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error { return a.Run(ctx) }, func(error) { cancel() })
	}
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	if f.pprof {
		server.Pprof(mux)
	}
	if err := server.HTTP(&g, f.listenAddr, mux, 5*time.Second, log); err != nil {
		return err
	}
	err = g.Run()
	log.Info("stopped")
	return err
}

// status prints the status page of a running agent.
func status(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("agent status", flag.ContinueOnError)
	addr := fs.String("addr", "http://127.0.0.1:9095", "The running agent's HTTP address (its -http.listen-addr). Also "+flagenv.EnvName(envPrefix, "status.addr")+".")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if v := os.Getenv(flagenv.EnvName(envPrefix, "status.addr")); v != "" && !isSet(fs, "addr") {
		*addr = v
	}
	u := *addr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(strings.TrimSuffix(u, "/") + "/status")
	if err != nil {
		return fmt.Errorf("ask the agent at %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent at %s answered %s", u, resp.Status)
	}
	_, err = io.Copy(out, resp.Body)
	return err
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
