#!/usr/bin/env bash
# Builds the Grafana Loki single binary from source (through the Go module
# proxy) into the tributary cache, once. The integration tests run it via
# internal/testenv.
#
#   scripts/build-loki.sh        -> prints the binary's path as the last line
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/loki-<version>
# A cold build takes ~9 minutes and ~2.3 GB of RAM on 2 cores; when the binary
# is already there the script only prints its path.
#
# The wrapper module and Loki's replace directives it repeats are in
# lib-build.sh (loki_wrapper_module), shared with build-promtail.sh, which
# builds Promtail from this same LOKI_VERSION.
set -euo pipefail
source "$(dirname "$0")/lib-build.sh"

LOKI_VERSION=v3.7.8

out="$cache/bin/loki-$LOKI_VERSION"
build_once "loki-$LOKI_VERSION" "$out"
build_start "Loki $LOKI_VERSION into $out (takes several minutes)"

cd "$work"
loki_wrapper_module lokibuild "$LOKI_VERSION"
go get "$LOKI_MODULE/cmd/loki@$LOKI_VERSION" >&2

vprefix="$LOKI_MODULE/pkg/util/build"
go build -trimpath -tags netgo \
	-ldflags "-s -w -X $vprefix.Version=${LOKI_VERSION#v} -X $vprefix.Branch=release -X $vprefix.Revision=$LOKI_VERSION -X $vprefix.BuildUser=tributary -X $vprefix.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	-o "$(build_tmp "$out")" "$LOKI_MODULE/cmd/loki" >&2
build_install "$out"

build_finish "Loki $LOKI_VERSION"
echo "$out"
