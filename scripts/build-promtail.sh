#!/usr/bin/env bash
# Builds Promtail (Loki's log agent) into the tributary cache, once: the
# baseline of make bench's logs-agent phase (issue 20). Run by make bench
# only (never by make test).
#
#   scripts/build-promtail.sh    -> prints the binary's path as the last line
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/promtail-<version>, the
# Loki release build-loki.sh builds (LOKI_VERSION there).
#
# Loki v3.7.8 no longer ships clients/cmd/promtail, but its library
# clients/pkg/promtail is still in the Loki module. The scratch module below
# holds a short main around promtail.New (config file in, run until SIGTERM),
# with the same replace directives as build-loki.sh. Promtail is AGPL: it is
# built and run by this script and the benchmark, never linked into
# Tributary; the main is generated here and never committed as a Go file.
set -euo pipefail
source "$(dirname "$0")/lib-build.sh"

LOKI_VERSION="$(loki_version)"
out="$cache/bin/promtail-$LOKI_VERSION"
build_once "promtail-$LOKI_VERSION" "$out"
build_start "Promtail $LOKI_VERSION into $out (takes several minutes)"

cd "$work"
loki_wrapper_module promtailbuild "$LOKI_VERSION"
cat >main.go <<'GO'
// Command promtail runs Loki's Promtail library with a config file.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v2"

	"github.com/grafana/loki/v3/clients/pkg/promtail"
	"github.com/grafana/loki/v3/clients/pkg/promtail/client"
	"github.com/grafana/loki/v3/clients/pkg/promtail/config"
)

func main() {
	var cfg config.Config
	fs := flag.NewFlagSet("promtail", flag.ExitOnError)
	cfg.RegisterFlags(fs) // the defaults
	file := fs.String("config.file", "", "YAML config file")
	_ = fs.Parse(os.Args[1:])
	b, err := os.ReadFile(*file)
	if err == nil {
		err = yaml.UnmarshalStrict(b, &cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
	logger := level.NewFilter(log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr)), level.AllowWarn())
	p, err := promtail.New(cfg, nil, client.NewMetrics(prometheus.DefaultRegisterer), false, promtail.WithLogger(logger))
	if err != nil {
		fmt.Fprintln(os.Stderr, "promtail:", err)
		os.Exit(1)
	}
	// Run returns on SIGTERM/SIGINT (the server's signal handler).
	if err := p.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
	}
	p.Shutdown()
}
GO
go get "$LOKI_MODULE/clients/pkg/promtail@$LOKI_VERSION" >&2
go mod tidy >&2
go build -trimpath -tags netgo -ldflags "-s -w" -o "$(build_tmp "$out")" . >&2
build_install "$out"

build_finish "Promtail $LOKI_VERSION"
echo "$out"
