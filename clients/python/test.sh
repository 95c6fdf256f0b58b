#!/usr/bin/env bash
# Builds what the Python client needs, runs its pytest suites against a real server (client tests,
# the consumer-project test that builds, installs and uninstalls the wheel, and the Python
# conformance runner) with JUnit XML in RESULTS_DIR/client-python.xml (read by
# .ci/summarize). A missing toolchain or an abnormal pytest end writes RESULTS_DIR/client-python.error
# instead (never a silent pass). Exits with pytest's status.
#   usage: clients/python/test.sh RESULTS_DIR
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
results="${1:?usage: clients/python/test.sh RESULTS_DIR}"
mkdir -p "$results"
results="$(cd "$results" && pwd)"
rm -f "$results"/client-python.{count,error,xml}
PY=/usr/bin/python3   # Debian's python3-grpcio/python3-protobuf are installed for the system interpreter

fail() { echo "$*" > "$results/client-python.error"; echo "client-python: $*" >&2; exit 1; }

[ -x "$PY" ] || fail "/usr/bin/python3 is missing (apt-get install $(tr '\n' ' ' < "$here/apt-packages.txt"))"
missing=()
"$PY" -c 'import grpc' 2>/dev/null || missing+=(python3-grpcio)
"$PY" -c 'import google.protobuf' 2>/dev/null || missing+=(python3-protobuf)
"$PY" -c 'import pytest' 2>/dev/null || missing+=(python3-pytest)
"$PY" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
"$PY" -c 'import setuptools, wheel' 2>/dev/null || missing+=(python3-setuptools python3-wheel)
"$PY" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v protoc-gen-mypy_grpc >/dev/null || missing+=(mypy-protobuf)
"$PY" -m mypy --version >/dev/null 2>&1 || missing+=(mypy)
if ! "$PY" -c 'import grpc_tools' 2>/dev/null; then
  command -v protoc >/dev/null || missing+=(protobuf-compiler)
  command -v grpc_python_plugin >/dev/null || missing+=(protobuf-compiler-grpc)
fi
[ ${#missing[@]} -eq 0 ] || fail "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]}; full list in clients/python/apt-packages.txt)"
command -v dotnet >/dev/null || fail "dotnet is missing: the tests need the PcieEmu server (src/PcieEmu.Server)"

# Generate the pcieemu.v1 modules (and .pyi) from proto/ into src/ for the in-tree tests and the
# conformance runner (tests/test_package.py builds the wheel itself), build the server once.
"$PY" "$here/codegen.py" >/dev/null || fail "generating Python code from proto/ failed (see above)"
dotnet build "$root/src/PcieEmu.Server" -c Release -nologo -clp:ErrorsOnly -v q >"$results/client-python-build.log" 2>&1 \
  || fail "building src/PcieEmu.Server failed; see $results/client-python-build.log"
export PCIEEMU_SKIP_BUILD=1

cd "$root"
"$PY" -m pytest -q -p no:cacheprovider -rs --junitxml="$results/client-python.xml" \
  clients/python/tests tests/Conformance/python
rc=$?
# pytest: 0 all passed, 1 some failed; anything else (2 interrupted, 3 internal error, 4 usage,
# 5 no tests) or a missing JUnit file (a crashed interpreter) is an abnormal end.
if [ ! -s "$results/client-python.xml" ]; then
  fail "pytest exited $rc without writing results"
fi
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
  fail "pytest exited $rc (2 interrupted, 3 internal error, 4 usage error, 5 no tests collected)"
fi
exit $rc
