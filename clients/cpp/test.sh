#!/usr/bin/env bash
# Configures and builds the C++ client with CMake (code generated from ../../proto at build
# time), builds the server, runs the tests through ctest against a real server the tests start,
# and leaves GoogleTest's XML in RESULTS_DIR/client-cpp.xml (read by .ci/summarize), or writes
# RESULTS_DIR/client-cpp.error when the toolchain is missing, the build fails or the test binary
# crashes. Exits with ctest's status.
# Usage: clients/cpp/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=client-cpp
rm -f "$out/$name".{count,error,xml,gotest,tap}
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

# GoogleTest writes its XML only at the end: a crashed binary (e.g. a segfault) leaves none.
rm -f "$build/test-results.xml" "$out/$name.xml"
(cd "$build" && ctest -V --timeout 600) >"$out/$name.log" 2>&1
rc=$?
[ -f "$build/test-results.xml" ] && cp "$build/test-results.xml" "$out/$name.xml"
if [ $rc -ne 0 ] && [ ! -f "$out/$name.xml" ]; then
  why=$(grep -m1 -E '\*\*\*(Exception|Timeout|Failed)|Segmentation|Aborted' "$out/$name.log")
  fail "ctest exited $rc and the test binary wrote no results: it crashed or was killed${why:+ ($why)} (see $out/$name.log)"
fi
tail -3 "$out/$name.log"
exit $rc
