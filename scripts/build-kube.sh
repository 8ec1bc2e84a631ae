#!/usr/bin/env bash
# Builds kube-apiserver and etcd from source (through the Go module proxy)
# into the tributary cache, once per version. The Kubernetes tests start them
# via internal/testenv (StartKube); there is no kubelet, scheduler or
# controller-manager.
#
#   scripts/build-kube.sh   -> prints two lines, last of the output:
#                                <cache>/bin/kube-apiserver-<version>
#                                <cache>/bin/etcd-<version>
#
# Output: ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/kube-apiserver-$KUBE_VERSION
#     and ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/etcd-$ETCD_VERSION
# A cold build takes ~15 minutes of 2 idle cores and ~3 GB of RAM
# (kube-apiserver is most of it; on a loaded machine it took 35 minutes);
# when both binaries are there the script only prints them.
set -euo pipefail
source "$(dirname "$0")/lib-build.sh"

KUBE_VERSION=v1.37.2
# etcd 3.7 is the release Kubernetes 1.37 is built and tested against (its
# go.mod requires the v3.7 client); the newest patch of it.
ETCD_VERSION=v3.7.3

kube_out="$cache/bin/kube-apiserver-$KUBE_VERSION"
etcd_out="$cache/bin/etcd-$ETCD_VERSION"
build_once "kube-$KUBE_VERSION-etcd-$ETCD_VERSION" "$kube_out" "$etcd_out"
build_start "kube-apiserver $KUBE_VERSION and etcd $ETCD_VERSION, those not built yet"

if [[ ! -x "$kube_out" ]]; then
	build_started=$SECONDS
	echo "building kube-apiserver $KUBE_VERSION into $kube_out (takes several minutes)..." >&2
	kube_gomod="$(build_module_field GoMod "k8s.io/kubernetes@$KUBE_VERSION")"
	# k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go,
	# apiserver, ...) at v0.0.0 and replaces them with ./staging/src/...,
	# which is not part of the module zip. Each is published on its own as
	# v0.<minor>.<patch> of the same release: replace it with that. Only the
	# staging modules kubernetes requires need (and may have) a published
	# version; the sample-* ones are not published.
	staging_version="v0.${KUBE_VERSION#v1.}"
	staging="$(sed -n 's|^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\) => \./staging/src/.*$|\1|p' "$kube_gomod" | sort)"
	if [[ -z "$staging" ]]; then
		echo "no ./staging replace directives found in $kube_gomod; the wrapper below needs rework" >&2
		exit 1
	fi
	# Any other replace or exclude directive would have to be mirrored here
	# (they apply only in the main module); fail loudly instead of building
	# something subtly different.
	if awk '/^replace \(/{b=1;next} b&&/^\)/{b=0;next} b||/^(replace|exclude)/' "$kube_gomod" | grep -v '=> \./staging/src/' | grep -q .; then
		echo "k8s.io/kubernetes@$KUBE_VERSION has replace/exclude directives other than ./staging ones:" >&2
		awk '/^replace \(/{b=1;next} b&&/^\)/{b=0;next} b||/^(replace|exclude)/' "$kube_gomod" | grep -v '=> \./staging/src/' >&2
		exit 1
	fi
	replaces=""
	for m in $staging; do
		if grep -qE "^[[:space:]]+$m v0\.0\.0( |$)" "$kube_gomod"; then
			replaces+="replace $m => $m $staging_version"$'\n'
		fi
	done
	go_directive="$(build_go_directive "$kube_gomod")"
	godebug="$(grep -E '^godebug ' "$kube_gomod" || true)"

	mkdir "$work/kube"
	cd "$work/kube"
	cat >go.mod <<EOF
module tributary.invalid/kubebuild

go $go_directive

$godebug

$replaces
EOF
	go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" >&2

	ver="${KUBE_VERSION#v}"
	major="${ver%%.*}"
	minor="${ver#*.}"
	minor="${minor%%.*}"
	ldflags="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
		ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	done
	go build -trimpath -ldflags "$ldflags" -o "$(build_tmp "$kube_out")" k8s.io/kubernetes/cmd/kube-apiserver >&2
	build_install "$kube_out"
	build_finish "kube-apiserver $KUBE_VERSION"
fi

if [[ ! -x "$etcd_out" ]]; then
	build_started=$SECONDS
	echo "building etcd $ETCD_VERSION into $etcd_out..." >&2
	etcd_gomod="$(build_module_field GoMod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
	go_directive="$(build_go_directive "$etcd_gomod")"
	mkdir "$work/etcd"
	cd "$work/etcd"
	cat >go.mod <<EOF
module tributary.invalid/etcdbuild

go $go_directive
EOF
	cat >main.go <<'EOF'
// Command etcd is etcd's own server main, built from the published module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
	go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
	go mod tidy >&2
	go build -trimpath -ldflags "-s -w" -o "$(build_tmp "$etcd_out")" . >&2
	build_install "$etcd_out"
	build_finish "etcd $ETCD_VERSION"
fi

echo "$kube_out"
echo "$etcd_out"
