#!/usr/bin/env bash
# Builds Jaeger v2 (cmd/jaeger, the OpenTelemetry-Collector-based binary)
# from the Go module proxy into the tributary cache, once. The span tests
# (issue 21) run it via internal/testenv.StartJaeger against ZincSearch, to
# prove that Jaeger's own query service reads the ingester's documents.
#
#   scripts/build-jaeger.sh      -> prints the binary's path as the last line
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/jaeger-<version>
# A cold build takes about 3 minutes on 2 cores; when the binary is already
# there the script only prints its path.
#
# Jaeger's main package lives in the github.com/jaegertracing/jaeger module
# itself, so it is built as a tool of a scratch module (go get -tool): the
# module's own go.mod decides the dependency versions, nothing is edited.
set -euo pipefail
source "$(dirname "$0")/lib-build.sh"

JAEGER_VERSION=v1.76.0
JAEGER_PKG=github.com/jaegertracing/jaeger/cmd/jaeger

out="$cache/bin/jaeger-$JAEGER_VERSION"
build_once "jaeger-$JAEGER_VERSION" "$out"
build_start "Jaeger $JAEGER_VERSION into $out" "$cache/jaeger-build.XXXXXX"

cd "$work"
go mod init tributary.invalid/jaegerbuild >&2
go get -tool "$JAEGER_PKG@$JAEGER_VERSION" >&2
go build -trimpath -ldflags "-s -w" -o "$(build_tmp "$out")" "$JAEGER_PKG" >&2
build_install "$out"

build_finish "Jaeger $JAEGER_VERSION"
echo "$out"
