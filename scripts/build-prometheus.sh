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

# The module version the gateway's OTLP translator comes from (go.mod), so
# the reference runs the same conversion code: v0.316.0 is Prometheus 3.16.0.
PROM_MODULE_VERSION=v0.316.0
PROM_MODULE=github.com/prometheus/prometheus

cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
out="$cache/bin/prometheus-$PROM_MODULE_VERSION"

if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.prometheus-$PROM_MODULE_VERSION.lock"
flock 9
if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work" "$out.tmp.$$"' EXIT

start=$SECONDS
echo "building Prometheus $PROM_MODULE_VERSION into $out..." >&2

# replace directives only apply in the main module: fail loudly if the
# release grows some, instead of building something subtly different.
gomod="$(go mod download -json "$PROM_MODULE@$PROM_MODULE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$gomod" || ! -f "$gomod" ]]; then
	echo "could not download $PROM_MODULE@$PROM_MODULE_VERSION" >&2
	exit 1
fi
if grep -qE '^(replace|exclude)' "$gomod"; then
	echo "$PROM_MODULE@$PROM_MODULE_VERSION has replace/exclude directives; mirror them in $0" >&2
	exit 1
fi
go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")"

cd "$work"
cat >go.mod <<GOMOD
module tributary.invalid/prometheusbuild

go $go_directive
GOMOD
go get "$PROM_MODULE/cmd/prometheus@$PROM_MODULE_VERSION" >&2

vprefix="github.com/prometheus/common/version"
go build -trimpath -tags netgo,remove_all_sd \
	-ldflags "-s -w -X $vprefix.Version=3.16.0 -X $vprefix.Branch=release -X $vprefix.Revision=$PROM_MODULE_VERSION -X $vprefix.BuildUser=tributary" \
	-o "$out.tmp.$$" "$PROM_MODULE/cmd/prometheus" >&2
mv -f "$out.tmp.$$" "$out"

echo "built Prometheus $PROM_MODULE_VERSION in $((SECONDS - start))s" >&2
echo "$out"
