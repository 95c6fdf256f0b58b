#!/usr/bin/env bash
# tests/vm/vm-test.sh [RESULTS_DIR]: the unmodified Linux igbvf driver, in a QEMU guest, drives an
# emulated 82576 VF that pcie-emu serves over vfio-user. See tests/vm/README.md.
#
#  1. QEMU >= 10.1 and libvfio-user's samples (tests/vm/qemu.sh), the guest (tests/vm/initramfs.sh),
#     pcie-emu and the example PF driver (dotnet build); all cached after the first run.
#  2. Chain check: QEMU attaches libvfio-user's gpio sample; the guest must list its PCI function.
#  3. pcie-emu serve --vfio-user 01:10.0=SOCKET, the PF driver (clients/dotnet/PfDriver) enables
#     2 VFs and answers the VF mailbox, responder.py answers ARP/ICMP on port 0's wire, and the guest
#     boots with VF0 attached: igbvf probes, resets through the mailbox, gets its MAC, brings the
#     link up and pings 10.0.2.2.
#  4. Checks on the guest kernel's own console lines and on what the responder saw; writes
#     RESULTS_DIR/vm-test.count ("PASSED FAILED"), or vm-test.error (could not run), or
#     vm-test.skip (no QEMU >= 10.1 source downloadable).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$HERE/lib.sh"
RESULTS="${1:-$ROOT/artifacts/test-results/vm}"
mkdir -p "$RESULTS" && RESULTS="$(cd "$RESULTS" && pwd)"
rm -f "$RESULTS"/vm-test.{count,error,skip}
BOOT_TIMEOUT="${VMTEST_BOOT_TIMEOUT:-240}"   # seconds for one guest run (TCG, no KVM)
PING_COUNT="${VMTEST_PING_COUNT:-5}"
VF1_FRAMES=3
GUEST_IP=10.0.2.15 PEER_IP=10.0.2.2

error() { echo "$*" > "$RESULTS/vm-test.error"; echo "vm-test: could not run: $*" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pcie-emu-vmtest.XXXXXX")"
chmod 700 "$WORK"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$p" 2>/dev/null
  done
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for FILE PATTERN SECONDS PID: waits until FILE has a line matching PATTERN, or PID dies.
wait_for() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    grep -q -E "$2" "$1" 2>/dev/null && return 0
    [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null && return 1
    sleep 0.2
  done
  return 1
}

t0=$SECONDS
# -- 1. what the test needs ----------------------------------------------------------------------
rc=0; QEMU_DIR="$(timeout 3600 bash "$HERE/qemu.sh" 2> >(tee "$WORK/qemu.log" >&2) | tail -1)" || rc=$?
if [ $rc -eq 2 ]; then
  sleep 0.3   # the tee of qemu.sh's log may still be flushing
  reason="no QEMU >= 10.1 source package could be downloaded from Debian's archive: $(grep -o 'no QEMU.*\|apt-get update.*failed' "$WORK/qemu.log" | tail -1)"
  echo "$reason" > "$RESULTS/vm-test.skip"
  printf '\n*** vm-test SKIPPED: %s ***\n\n' "$reason" >&2
  exit 0
fi
[ -n "$QEMU_DIR" ] && [ -x "$QEMU_DIR/bin/qemu-system-x86_64" ] || error "building QEMU failed (tests/vm/qemu.sh; output above)"
QEMU="$QEMU_DIR/bin/qemu-system-x86_64"
GUEST="$(timeout 600 bash "$HERE/initramfs.sh" | tail -1)"
[ -n "$GUEST" ] && [ -f "$GUEST/initrd.cpio.gz" ] || error "building the guest failed (tests/vm/initramfs.sh; output above)"
vm_need_packages python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc mypy-protobuf
/usr/bin/python3 "$ROOT/clients/python/codegen.py" >/dev/null || error "generating the Python client (clients/python) failed"

SERVER_DLL="${PCIEEMU_SERVER_DLL:-$ROOT/src/PcieEmu.Server/bin/Release/net10.0/pcie-emu.dll}"
PF_DLL="$ROOT/clients/dotnet/PfDriver/bin/Release/net10.0/PfDriver.dll"
VF_DLL="$ROOT/clients/dotnet/VfDriver/bin/Release/net10.0/VfDriver.dll"
if [ -z "${PCIEEMU_SKIP_BUILD:-}" ]; then
  log "building pcie-emu and the example PF and VF drivers"
  for p in src/PcieEmu.Server clients/dotnet/PfDriver clients/dotnet/VfDriver; do
    timeout 900 dotnet build "$ROOT/$p" -c Release -nologo -clp:ErrorsOnly -v q > "$WORK/build.log" 2>&1 \
      || { cp "$WORK/build.log" "$RESULTS/vm-test-build.log"; error "dotnet build $p failed; see $RESULTS/vm-test-build.log"; }
  done
fi
for f in "$SERVER_DLL" "$PF_DLL" "$VF_DLL"; do [ -f "$f" ] || error "missing $f"; done
timeout 60 dotnet "$SERVER_DLL" serve --help 2>&1 | grep -q -- '--vfio-user' \
  || error "this pcie-emu has no 'serve --vfio-user' option"
log "prepared in $((SECONDS - t0)) s: $(head -1 "$QEMU_DIR/VERSION"), guest kernel $(cat "$GUEST/KERNEL")"

QEMU_BASE=("$QEMU" -L "$QEMU_DIR/firmware" -machine q35,memory-backend=mem -nodefaults -m 512M
  -object memory-backend-memfd,id=mem,size=512M,share=on -display none -monitor none -serial stdio
  -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.cpio.gz" -no-reboot)
vfio_user_dev() { printf '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"%s"}}' "$1"; }

PASSED=0 FAILED=0
check() {   # check NAME COMMAND...: one test case
  if "${@:2}"; then PASSED=$((PASSED + 1)); echo "  PASS  $1"; else FAILED=$((FAILED + 1)); echo "  FAIL  $1"; fi
}
has() { grep -q -E "$2" "$1"; }

# -- 2. the chain, with libvfio-user's gpio sample ------------------------------------------------
log "chain check: QEMU + libvfio-user's gpio sample"
"$QEMU_DIR/libvfio-user/bin/gpio-pci-idio-16" "$WORK/gpio.sock" > "$WORK/gpio.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do [ -S "$WORK/gpio.sock" ] && break; sleep 0.1; done
g0=$SECONDS
timeout 120 "${QEMU_BASE[@]}" -append "console=ttyS0 panic=-1 vmtest.mode=list" \
  -device "$(vfio_user_dev "$WORK/gpio.sock")" < /dev/null > "$WORK/gpio-console.log" 2>&1
gpio_rc=$? gpio_wall=$((SECONDS - g0))
cp "$WORK/gpio-console.log" "$RESULTS/vm-test-gpio-console.log"

# -- 3. pcie-emu, the PF driver, the responder, the guest -----------------------------------------
log "starting pcie-emu serve --vfio-user 01:10.0=$WORK/vf0.sock"
mkdir -p "$WORK/pcap"
dotnet "$SERVER_DLL" serve --listen "unix://$WORK/emu.sock" --ram-file "$WORK/ram" --pcap "$WORK/pcap" \
  --vfio-user "01:10.0=$WORK/vf0.sock" > "$WORK/server.log" 2>&1 &
PIDS+=($!); SERVER_PID=$!
for _ in $(seq 1 300); do [ -S "$WORK/emu.sock" ] && break; kill -0 $SERVER_PID 2>/dev/null || break; sleep 0.1; done
[ -S "$WORK/emu.sock" ] || { cp "$WORK/server.log" "$RESULTS/vm-test-server.log"; error "pcie-emu serve did not start; see $RESULTS/vm-test-server.log"; }
TARGET="unix://$WORK/emu.sock"

dotnet "$PF_DLL" --target "$TARGET" --vfs 2 --duration 900 > "$WORK/pf.log" 2>&1 &
PIDS+=($!); PF_PID=$!
wait_for "$WORK/pf.log" 'PF READY' 60 $PF_PID || { cp "$WORK/pf.log" "$RESULTS/vm-test-pf.log"; error "the PF driver did not become ready; see $RESULTS/vm-test-pf.log"; }

/usr/bin/python3 "$HERE/responder.py" --target "$TARGET" --port 0 --ip "$PEER_IP" > "$WORK/responder.log" 2>&1 &
PIDS+=($!); RESP_PID=$!
wait_for "$WORK/responder.log" 'RESPONDER READY' 60 $RESP_PID || { cp "$WORK/responder.log" "$RESULTS/vm-test-responder.log"; error "the responder did not start; see $RESULTS/vm-test-responder.log"; }
for _ in $(seq 1 100); do [ -S "$WORK/vf0.sock" ] && break; sleep 0.1; done
[ -S "$WORK/vf0.sock" ] || { cp "$WORK/server.log" "$RESULTS/vm-test-server.log"; error "no vfio-user socket $WORK/vf0.sock after the VFs were enabled"; }

log "booting the guest with VF0 attached (TCG; timeout $BOOT_TIMEOUT s)"
QEMU_TRACE=()
[ -n "${VMTEST_TRACE:-}" ] && QEMU_TRACE=(-trace 'vfio_user_*' -trace 'vfio_region_*' -D "$WORK/qemu-trace.log")
MAC0="$(sed -n 's/.*PF READY .*macs=\([0-9a-f:]*\),.*/\1/p' "$WORK/pf.log" | head -1)"
b0=$SECONDS
timeout "$BOOT_TIMEOUT" "${QEMU_BASE[@]}" "${QEMU_TRACE[@]}" \
  -append "console=ttyS0 panic=-1 vmtest.ip=$GUEST_IP/24 vmtest.peer=$PEER_IP vmtest.count=$PING_COUNT vmtest.wait_rx=$VF1_FRAMES" \
  -device "$(vfio_user_dev "$WORK/vf0.sock")" < /dev/null > "$WORK/console.log" 2>&1 &
QEMU_PID=$!; PIDS+=($QEMU_PID)
# VF1, driven over gRPC by the example VF driver, once the guest's link is up: it sends VF1_FRAMES
# frames to the guest's MAC through the VMDq switch (the guest waits for them before pinging) and
# must receive the guest's ARP broadcast.
if [ -n "$MAC0" ] && wait_for "$WORK/console.log" 'VMTEST: waiting for' "$BOOT_TIMEOUT" $QEMU_PID; then
  timeout 120 dotnet "$VF_DLL" run --target "$TARGET" --vf 1 --to "$MAC0" --count "$VF1_FRAMES" --receive 1 --timeout 90 \
    > "$WORK/vf1.log" 2>&1 &
  PIDS+=($!); VF1_PID=$!
fi
wait $QEMU_PID; qemu_rc=$? boot_wall=$((SECONDS - b0))
vf1_rc=1; [ -n "${VF1_PID:-}" ] && { wait $VF1_PID; vf1_rc=$?; }
kill -TERM $RESP_PID 2>/dev/null; wait $RESP_PID 2>/dev/null
kill -TERM $PF_PID 2>/dev/null; wait $PF_PID 2>/dev/null
server_alive=0; kill -0 $SERVER_PID 2>/dev/null && server_alive=1
kill -TERM $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null
for f in console.log server.log pf.log vf1.log responder.log qemu-trace.log; do
  [ -f "$WORK/$f" ] && cp "$WORK/$f" "$RESULTS/vm-test-${f}"
done
cp "$WORK"/pcap/*.pcapng "$RESULTS/" 2>/dev/null

# -- 4. verdict -------------------------------------------------------------------------------------
C="$WORK/console.log" R="$WORK/responder.log"
echo "vm-test checks (guest console: $RESULTS/vm-test-console.log):"
check "chain: QEMU attached libvfio-user's gpio sample and the guest enumerated it (494f:0dc8)" \
  has "$WORK/gpio-console.log" 'VMTEST: pci .* 0x494f:0x0dc8'
check "QEMU ran the guest to the end (exit 0, no timeout)" test "$qemu_rc" -eq 0
check "the guest sees the VF as 8086:10ca" has "$C" 'VMTEST: pci .* 0x8086:0x10ca'
check "igbvf probed the VF (kernel: 'Intel(R) 82576 Virtual Function')" has "$C" 'igbvf [0-9a-f:.]+: Intel\(R\) 82576 Virtual Function'
check "igbvf got VF0's MAC from the PF driver through the mailbox (kernel: 'Address: ${MAC0:-?}')" has "$C" "igbvf [0-9a-f:.]+: Address: ${MAC0:-none}"
check "igbvf's resets through the mailbox succeeded (no 'PF still in reset state' / 'PF still resetting')" \
  eval "! grep -q -E 'igbvf .*PF still (in reset state|resetting)' '$C'"
check "the link came up (kernel: 'Link is Up 1000 Mbps Full Duplex')" has "$C" 'igbvf [0-9a-f:.]+: Link is Up 1000 Mbps Full Duplex'
check "MSI-X through eventfds: the guest's igbvf RX vector fired (/proc/interrupts)" \
  has "$C" 'VMTEST: irq [1-9][0-9]* .*-rx-0'
check "the guest answered ARP/ICMP: ping statistics with 0% packet loss" has "$C" "$PING_COUNT packets transmitted, $PING_COUNT packets received, 0% packet loss"
check "the guest's ARP request and echo requests appeared on the wire (CaptureFrames)" \
  has "$R" "RESPONDER .*arp_requests=[1-9][0-9]* .*echo_requests=$PING_COUNT "
check "every reply injected on the wire was accepted by the NIC" has "$R" 'RESPONDER .*rejected=0$'
pcap="$(/usr/bin/python3 "$HERE/pcapcount.py" "$WORK/pcap/pcie-emu-port0.pcapng" "${MAC0:-00:00:00:00:00:00}" 2>&1)"
echo "  pcap port 0: $pcap"
check "the pcap of port 0 holds both directions (guest's ARP request + $PING_COUNT echo requests, the injected replies)" \
  eval "echo '$pcap' | grep -q -E '^arp_requests=[1-9][0-9]* arp_replies=[1-9][0-9]* echo_requests=$PING_COUNT echo_replies=$PING_COUNT\$'"
check "VF1 -> guest through the VMDq switch: the guest received VF1's $VF1_FRAMES frames before pinging" \
  has "$C" "VMTEST: received ([$VF1_FRAMES-9]|[1-9][0-9]+) frames before ping"
check "guest -> VF1 through the VMDq switch: VF1 (example VF driver over gRPC) received the guest's broadcast" \
  eval "[ $vf1_rc -eq 0 ] && grep -q 'VF DONE sent=$VF1_FRAMES received=[1-9]' '$WORK/vf1.log'"
P="$WORK/pf.log"
check "the PF driver answered igbvf's VF_SET_MULTICAST, MAC_FILTER_CLR and VF_SET_LPE with ACK" \
  eval "grep -q 'PF: VF 0 VF_SET_MULTICAST .*-> ACK' '$P' && grep -q 'PF: VF 0 VF_SET_MAC_ADDR|MAC_FILTER_CLR .*-> ACK' '$P' && grep -q 'PF: VF 0 VF_SET_LPE .*-> ACK' '$P'"
check "the PF driver refused nothing igbvf sent (no NACK / 'refused' / 'not supported' line for VF 0)" \
  eval "! grep -E 'PF: VF 0 .*(NACK|refused|not supported)' '$P'"
check "pcie-emu was still running when the guest powered off" test "$server_alive" -eq 1

boot="$(sed -n 's/.*VMTEST: init uptime \([0-9.]*\).*/\1/p' "$C" | head -1)"
rtt="$(grep -o 'round-trip min/avg/max = [0-9./]* ms' "$C" | head -1)"
gpio_boot="$(sed -n 's/.*VMTEST: init uptime \([0-9.]*\).*/\1/p' "$WORK/gpio-console.log" | head -1)"
echo "timings: gpio guest ${gpio_boot:-?} s to /init (${gpio_wall} s wall); VF guest ${boot:-?} s to /init, ${boot_wall} s wall; ping ${rtt:-no replies}; whole test $((SECONDS - t0)) s"
echo "$PASSED $FAILED" > "$RESULTS/vm-test.count"
if [ "$FAILED" -eq 0 ]; then echo "vm-test: PASSED ($PASSED passed, 0 failed)"; else
  echo "vm-test: FAILED ($PASSED passed, $FAILED failed); logs: $RESULTS/vm-test-*.log"
  echo "--- guest console (last 40 lines) ---"; tail -40 "$C" 2>/dev/null
  echo "--- pcie-emu (last 20 lines) ---"; tail -20 "$WORK/server.log" 2>/dev/null
fi
[ "$FAILED" -eq 0 ]
