#!/usr/bin/env bash
# Builds VictoriaMetrics' vmagent from the Go module proxy into the
# tributary cache, once: the third column of make bench's agent phase
# (issue 19's stretch). Run by make bench only (never by make test).
#
#   scripts/build-vmagent.sh     -> prints the binary's path as the last line
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/vmagent-<version>
# A cold build took 210 s on the shared 2-core machine.
set -euo pipefail

VM_VERSION=v1.151.0
VM_MODULE=github.com/VictoriaMetrics/VictoriaMetrics

cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
out="$cache/bin/vmagent-$VM_VERSION"

if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache/bin"
exec 9>"$cache/bin/.vmagent-$VM_VERSION.lock"
flock 9
if [[ -x "$out" ]]; then
	echo "$out"
	exit 0
fi

export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

work="$(mktemp -d)"
trap 'chmod -R u+w "$work" 2>/dev/null || true; rm -rf "$work" "$out.tmp.$$"' EXIT

start=$SECONDS
echo "building vmagent $VM_VERSION into $out..." >&2

# VictoriaMetrics' go.mod has no replace or exclude directives to repeat.
vm_gomod="$(go mod download -json "$VM_MODULE@$VM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$vm_gomod" || ! -f "$vm_gomod" ]]; then
	echo "could not download $VM_MODULE@$VM_VERSION" >&2
	exit 1
fi
if grep -qE '^(replace|exclude)' "$vm_gomod"; then
	echo "$VM_MODULE@$VM_VERSION's go.mod has replace/exclude directives now: repeat them in $0" >&2
	exit 1
fi
go_directive="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$vm_gomod")"

cd "$work"
cat >go.mod <<GOMOD
module tributary.invalid/vmagentbuild

go $go_directive
GOMOD
go get "$VM_MODULE/app/vmagent@$VM_VERSION" >&2
go build -trimpath -ldflags "-s -w -X $VM_MODULE/lib/buildinfo.Version=vmagent-$VM_VERSION" -o "$out.tmp.$$" "$VM_MODULE/app/vmagent" >&2
mv -f "$out.tmp.$$" "$out"

echo "built vmagent $VM_VERSION in $((SECONDS - start))s" >&2
echo "$out"
