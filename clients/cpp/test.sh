#!/usr/bin/env bash
# Configures and builds the C++ client with CMake (code generated from ../../proto at build
# time), builds the server, runs the GoogleTest binary (ctest's one test) against a real server
# the tests start, and leaves GoogleTest's XML in RESULTS_DIR/client-cpp.xml (read by
# .ci/summarize), or writes RESULTS_DIR/client-cpp.error when the toolchain is missing, the build
# fails or the test binary crashes. Exits with the test binary's status.
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

# The one GoogleTest binary (ctest's only test) runs directly under a timeout, its output to a
# file: ctest reads the output through a pipe and would wait (up to its timeout) for the server a
# crashed binary never stopped. GoogleTest writes its XML only at the end: a crashed binary (e.g.
# a segfault) leaves none, and its status is 128 + the signal.
rm -f "$build/test-results.xml" "$out/$name.xml"
(cd "$build" && timeout --foreground -k 10 600 ./pcieemu_tests --gtest_output=xml:"$out/$name.xml") >"$out/$name.log" 2>&1
rc=$?
if [ $rc -ne 0 ] && [ ! -s "$out/$name.xml" ]; then
  case $rc in
    124) why="timed out after 600 s" ;;
    13[0-9]|14[0-9]) why="killed by signal $((rc - 128))$([ $rc -eq 139 ] && echo ' (SIGSEGV: a segfault)')" ;;
    *) why="exited $rc" ;;
  esac
  fail "the C++ test binary $why and wrote no results: it crashed (see $out/$name.log)"
fi
tail -3 "$out/$name.log"
exit $rc
