#!/usr/bin/env bash
# Mutation test of the test pipeline itself. Against a scratch copy of the pipeline scripts
# (.ci/run-suites, .ci/summarize, .ci/dotnet-suite, clients/{cpp,go,typescript}/test.sh) and tiny
# scratch projects (tests/pipeline/scratch), it shows that the pipeline reports success for healthy
# suites and failure for: a .NET test host that crashes (Environment.FailFast), a C++ test binary
# that segfaults, a Go panic outside any test, a go test -timeout panic, a node --test run with a
# cancelled test, the result files of those crashes alone (exit status 0), a missing suite, a
# timeout, a non-zero exit with all-passing counters, a suite that writes nothing, and a suite
# that could not run. It also checks that tests/suites.txt lists every .NET test project and
# every clients/*/test.sh.
# Writes RESULTS_DIR/pipeline.tap (one line per check). Build outputs of the scratch projects are
# kept under artifacts/pipeline/ so that later runs are incremental.
# Usage: tests/pipeline/test.sh RESULTS_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:?usage: tests/pipeline/test.sh RESULTS_DIR}
mkdir -p "$out" && out=$(cd "$out" && pwd)
name=pipeline
rm -f "$out/$name".{tap,error}
fail() { echo "$*" >"$out/$name.error"; echo "$name: $*" >&2; exit 1; }
scratch=$root/artifacts/pipeline
runs=$scratch/runs   # outside RESULTS_DIR: the scratch results must not count as this suite's
rm -rf "$runs" && mkdir -p "$runs"

# Copies only what changed, so the scratch builds stay incremental.
put() { mkdir -p "$(dirname "$2")"; cmp -s "$1" "$2" || cp "$1" "$2"; }
for f in .ci/run-suites .ci/summarize .ci/dotnet-suite \
         clients/cpp/test.sh clients/cpp/apt-packages.txt \
         clients/go/test.sh clients/go/env.sh clients/go/offline.sh clients/go/apt-packages.txt \
         clients/typescript/test.sh; do
  put "$root/$f" "$scratch/$f"
done
(cd "$here/scratch" && find . -type f) | while read -r f; do
  case $f in ./dotnet/*) dest=$scratch/$f ;; *) dest=$scratch/clients/$f ;; esac
  put "$here/scratch/$f" "$dest"
done
mkdir -p "$scratch/tests/Conformance"
ln -sfn "$root/tests/Conformance/cases" "$scratch/tests/Conformance/cases"

"${DOTNET:-dotnet}" build "$scratch/dotnet" -c "${CONFIG:-Release}" -nologo -clp:ErrorsOnly >"$out/$name.build.log" 2>&1 \
  || fail "the scratch .NET test project did not build (see $out/$name.build.log)"

# The client scripts must not build the real server: the scratch tests do not use it.
export PCIEEMU_SERVER_DLL=${PCIEEMU_SERVER_DLL:-$root/src/PcieEmu.Server/bin/Release/net10.0/pcie-emu.dll}

cat >"$scratch/suites.txt" <<'EOF'
scratch-dotnet      300  .ci/dotnet-suite dotnet "$RESULTS_DIR"
client-cpp          300  clients/cpp/test.sh "$RESULTS_DIR"
client-go           300  clients/go/test.sh "$RESULTS_DIR"
client-typescript   300  clients/typescript/test.sh "$RESULTS_DIR"
EOF

n=0 passes=0
tap=()
check() { # check DESCRIPTION CONDITION-RESULT(0 ok) REASON
  n=$((n + 1))
  if [ "$2" -eq 0 ]; then passes=$((passes + 1)); tap+=("ok $n - $1")
  else tap+=("not ok $n - $1" "  ---" "  error: '${3//\'/}'" "  ..."); fi
}
# run LABEL SUITES_FILE [NAME...]: the scratch pipeline's run-suites; its output in $runs/LABEL.out
run() {
  local label=$1 suites=$2; shift 2
  (cd "$scratch" && .ci/run-suites "$runs/$label" "$suites" "$@") >"$runs/$label.out" 2>&1
  echo $? >"$runs/$label.rc"
}
rc() { cat "$runs/$1.rc"; }
last() { tail -n 1 "$runs/$1.out"; }
has() { grep -qE -- "$2" "$runs/$1.out"; }
# failed LABEL SUITE PATTERN: the run failed, its last line counts a failure, and the reason is given
failed() {
  local why=""
  [ "$(rc "$1")" -ne 0 ] || why="exit status 0"
  last "$1" | grep -qE '^[0-9]+ passed, [1-9][0-9]* failed$' || why="$why; last line '$(last "$1")'"
  has "$1" "^FAILED suite: $2: .*$3" || why="$why; no 'FAILED suite: $2: ...$3' line (see $runs/$1.out)"
  [ -z "$why" ]; local r=$?
  echo "$why"; return $r
}

# 1. Healthy scratch suites: success, exact counts, skipped test listed, conformance runs counted.
run healthy suites.txt
why=""
[ "$(rc healthy)" -eq 0 ] || why="exit $(rc healthy)"
[ "$(last healthy)" = "11 passed, 0 failed" ] || why="$why; last line '$(last healthy)' (expected '11 passed, 0 failed')"
has healthy '^skipped: scratch-dotnet: Scratch\.ScratchTests\.Skipped \(scratch: proves' || why="$why; the skipped test is not listed"
has healthy '^conformance: 1 distinct cases, 2 case runs by 2 runners' || why="$why; no conformance line"
for s in scratch-dotnet client-cpp client-go client-typescript; do
  has healthy "^$s +[0-9]+ +0 .* ok$" || why="$why; no ok row for $s"
done
check "healthy scratch suites: exit 0, '11 passed, 0 failed', skipped test listed, conformance runs counted" "$([ -z "$why" ]; echo $?)" "$why (see $runs/healthy.out)"

# 2-5. Each crash, in the real runner scripts, makes the pipeline fail.
SCRATCH_MODE=crash run dotnet-crash suites.txt scratch-dotnet
why=$(failed dotnet-crash scratch-dotnet 'Test host process crashed'); check "a .NET test host killed by Environment.FailFast fails the run" $? "$why"
SCRATCH_MODE=crash run cpp-segfault suites.txt client-cpp
why=$(failed cpp-segfault client-cpp 'SIGSEGV'); has cpp-segfault '^== suite client-cpp: ending 1 leftover' || why="$why; the child left behind was not ended"
check "a segfaulting C++ test binary fails the run; the child it left is ended" "$([ -z "$why" ]; echo $?)" "$why"
SCRATCH_MODE=crash run go-panic suites.txt client-go
why=$(failed go-panic client-go 'panic'); has go-panic '^== suite client-go: ending 1 leftover' || why="$why; the child left behind was not ended"
check "a Go panic outside any test fails the run; the child it left is ended" "$([ -z "$why" ]; echo $?)" "$why"
SCRATCH_MODE=timeout PCIEEMU_GO_TEST_TIMEOUT=2s run go-timeout suites.txt client-go
why=$(failed go-timeout client-go 'test timed out'); check "a go test -timeout panic fails the run" $? "$why"
SCRATCH_MODE=crash run ts-cancelled suites.txt client-typescript
why=$(failed ts-cancelled client-typescript 'cancelled'); check "a node --test run with a cancelled test fails the run" $? "$why"

# 6. The crashes' result files alone fail the run, even when the runner exits 0.
cat >"$scratch/suites-files.txt" <<EOF
files-dotnet      60  cp "$runs/dotnet-crash/scratch-dotnet/"*.trx "\$RESULTS_DIR/"
files-cpp         60  cp "$runs/cpp-segfault/client-cpp/"* "\$RESULTS_DIR/"
files-go          60  cp "$runs/go-panic/client-go/client-go.gotest" "\$RESULTS_DIR/"
files-typescript  60  cp "$runs/ts-cancelled/client-typescript/client-typescript.tap" "\$RESULTS_DIR/"
EOF
run files suites-files.txt
why=$(failed files files-dotnet 'aborted'); check "an aborted trx fails the suite although the runner exited 0" $? "$why"
why=$(failed files files-cpp 'could not run: the C\+\+ test binary'); check "a C++ crash recorded in client-cpp.error fails the suite although the runner exited 0" $? "$why"
why=$(failed files files-go 'panic:'); check "a panic in go test output fails the suite although the runner exited 0" $? "$why"
why=$(failed files files-typescript 'cancelled'); check "'# cancelled 1' in TAP fails the suite although the runner exited 0" $? "$why"

# 7. Abnormal ends without any test failing; a failing suite does not stop the ones after it.
cat >"$scratch/suites-odd.txt" <<'EOF'
liar        60  echo "3 0" >"$RESULTS_DIR/liar.count"; exit 3
sleepy       2  sleep 60; echo "1 0" >"$RESULTS_DIR/sleepy.count"
silent      60  true
broken      60  echo "toolchain missing: apt-get install something" >"$RESULTS_DIR/broken.error"
fine        60  echo "4 0" >"$RESULTS_DIR/fine.count"
EOF
start=$SECONDS
run odd suites-odd.txt
why=$(failed odd liar 'exited 3 although no test failed'); check "a non-zero exit with all-passing counters fails the run" $? "$why"
why=$(failed odd sleepy 'timed out'); [ $((SECONDS - start)) -lt 50 ] || why="$why; the timeout did not stop the suite"
check "a suite past its timeout is stopped and fails the run" "$([ -z "$why" ]; echo $?)" "$why"
why=$(failed odd silent 'no test ran'); check "a suite that writes no results fails the run" $? "$why"
why=$(failed odd broken 'could not run: toolchain missing'); check "a suite that could not run fails the run" $? "$why"
why=""; has odd '^fine +4 +0 .* ok$' || why="the suite after the failing ones did not run or is not ok"
[ "$(last odd)" = "7 passed, 4 failed" ] || why="$why; last line '$(last odd)' (expected '7 passed, 4 failed')"
check "all suites run after failures, each abnormal suite counts one failure" "$([ -z "$why" ]; echo $?)" "$why"

# 8. A cancelled run (SIGTERM, as a CI runner cancels) stops the running suite, fails the run and
#    still prints the summary; the suites after it are missing.
cat >"$scratch/suites-cancel.txt" <<'EOF'
first     60  echo "1 0" >"$RESULTS_DIR/first.count"
sleeper  120  sleep 100
after     60  echo "1 0" >"$RESULTS_DIR/after.count"
EOF
start=$SECONDS
(cd "$scratch" && exec .ci/run-suites "$runs/cancel" suites-cancel.txt) >"$runs/cancel.out" 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q '^== suite sleeper (' "$runs/cancel.out" 2>/dev/null && break; sleep 0.1; done
sleep 1
kill -TERM "$pid"
wait "$pid"; echo $? >"$runs/cancel.rc"
why=$(failed cancel sleeper 'cancelled'); [ $((SECONDS - start)) -lt 60 ] || why="$why; the running suite was not stopped"
has cancel '^FAILED suite: after: missing' || why="$why; the suite after the cancelled one is not reported missing"
check "a cancelled run stops the running suite and fails, the rest reported missing" "$([ -z "$why" ]; echo $?)" "$why"

# 9. A suite on the list that never ran fails the run.
{ cat "$scratch/suites.txt"; echo 'never-ran   60  true'; } >"$scratch/suites-missing.txt"
(cd "$scratch" && python3 .ci/summarize "$runs/healthy" --suites suites-missing.txt) >"$runs/missing.out" 2>&1
echo $? >"$runs/missing.rc"
why=$(failed missing never-ran 'missing'); check "an expected suite that did not run fails the run" $? "$why"

# 10. The real list names every .NET test project and every client and pipeline runner.
why=""
for p in "$root"/tests/*/*.Tests.csproj; do
  d=tests/$(basename "$(dirname "$p")")
  grep -qE "^[a-z0-9-]+ +[0-9]+ +\.ci/dotnet-suite $d " "$root/tests/suites.txt" || why="$why $d"
done
for t in "$root"/clients/*/test.sh "$root"/tests/pipeline/test.sh; do
  grep -qF " ${t#"$root"/} " "$root/tests/suites.txt" || why="$why ${t#"$root"/}"
done
check "tests/suites.txt lists every .NET test project and every test.sh" "$([ -z "$why" ]; echo $?)" "not in tests/suites.txt:$why"

{ printf '%s\n' "${tap[@]}"; echo "1..$n"; echo "# tests $n"; echo "# pass $passes"; echo "# fail $((n - passes))"
  echo "# cancelled 0"; echo "# skipped 0"; echo "# todo 0"; } >"$out/$name.tap"
cat "$out/$name.tap"
[ "$passes" -eq "$n" ]
