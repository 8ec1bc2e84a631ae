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
source "$(dirname "$0")/lib-build.sh"

VM_VERSION=v1.151.0
VM_MODULE=github.com/VictoriaMetrics/VictoriaMetrics

out="$cache/bin/vmagent-$VM_VERSION"
build_once "vmagent-$VM_VERSION" "$out"
build_start "vmagent $VM_VERSION into $out"

# VictoriaMetrics' go.mod has no replace or exclude directives to repeat.
vm_gomod="$(build_module_field GoMod "$VM_MODULE@$VM_VERSION")"
build_no_directives "$vm_gomod" "$VM_MODULE@$VM_VERSION"

cd "$work"
cat >go.mod <<GOMOD
module tributary.invalid/vmagentbuild

go $(build_go_directive "$vm_gomod")
GOMOD
go get "$VM_MODULE/app/vmagent@$VM_VERSION" >&2
go build -trimpath -ldflags "-s -w -X $VM_MODULE/lib/buildinfo.Version=vmagent-$VM_VERSION" -o "$(build_tmp "$out")" "$VM_MODULE/app/vmagent" >&2
build_install "$out"

build_finish "vmagent $VM_VERSION"
echo "$out"
