#!/usr/bin/env bash
# Builds ZincSearch (an Elasticsearch-compatible search server) from source
# (through the Go module proxy) into the tributary cache, once. The
# integration tests run it via internal/testenv.
#
#   scripts/build-zinc.sh        -> prints the binary's path as the last line
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/zincsearch-<version>
# When the binary is already there the script only prints its path.
#
# Two changes to the upstream source, both build-only:
#  - web/dist (the UI, built with npm upstream) is //go:embed'ed; it is not in
#    the module zip, so a placeholder page is put there. The UI is not needed.
#  - github.com/pyroscope-io/godeltaprof v0.1.2 (pulled in by the pyroscope
#    client) does not build with Go >= 1.22 (its runtime stubs are behind
#    `go1.16 && !go1.22`). It is replaced by a copy of its successor,
#    github.com/grafana/pyroscope-go/godeltaprof (same package API), with the
#    import paths rewritten: a plain module replace cannot work because the
#    successor imports its own internal/ package under the new path. The
#    profiler is only used with ZINC_PROFILER=true, which the tests never set.
set -euo pipefail
source "$(dirname "$0")/lib-build.sh"

ZINC_VERSION=v0.4.10
ZINC_MODULE=github.com/zincsearch/zincsearch
GODELTAPROF_VERSION=v0.1.11

out="$cache/bin/zincsearch-$ZINC_VERSION"
build_once "zincsearch-$ZINC_VERSION" "$out"
build_start "ZincSearch $ZINC_VERSION into $out"

# The module cache is read-only: copy the source out to build it as the main
# module (so its own replace directives apply) and to add web/dist.
src_dir="$(cd "$work" && build_module_field Dir "$ZINC_MODULE@$ZINC_VERSION")"
cp -R "$src_dir" "$work/src"
chmod -R u+w "$work/src"
cd "$work/src"

mkdir -p web/dist
cat >web/dist/index.html <<'EOF'
<!doctype html><title>ZincSearch</title><p>UI not built (tributary test build).</p>
EOF

gdp_dir="$(build_module_field Dir "github.com/grafana/pyroscope-go/godeltaprof@$GODELTAPROF_VERSION")"
cp -R "$gdp_dir" "$work/godeltaprof"
chmod -R u+w "$work/godeltaprof"
find "$work/godeltaprof" \( -name '*.go' -o -name go.mod \) -exec \
	sed -i 's#github.com/grafana/pyroscope-go/godeltaprof#github.com/pyroscope-io/godeltaprof#g' {} +
go mod edit -replace "github.com/pyroscope-io/godeltaprof=../godeltaprof"

meta="$ZINC_MODULE/pkg/meta"
GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath \
	-ldflags "-s -w -X $meta.Version=$ZINC_VERSION -X $meta.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ) -X $meta.CommitHash=$ZINC_VERSION" \
	-o "$(build_tmp "$out")" ./cmd/zincsearch >&2
build_install "$out"

build_finish "ZincSearch $ZINC_VERSION"
echo "$out"
