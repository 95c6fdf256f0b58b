#!/usr/bin/env bash
# Generates and builds the Go client offline (GOPATH mode, Debian's Go packages), builds the
# server, runs `go test` against a real server the tests start, and writes
# RESULTS_DIR/client-go.count ("PASSED FAILED"), or RESULTS_DIR/client-go.error when the toolchain
# is missing or the build fails.
# Usage: clients/go/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=client-go
rm -f "$out/$name.count" "$out/$name.error"
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
"$here/gen.sh" >>"$out/$name.build.log" 2>&1 || fail "code generation failed (see $out/$name.build.log)"
. "$here/env.sh"
cd "$PCIEEMU_GO_ROOT"
{ go vet ./client/ ./cmd/... && go build -o bin/ ./cmd/...; } >>"$out/$name.build.log" 2>&1 \
  || fail "Go build failed (see $out/$name.build.log)"

go test -count=1 -v -timeout 10m ./client/ >"$out/$name.log" 2>&1
# Subtests (one per conformance case) count too.
pass=$(grep -cE '^\s*--- PASS' "$out/$name.log")
failed=$(grep -cE '^\s*--- FAIL' "$out/$name.log")
if ! grep -qE '^(ok|FAIL)\s+pcieemu/client' "$out/$name.log"; then
  fail "go test did not finish (see $out/$name.log)"
fi
if [ "$pass" -eq 0 ] && [ "$failed" -eq 0 ]; then
  fail "go test ran no tests, e.g. the server did not start (see $out/$name.log)"
fi
echo "$pass $failed" >"$out/$name.count"
echo "$name: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
