#!/usr/bin/env bash
# Builds the TypeScript client and the server, runs the client's tests (among them the consumer
# project that installs the packed tarball) against a real server the tests start, with TAP output in RESULTS_DIR/client-typescript.tap (read by .ci/summarize), or
# writes RESULTS_DIR/client-typescript.error when the toolchain is missing, the build fails or the
# run does not finish. Exits with node --test's status (cancelled tests make it non-zero).
# Usage: clients/typescript/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=client-typescript
rm -f "$out/$name".{count,error,xml,gotest,tap}
fail() { echo "$*" >"$out/$name.error"; echo "$name: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node not found: install Node.js >= 20 with npm (apt-get install nodejs)"
command -v npm >/dev/null || fail "npm not found: install Node.js >= 20 with npm"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node.js >= 20 needed for node --test (found $(node --version))"
command -v dotnet >/dev/null || fail "dotnet not found: the tests need the .NET SDK to build the server"
command -v protoc >/dev/null || fail "protoc not found: the build generates the code from proto/ (apt-get install protobuf-compiler)"

if [ -z "${PCIEEMU_SERVER_DLL:-}" ]; then
  (cd "$root" && dotnet build src/PcieEmu.Server -c Release -nologo -clp:ErrorsOnly) >"$out/$name.build.log" 2>&1 \
    || fail "server build failed (see $out/$name.build.log)"
fi
cd "$here"
# npm ci runs `prepare`: ts-proto generates src/gen/ from proto/, tsc compiles lib/esm and lib/cjs
# (the package; test/package.test.ts packs and installs it). The tests and examples compile to dist/.
npm ci --no-audit --no-fund >>"$out/$name.build.log" 2>&1 || fail "npm ci (with the package build) failed (see $out/$name.build.log)"
# koffi (an optionalDependency: the shared-memory ring maps its file and wakes the futex through it)
# comes from the lockfile with its prebuilt binary; npm skips an optional package that fails to
# install, so check here that it loads rather than let the ring tests fail on it. (A package.json
# without koffi, as the pipeline suite's scratch client, has no ring to test.)
! grep -q '"koffi"' package.json || node -e "require('koffi')" >>"$out/$name.build.log" 2>&1 \
  || fail "koffi (optional dependency, needed by openRing and test/ring.test.ts) did not install or load (see $out/$name.build.log)"
npm run -s build:test >>"$out/$name.build.log" 2>&1 || fail "TypeScript build failed (see $out/$name.build.log)"

# TAP is the result file (.ci/summarize reads it; "# cancelled N" with N > 0 fails the suite).
timeout --foreground 900 node --test --test-concurrency=1 --test-reporter=tap dist/test/*.test.js >"$out/$name.tap" 2>&1
rc=$?
[ $rc -eq 124 ] && fail "node --test did not finish within 900 s (see $out/$name.tap)"
grep -E '^# (tests|pass|fail|cancelled|skipped|todo) ' "$out/$name.tap"
exit $rc
