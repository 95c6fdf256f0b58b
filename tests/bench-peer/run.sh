#!/usr/bin/env bash
# `make bench-peer`: PcieEmu's per-access cost beside its peer, in one run, alternating.
#   floor            bare C echo over a Unix socketpair (16 B ping-pong): the socket floor here
#   lvu-read         libvfio-user's gpio sample server (C): REGION_READ 4 B of config, our C client
#   lvu-write        libvfio-user: REGION_WRITE 4 B of config, no-reply (posted), then a read fence
#   emu-unary        PcieEmu ConfigService.ReadConfig over gRPC (C++ client, Unix socket served by
#                    Kestrel: --unix-server kestrel)
#   emu-transact     PcieEmu SessionService.Transact ping-pong, 1 read per message (C++ client, Kestrel)
#   emu-direct-unary    the same ReadConfig on a second server with --unix-server direct (the default:
#                       PcieEmu's own HTTP/2 loop, the handler on the connection's thread, one send)
#   emu-direct-transact the same Transact ping-pong on that server
#   emu-direct-transact-1t  the same ping-pong on the raw gRPC stream from one client thread (Write,
#                       then Read): the server's side without the C++ Session API's receiver thread
#   emu-vfu-read     PcieEmu's vfio-user endpoint (serve --vfio-user): REGION_READ, same C client
#   emu-vfu-write    PcieEmu's vfio-user endpoint: posted REGION_WRITE, same C client
#   ring-read        PcieEmu shared-memory ring: config read round trip (C++ client)
#   ring-write       PcieEmu shared-memory ring: unbatched posted 4 B RAM writes, then a read fence
# Prints, per workload, the median over the rounds of p50/p99 (µs), ops/s, client and server CPU
# per op (µs; server = the serving process's utime+stime over the workload / ops), and ratios to
# libvfio-user (p50 and server CPU to lvu-read; ops/s to lvu-write). Figures are printed, never judged.
#
# The peer comes from tests/vm/qemu.sh (QEMU's Debian source bundles libvfio-user; built once and
# cached in ~/.cache/pcie-emu). When no QEMU source can be had, the run says so loudly: in a
# results directory it writes bench-peer.skip (see .ci/summarize) and exits 0.
# Usage: tests/bench-peer/run.sh [--tiny] [RESULTS_DIR]   (--tiny: 1 round of 2000 ops, for make test)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ROUNDS=${BENCH_ROUNDS:-3} N=${BENCH_OPS:-20000}
if [ "${1:-}" = "--tiny" ]; then ROUNDS=1 N=2000; shift; fi
OUT=${1:-}
NAME=bench-peer
if [ -n "$OUT" ]; then mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd); rm -f "$OUT/$NAME".{count,error,skip}; fi
log() { echo "bench-peer: $*" >&2; }
fail() { log "$*"; [ -n "$OUT" ] && echo "$*" >"$OUT/$NAME.error"; exit 1; }
skip() { log "SKIPPED: $*"; [ -n "$OUT" ] && echo "$*" >"$OUT/$NAME.skip"; exit 0; }

for tool in cc cmake python3 dotnet; do command -v $tool >/dev/null || fail "$tool not found (apt-get install $(tr '\n' ' ' <"$HERE/apt-packages.txt"))"; done

# 1. The peer: libvfio-user's gpio sample server, from the QEMU build cache (built when missing).
qemu_dir=$(bash "$ROOT/tests/vm/qemu.sh" | tail -n 1); rc=$?   # pipefail: qemu.sh's status
[ "$rc" = 2 ] && skip "libvfio-user (the peer) cannot be built: no QEMU >= 10.1 source could be downloaded (tests/vm/qemu.sh); PcieEmu's own figures were not taken either"
[ "$rc" = 0 ] || fail "tests/vm/qemu.sh failed (exit $rc): the peer could not be built"
GPIO="$qemu_dir/libvfio-user/bin/gpio-pci-idio-16"
[ -x "$GPIO" ] || fail "$GPIO missing from the QEMU cache (remove $qemu_dir to rebuild it)"

# 2. Our programs: the C client, the server, the C++ client's bench.
WORK=$(mktemp -d /tmp/pcie-emu-bench-peer.XXXXXX)
chmod 700 "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cc -O2 -Wall -o "$WORK/peer" "$HERE/peer.c" || fail "building tests/bench-peer/peer.c failed"
(cd "$ROOT" && dotnet build src/PcieEmu.Server -c Release -nologo -clp:ErrorsOnly >"$WORK/server-build.log" 2>&1) \
  || fail "server build failed: $(tail -n 5 "$WORK/server-build.log")"
build="$ROOT/clients/cpp/build"
{ cmake -S "$ROOT/clients/cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release && cmake --build "$build" -j "${JOBS:-2}" --target pcieemu_peer_bench; } \
  >"$WORK/cpp-build.log" 2>&1 || fail "C++ client build failed: $(tail -n 5 "$WORK/cpp-build.log")"
BENCH="$build/pcieemu_peer_bench"

# 3. The servers: PcieEmu (gRPC on a private Unix socket served by Kestrel, PF0 over vfio-user; its runtime
#    directory, with the RAM and ring files, inside WORK) and the peer.
(cd "$WORK" && exec env -u XDG_RUNTIME_DIR TMPDIR="$WORK" dotnet "$ROOT/src/PcieEmu.Server/bin/Release/net10.0/pcie-emu.dll" serve \
  --listen "unix://$WORK/emu.sock" --unix-server kestrel --vfio-user "01:00.0=$WORK/vfu.sock" >"$WORK/server.log" 2>&1) &
EMU=$!; pids+=($EMU)
# A second PcieEmu with its Unix socket on the direct loop (its own process: its CPU is measured alone).
(cd "$WORK" && exec env -u XDG_RUNTIME_DIR TMPDIR="$WORK" dotnet "$ROOT/src/PcieEmu.Server/bin/Release/net10.0/pcie-emu.dll" serve \
  --listen "unix://$WORK/direct.sock" --unix-server direct >"$WORK/direct.log" 2>&1) &
DIRECT=$!; pids+=($DIRECT)
"$GPIO" "$WORK/gpio.sock" >"$WORK/gpio.log" 2>&1 &
LVU=$!; pids+=($LVU)
for _ in $(seq 200); do [ -S "$WORK/emu.sock" ] && [ -S "$WORK/vfu.sock" ] && [ -S "$WORK/gpio.sock" ] && grep -q "Listening on" "$WORK/direct.log" && break; sleep 0.1; done
[ -S "$WORK/emu.sock" ] || fail "pcie-emu serve did not start: $(tail -n 5 "$WORK/server.log")"
grep -q "Listening on" "$WORK/direct.log" || fail "pcie-emu serve --unix-server direct did not start: $(tail -n 5 "$WORK/direct.log")"
[ -S "$WORK/gpio.sock" ] || fail "the libvfio-user sample did not start: $(tail -n 5 "$WORK/gpio.log")"
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# One workload: NAME SERVER_PID COMMAND... ; appends "name round p50 p99 ops client_cpu server_cpu" to results.
run() {
  local name=$1 spid=$2; shift 2
  local before after line
  before=$(cpu_ticks "$spid")
  line=$("$@" 2>"$WORK/$name.err" | grep '^RESULT') || fail "$name failed: $(tail -n 3 "$WORK/$name.err")"
  after=$(cpu_ticks "$spid")
  set -- $line
  local server=${6:-}
  [ "$spid" != - ] && server=$(python3 -c "print(f'{($after - $before) * 1e6 / $TCK / $N:.2f}')")
  echo "$name $round $2 $3 $4 $5 ${server:--}" >>"$WORK/results"
  log "round $round $name: p50 $2 µs, p99 $3 µs, $4 ops/s, client $5 µs/op, server ${server:--} µs/op"
}

: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  run floor - "$WORK/peer" floor "$N"
  run lvu-read "$LVU" "$WORK/peer" read "$WORK/gpio.sock" "$N"
  run lvu-write "$LVU" "$WORK/peer" write "$WORK/gpio.sock" "$N" 0x3c
  run emu-unary "$EMU" "$BENCH" "unix://$WORK/emu.sock" unary "$N"
  run emu-transact "$EMU" "$BENCH" "unix://$WORK/emu.sock" transact "$N"
  run emu-direct-unary "$DIRECT" "$BENCH" "unix://$WORK/direct.sock" unary "$N"
  run emu-direct-transact "$DIRECT" "$BENCH" "unix://$WORK/direct.sock" transact "$N"
  run emu-direct-transact-1t "$DIRECT" "$BENCH" "unix://$WORK/direct.sock" transact-1t "$N"
  run emu-vfu-read "$EMU" "$WORK/peer" read "$WORK/vfu.sock" "$N"
  run emu-vfu-write "$EMU" "$WORK/peer" write "$WORK/vfu.sock" "$N" 0x3c
  run ring-read "$EMU" "$BENCH" "unix://$WORK/emu.sock" ring-read "$N"
  run ring-write "$EMU" "$BENCH" "unix://$WORK/emu.sock" ring-write "$N"
done
# Idle: the server's CPU over 2 s with no ring open, then over 2 s with a ring open and idle
# (ring-idle holds it; its first line says the ring is open, the measurement starts after a 0.2 s settle).
sleep 0.2
idle0=$(cpu_ticks "$EMU"); sleep 2; idle1=$(cpu_ticks "$EMU")
IDLE_NORING=$(( (idle1 - idle0) * 1000 / TCK ))
coproc IDLE { "$BENCH" "unix://$WORK/emu.sock" ring-idle 2600; }
read -r ready <&"${IDLE[0]}" || fail "ring-idle did not start"
sleep 0.2
idle0=$(cpu_ticks "$EMU"); sleep 2; idle1=$(cpu_ticks "$EMU")
IDLE_RING=$(( (idle1 - idle0) * 1000 / TCK ))
wait "$IDLE_PID" 2>/dev/null
log "idle server CPU over 2 s: ${IDLE_NORING} ms without a ring, ${IDLE_RING} ms with an idle ring open"

python3 - "$WORK/results" "$ROUNDS" "$N" "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$IDLE_NORING" "$IDLE_RING" <<'EOF' || fail "the report could not be computed"
import statistics, sys
path, rounds, n, cores, load, idle, idle_ring = sys.argv[1:]
rows = {}
for line in open(path):
    name, _, *vals = line.split()
    rows.setdefault(name, []).append([None if v == "-" else float(v) for v in vals])
def med(name, i):
    vs = [r[i] for r in rows[name] if r[i] is not None]
    return statistics.median(vs) if vs else None
what = {
    "floor": "bare C echo, Unix socketpair, 16 B ping-pong",
    "lvu-read": "libvfio-user gpio sample: REGION_READ 4 B config",
    "lvu-write": "libvfio-user gpio sample: posted REGION_WRITE 4 B (no reply)",
    "emu-unary": "PcieEmu gRPC ReadConfig unary, --unix-server kestrel (C++)",
    "emu-transact": "PcieEmu gRPC Transact ping-pong, 1 read/message, --unix-server kestrel (C++)",
    "emu-direct-unary": "PcieEmu gRPC ReadConfig unary, direct loop (the default; C++)",
    "emu-direct-transact": "PcieEmu gRPC Transact ping-pong, direct loop (the default; C++)",
    "emu-direct-transact-1t": "PcieEmu gRPC Transact ping-pong, direct loop, one client thread (raw C++ stream)",
    "emu-vfu-read": "PcieEmu vfio-user endpoint: REGION_READ 4 B config",
    "emu-vfu-write": "PcieEmu vfio-user endpoint: posted REGION_WRITE 4 B",
    "ring-read": "PcieEmu shared-memory ring: config read round trip (C++)",
    "ring-write": "PcieEmu shared-memory ring: unbatched posted 4 B writes (C++)",
}
lp50, lcpu, lops = med("lvu-read", 0), med("lvu-read", 4), med("lvu-write", 2)
print(f"\n{rounds} round(s) x {n} ops, alternating; {cores} cores, load average {load} at the end; medians over the rounds")
print("\n| workload | p50 µs | p99 µs | ops/s | client CPU µs/op | server CPU µs/op | p50 / lvu | server CPU / lvu | ops/s / lvu |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
f = lambda v, p=1: "—" if v is None else f"{v:.{p}f}"
for name in what:
    if name not in rows: continue
    p50, p99, ops, ccpu, scpu = (med(name, i) for i in range(5))
    write = name.endswith("write")
    # A baseline of 0 (CPU below the clock tick in a tiny run) or missing gives no ratio, not a crash.
    ratio = lambda a, b: "n/a" if a is None or not b else f"{a / b:.2f}x"
    r50 = "" if write or name == "floor" else ratio(p50, lp50)
    rcpu = "" if write or scpu is None or name == "floor" else ratio(scpu, lcpu)
    rops = ratio(ops, lops) if write else ""
    print(f"| {what[name]} | {f(p50, 2)} | {f(p99, 2)} | {ops:,.0f} | {f(ccpu, 2)} | {f(scpu, 2)} | {r50} | {rcpu} | {rops} |")
print(f"\nIdle PcieEmu server over 2 s: {idle} ms of CPU with no ring open, {idle_ring} ms with one idle ring open.")
EOF
[ -n "$OUT" ] && echo "1 0" >"$OUT/$NAME.count"
exit 0
