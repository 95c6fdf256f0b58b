#!/usr/bin/env bash
# Builds the Go module offline (a Go workspace over Debian's Go sources, offline.sh), builds the
# server, runs `go test -v` against a real server the tests start into RESULTS_DIR/client-go.gotest
# (read by .ci/summarize), or writes RESULTS_DIR/client-go.error when the toolchain is missing, the
# build fails, or go test fails without a failing test (a panic, a -timeout). Exits with go test's status.
# Usage: clients/go/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=client-go
rm -f "$out/$name".{count,error,xml,gotest,tap}
fail() { echo "$*" >"$out/$name.error"; echo "$name: $*" >&2; exit 1; }

command -v go >/dev/null || fail "go not found: apt-get install $(tr '\n' ' ' <"$here/apt-packages.txt")"
for tool in protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v $tool >/dev/null || fail "$tool not found: apt-get install $(tr '\n' ' ' <"$here/apt-packages.txt")"
done
for pkg in google.golang.org/grpc google.golang.org/protobuf github.com/golang/protobuf/ptypes; do
  [ -d "/usr/share/gocode/src/$pkg" ] || fail "Go package $pkg missing: apt-get install $(tr '\n' ' ' <"$here/apt-packages.txt")"
done
# grpc-go marshals through github.com/golang/protobuf: the 1.3 package cannot handle APIv2 messages.
[ -f /usr/share/gocode/src/github.com/golang/protobuf/proto/wrappers.go ] \
  || fail "github.com/golang/protobuf is older than 1.4: apt-get install golang-github-golang-protobuf-1-5-dev"
command -v dotnet >/dev/null || fail "dotnet not found: the tests need the .NET SDK to build the server"

if [ -z "${PCIEEMU_SERVER_DLL:-}" ]; then
  (cd "$root" && dotnet build src/PcieEmu.Server -c Release -nologo -clp:ErrorsOnly) >"$out/$name.build.log" 2>&1 \
    || fail "server build failed (see $out/$name.build.log)"
fi
. "$here/env.sh" 2>>"$out/$name.build.log" || fail "offline Go workspace failed (see $out/$name.build.log)"
cd "$here"
{ go vet ./... && go build -o bin/ ./cmd/...; } >>"$out/$name.build.log" 2>&1 \
  || fail "Go build failed (see $out/$name.build.log)"

# The -v output is the result file (.ci/summarize reads its --- PASS/FAIL/SKIP lines, subtests
# included). A panic outside a test or a -timeout panic has no --- FAIL line: the exit status says it.
# The test binary runs directly (not under `go test`, which reads its output through a pipe and
# would wait for the server a panicked binary never stopped): output to a file, status its own.
go test -c -o bin/client.test ./pcieemu/ >>"$out/$name.build.log" 2>&1 || fail "Go test build failed (see $out/$name.build.log)"
(cd pcieemu && ../bin/client.test -test.count=1 -test.v -test.timeout "${PCIEEMU_GO_TEST_TIMEOUT:-10m}") >"$out/$name.gotest" 2>&1
rc=$?
if [ $rc -ne 0 ] && ! grep -qE '^\s*--- FAIL' "$out/$name.gotest"; then
  why=$(grep -m1 -E '^(panic:|fatal error:)|\[build failed\]|\[setup failed\]' "$out/$name.gotest")
  fail "the Go test binary exited $rc with no failing test${why:+: $why} (see $out/$name.gotest)"
fi
tail -2 "$out/$name.gotest"
exit $rc
