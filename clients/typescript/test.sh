#!/usr/bin/env bash
# Builds the TypeScript client and the server, runs the client's tests against a real server the
# tests start, and writes RESULTS_DIR/client-typescript.count ("PASSED FAILED"), or
# RESULTS_DIR/client-typescript.error when the toolchain is missing or the build fails.
# Usage: clients/typescript/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=client-typescript
rm -f "$out/$name.count" "$out/$name.error"
fail() { echo "$*" >"$out/$name.error"; echo "$name: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node not found: install Node.js >= 20 with npm (apt-get install nodejs)"
command -v npm >/dev/null || fail "npm not found: install Node.js >= 20 with npm"
major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || fail "Node.js >= 20 needed for node --test (found $(node --version))"
command -v dotnet >/dev/null || fail "dotnet not found: the tests need the .NET SDK to build the server"

if [ -z "${PCIEEMU_SERVER_DLL:-}" ]; then
  (cd "$root" && dotnet build src/PcieEmu.Server -c Release -nologo -clp:ErrorsOnly) >"$out/$name.build.log" 2>&1 \
    || fail "server build failed (see $out/$name.build.log)"
fi
cd "$here"
npm ci --no-audit --no-fund >>"$out/$name.build.log" 2>&1 || fail "npm ci failed (see $out/$name.build.log)"
npm run -s build >>"$out/$name.build.log" 2>&1 || fail "TypeScript build failed (see $out/$name.build.log)"

timeout 900 node --test --test-concurrency=1 --test-reporter=tap dist/test/*.test.js >"$out/$name.tap" 2>&1
pass=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out/$name.tap" | tail -1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out/$name.tap" | tail -1)
[ -n "$pass" ] && [ -n "$failed" ] || fail "node --test produced no summary (see $out/$name.tap)"
echo "$pass $failed" >"$out/$name.count"
echo "$name: $pass passed, $failed failed"
[ "$failed" -eq 0 ]
