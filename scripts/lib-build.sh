# Sourced by scripts/build-*.sh: the steps every build of a server or a
# baseline from the Go module proxy shares. Each script names its outputs in
# ${TRIBUTARY_CACHE:-$HOME/.cache/tributary}/bin/<name>-<version> (the cache
# key: a new version builds anew, the same version is built once).
#
#   source "$(dirname "$0")/lib-build.sh"
#   build_once <lock name> <output>...   # prints the outputs and exits when all
#                                        # exist; else takes the lock (one build
#                                        # at a time: go test runs packages in
#                                        # parallel, each may call us) and
#                                        # checks again
#   build_start "<what> into <where>"    # Go environment, scratch dir $work
#                                        # (removed on exit with the outputs'
#                                        # temporary files), start message
#   go build ... -o "$(build_tmp "$out")" && build_install "$out"
#   build_finish "<what>"                # "built <what> in Ns"
#
# Output contract of every script: the binaries' paths, one a line, last.

cache="${TRIBUTARY_CACHE:-$HOME/.cache/tributary}"
build_outputs=()
work=""

build_print_if_done() {
	local o
	for o in "$@"; do
		[[ -x "$o" ]] || return 0
	done
	printf '%s\n' "$@"
	exit 0
}

build_once() {
	local lock="$1"
	shift
	build_outputs=("$@")
	build_print_if_done "$@"
	mkdir -p "$cache/bin"
	exec 9>"$cache/bin/.$lock.lock"
	flock 9
	build_print_if_done "$@"
}

build_cleanup() {
	local o
	if [[ -n "$work" ]]; then
		chmod -R u+w "$work" 2>/dev/null || true
		rm -rf "$work"
	fi
	for o in "${build_outputs[@]}"; do
		rm -f "$(build_tmp "$o")"
	done
}

# build_start MESSAGE [SCRATCH_TEMPLATE]: the scratch directory is a mktemp
# -d under $TMPDIR unless a template (e.g. "$cache/x-build.XXXXXX") is given.
build_start() {
	export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
	if [[ -n "${2:-}" ]]; then
		work="$(mktemp -d "$2")"
	else
		work="$(mktemp -d)"
	fi
	trap build_cleanup EXIT
	build_started=$SECONDS
	echo "building $1..." >&2
}

build_tmp() {
	echo "$1.tmp.$$"
}

build_install() {
	mv -f "$(build_tmp "$1")" "$1"
}

build_finish() {
	echo "built $1 in $((SECONDS - build_started))s" >&2
}

# build_module_field FIELD MODULE@VERSION: a field of `go mod download -json`
# (GoMod: the module's go.mod; Dir: its source), failing loudly.
build_module_field() {
	local v
	v="$(go mod download -json "$2" | sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p")"
	if [[ -z "$v" || ! -e "$v" ]]; then
		echo "could not download $2" >&2
		return 1
	fi
	echo "$v"
}

# build_go_directive GOMOD: the go directive of a go.mod file.
build_go_directive() {
	sed -n 's/^go \([0-9.]*\)$/\1/p' "$1"
}

# build_no_directives GOMOD MODULE@VERSION: replace and exclude directives
# apply only in the main module, so a wrapper module that builds MODULE
# would silently differ from upstream's build; fail loudly instead.
build_no_directives() {
	if grep -qE '^(replace|exclude)' "$1"; then
		echo "$2 has replace/exclude directives now: repeat them in $0" >&2
		return 1
	fi
}

# Loki's module, built by build-loki.sh (the server) and build-promtail.sh
# (the benchmark baseline) through the same wrapper module, at build-loki.sh's
# LOKI_VERSION (the one place it is set; loki_version reads it).
LOKI_MODULE=github.com/grafana/loki/v3

loki_version() {
	sed -n 's/^LOKI_VERSION=\(v[0-9.]*\)$/\1/p' "$(dirname "${BASH_SOURCE[0]}")/build-loki.sh"
}

# Loki's own go.mod at its version has these replace/exclude directives.
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

# loki_wrapper_module NAME VERSION: writes go.mod of a scratch module (in the
# current directory) that builds Loki VERSION's packages as Loki's own build
# does. The directives above are checked against Loki's go.mod first, so a
# version bump that changes them fails loudly.
loki_wrapper_module() {
	local gomod want have
	gomod="$(build_module_field GoMod "$LOKI_MODULE@$2")"
	want="$(grep -E '^(replace|exclude) ' "$gomod" | grep -v '=> \./' | sed 's/[[:space:]]*$//' | sort)"
	have="$(grep -E '^(replace|exclude) ' <<<"$LOKI_DIRECTIVES" | sort)"
	if [[ "$want" != "$have" ]]; then
		echo "replace/exclude directives of $LOKI_MODULE@$2 differ from the ones in ${BASH_SOURCE[0]}:" >&2
		diff <(echo "$have") <(echo "$want") >&2 || true
		return 1
	fi
	cat >go.mod <<EOF
module tributary.invalid/$1

go $(build_go_directive "$gomod")
$LOKI_DIRECTIVES
EOF
}
