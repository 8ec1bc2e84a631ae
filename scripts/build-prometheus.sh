#!/usr/bin/env bash
# Builds Prometheus 3 from source (through the Go module proxy) into the
# tributary cache, once, without service discovery plugins and without the
# web UI's assets (the API is all the tests use). The integration tests run
# it via internal/testenv as the reference for the OTLP metrics path: its
# own OTLP receiver (--web.enable-otlp-receiver) stores what the gateway's
# conversion must reproduce. Debian's Prometheus (2.42) has no OTLP receiver.
#
#   scripts/build-prometheus.sh  -> prints the binary's path as the last line
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/prometheus-<version>
# When the binary is already there the script only prints its path.
set -euo pipefail
source "$(dirname "$0")/lib-build.sh"

# The module version the gateway's OTLP translator comes from (go.mod), so
# the reference runs the same conversion code: v0.316.0 is Prometheus 3.16.0.
PROM_MODULE_VERSION=v0.316.0
PROM_MODULE=github.com/prometheus/prometheus

out="$cache/bin/prometheus-$PROM_MODULE_VERSION"
build_once "prometheus-$PROM_MODULE_VERSION" "$out"
build_start "Prometheus $PROM_MODULE_VERSION into $out"

gomod="$(build_module_field GoMod "$PROM_MODULE@$PROM_MODULE_VERSION")"
build_no_directives "$gomod" "$PROM_MODULE@$PROM_MODULE_VERSION"

cd "$work"
cat >go.mod <<GOMOD
module tributary.invalid/prometheusbuild

go $(build_go_directive "$gomod")
GOMOD
go get "$PROM_MODULE/cmd/prometheus@$PROM_MODULE_VERSION" >&2

vprefix="github.com/prometheus/common/version"
go build -trimpath -tags netgo,remove_all_sd \
	-ldflags "-s -w -X $vprefix.Version=3.16.0 -X $vprefix.Branch=release -X $vprefix.Revision=$PROM_MODULE_VERSION -X $vprefix.BuildUser=tributary" \
	-o "$(build_tmp "$out")" "$PROM_MODULE/cmd/prometheus" >&2
build_install "$out"

build_finish "Prometheus $PROM_MODULE_VERSION"
echo "$out"
