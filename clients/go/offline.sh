#!/usr/bin/env bash
# Writes a Go workspace (go.work) that builds the given modules offline against Debian's packaged
# Go sources (/usr/share/gocode/src, from golang-google-grpc-dev, golang-google-protobuf-dev, ...):
# every module of the dependency graph is replaced by its Debian source directory, or, when Debian
# does not ship it (modules grpc-go's go.mod names but no imported package needs, e.g.
# github.com/envoyproxy/go-control-plane), by an empty stub module. go.mod stays a normal module
# file, so `go get` works elsewhere. Prints the go.work path; use it as
#   GOWORK=$(clients/go/offline.sh DIR MODULE_DIR...) GOPROXY=off GOFLAGS= go build ./...
# Usage: offline.sh DIR MODULE_DIR... (DIR receives go.work and the stubs)
set -euo pipefail
dir=${1:?usage: offline.sh DIR MODULE_DIR...}; shift
[ $# -gt 0 ] || { echo "usage: offline.sh DIR MODULE_DIR..." >&2; exit 2; }
gocode=${PCIEEMU_GOCODE:-/usr/share/gocode/src}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
uses=()
for m in "$@"; do uses+=("$(cd "$m" && pwd)"); done
declare -A repl=()
write() {
  {
    echo "go 1.19"; echo
    for u in "${uses[@]}"; do echo "use $u"; done; echo
    for k in $(printf "%s\n" "${!repl[@]}" | sort); do echo "replace $k => ${repl[$k]}"; done
  } >"$dir/go.work"
}
add() { # module path
  local mod=$1
  [ -n "${repl[$mod]:-}" ] && return 0
  if [ -f "$gocode/$mod/go.mod" ]; then
    repl[$mod]="$gocode/$mod"
  else
    mkdir -p "$dir/stub/$mod" && printf 'module %s\n' "$mod" >"$dir/stub/$mod/go.mod"
    repl[$mod]="$dir/stub/$mod"
  fi
}
for m in google.golang.org/grpc google.golang.org/protobuf github.com/golang/protobuf golang.org/x/net \
         golang.org/x/sys golang.org/x/text google.golang.org/genproto; do add "$m"; done
for _ in $(seq 1 60); do
  write
  if errs=$(cd "${uses[0]}" && GOWORK="$dir/go.work" GOPROXY=off GOFLAGS= GOSUMDB=off go list -m all 2>&1 >/dev/null); then
    echo "$dir/go.work"; exit 0
  fi
  missing=$(grep -oE '[^[:space:]]+@v[^:]+: (module lookup disabled|reading)' <<<"$errs" | sed 's/@.*//' | sort -u)
  [ -n "$missing" ] || { echo "$errs" >&2; exit 1; }
  for mod in $missing; do add "$mod"; done
done
echo "offline.sh: the module graph did not close after 60 rounds" >&2; exit 1
