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
set -euo pipefail

LOKI_VERSION=v3.7.8
LOKI_MODULE=github.com/grafana/loki/v3

# Loki's own go.mod at $LOKI_VERSION has these replace/exclude directives.
# replace directives only apply in the main module, so the wrapper module must
# repeat them. Loki's local replace (github.com/grafana/loki/pkg/push =>
# ./pkg/push) cannot be mirrored (nested modules are not part of the module
# zip); the wrapper uses the pseudo-version of pkg/push that Loki's go.mod
# requires instead.
LOKI_DIRECTIVES='
replace github.com/Azure/azure-sdk-for-go => github.com/Azure/azure-sdk-for-go v68.0.0+incompatible
replace github.com/Azure/azure-storage-blob-go => github.com/MasslessParticle/azure-storage-blob-go v0.14.1-0.20240322194317-344980fda573
replace github.com/gocql/gocql => github.com/grafana/gocql v0.0.0-20200605141915-ba5dc39ece85
replace github.com/hashicorp/memberlist => github.com/grafana/memberlist v0.3.1-0.20251126142931-6f9f62ab6f86
replace github.com/grafana/regexp => github.com/grafana/regexp v0.0.0-20240518133315-a468a5bfb3bc
replace github.com/influxdata/go-syslog/v3 => github.com/leodido/go-syslog/v4 v4.3.0
replace github.com/thanos-io/objstore => github.com/grafana/objstore v0.0.0-20250728171719-b5d3b766d1b0
exclude k8s.io/client-go v8.0.0+incompatible
'

cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
out="$cache/bin/loki-$LOKI_VERSION"

if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache/bin"
# One build at a time (go test runs packages in parallel, each may call us).
exec 9>"$cache/bin/.loki-$LOKI_VERSION.lock"
flock 9
if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work" "$out.tmp.$$"' EXIT

start=$SECONDS
echo "building Loki $LOKI_VERSION into $out (takes several minutes)..." >&2

# Check the directives above against Loki's go.mod, so a version bump that
# changes them fails loudly instead of building something subtly different.
loki_gomod="$(go mod download -json "$LOKI_MODULE@$LOKI_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$loki_gomod" || ! -f "$loki_gomod" ]]; then
	echo "could not download $LOKI_MODULE@$LOKI_VERSION" >&2
	exit 1
fi
want="$(grep -E '^(replace|exclude) ' "$loki_gomod" | grep -v '=> \./' | sed 's/[[:space:]]*$//' | sort)"
have="$(grep -E '^(replace|exclude) ' <<<"$LOKI_DIRECTIVES" | sort)"
if [[ "$want" != "$have" ]]; then
	echo "replace/exclude directives of $LOKI_MODULE@$LOKI_VERSION differ from the ones in $0:" >&2
	diff <(echo "$have") <(echo "$want") >&2 || true
	exit 1
fi
go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$loki_gomod")"

cd "$work"
cat >go.mod <<EOF
module tributary.invalid/lokibuild

go $go_directive
$LOKI_DIRECTIVES
EOF
go get "$LOKI_MODULE/cmd/loki@$LOKI_VERSION" >&2

vprefix="$LOKI_MODULE/pkg/util/build"
go build -trimpath -tags netgo \
	-ldflags "-s -w -X $vprefix.Version=${LOKI_VERSION#v} -X $vprefix.Branch=release -X $vprefix.Revision=$LOKI_VERSION -X $vprefix.BuildUser=tributary -X $vprefix.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	-o "$out.tmp.$$" "$LOKI_MODULE/cmd/loki" >&2
mv -f "$out.tmp.$$" "$out"

echo "built Loki $LOKI_VERSION in $((SECONDS - start))s" >&2
echo "$out"
