#!/usr/bin/env bash
# Configures and builds the C++ client with CMake (code generated from ../../proto at build
# time), builds the server, runs the tests through ctest against a real server the tests start,
# and writes RESULTS_DIR/client-cpp.count ("PASSED FAILED"), or RESULTS_DIR/client-cpp.error when
# the toolchain is missing or the build fails.
# Usage: clients/cpp/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=client-cpp
rm -f "$out/$name.count" "$out/$name.error"
fail() { echo "$*" >"$out/$name.error"; echo "$name: $*" >&2; exit 1; }
need="apt-get install $(tr '\n' ' ' <"$here/apt-packages.txt")"

for tool in cmake c++ pkg-config protoc grpc_cpp_plugin; do
  command -v $tool >/dev/null || fail "$tool not found: $need"
done
pkg-config --exists grpc++ || fail "grpc++ development files not found: $need"
[ -f /usr/include/gtest/gtest.h ] || fail "GoogleTest not found: $need"
command -v dotnet >/dev/null || fail "dotnet not found: the tests need the .NET SDK to build the server"

if [ -z "${PCIEEMU_SERVER_DLL:-}" ]; then
  (cd "$root" && dotnet build src/PcieEmu.Server -c Release -nologo -clp:ErrorsOnly) >"$out/$name.build.log" 2>&1 \
    || fail "server build failed (see $out/$name.build.log)"
fi
build="$here/build"
{ cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release && cmake --build "$build" -j "${JOBS:-2}"; } \
  >>"$out/$name.build.log" 2>&1 || fail "C++ build failed (see $out/$name.build.log)"

(cd "$build" && ctest -V --timeout 600) >"$out/$name.log" 2>&1
# ctest -V prefixes the test's output with "N: ".
pass=$(grep -cE '^([0-9]+: )?\[       OK \]' "$out/$name.log")
# A failed test's own line ends with its time ("(12 ms)"); the summary list at the end does not.
failed=$(grep -cE '^([0-9]+: )?\[  FAILED  \] .*\([0-9]+ ms\)$' "$out/$name.log")
if [ "$pass" -eq 0 ] && [ "$failed" -eq 0 ]; then
  fail "no test ran, e.g. the server did not start (see $out/$name.log)"
fi
if grep -q 'Global test environment set-up' "$out/$name.log" && grep -qE '^([0-9]+: )?\[  SKIPPED \]' "$out/$name.log" && [ "$pass" -eq 0 ]; then
  fail "the test server did not start (see $out/$name.log)"
fi
echo "$pass $failed" >"$out/$name.count"
echo "$name: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
