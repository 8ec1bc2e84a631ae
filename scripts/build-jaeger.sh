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

JAEGER_VERSION=v1.76.0
JAEGER_PKG=github.com/jaegertracing/jaeger/cmd/jaeger

cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
out="$cache/bin/jaeger-$JAEGER_VERSION"

if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache/bin"
# One build at a time (go test runs packages in parallel, each may call us).
exec 9>"$cache/bin/.jaeger-$JAEGER_VERSION.lock"
flock 9
if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

work="$(mktemp -d "$cache/jaeger-build.XXXXXX")"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work" "$out.tmp.$$"' EXIT

start=$SECONDS
echo "building Jaeger $JAEGER_VERSION into $out..." >&2

cd "$work"
go mod init tributary.invalid/jaegerbuild >&2
go get -tool "$JAEGER_PKG@$JAEGER_VERSION" >&2
go build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" "$JAEGER_PKG" >&2
mv -f "$out.tmp.$$" "$out"

echo "built Jaeger $JAEGER_VERSION in $((SECONDS - start))s" >&2
echo "$out"
