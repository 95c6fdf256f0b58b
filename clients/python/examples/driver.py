#!/usr/bin/python3
"""Example driver: enumerate, enable 2 VFs on PF0, read a VF's config space through non-ARI
routing (VFs on bus 2) and ARI routing (VFs on bus 1); then drive the NIC: program PF0 for VMDq
with loopback, set up a TX ring on VF0 and an RX ring on VF1 in the mapped RAM file, send one
frame VF0 -> VF1 (seen by polling the RX write-back and as VF1's MSI-X interrupt), one frame
VF0 -> the wire (seen by CaptureFrames) and inject one frame from the wire to VF1.

    /usr/bin/python3 clients/python/examples/driver.py --target tcp://127.0.0.1:50551
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pcieemu  # noqa: E402
from pcieemu import igb, regs  # noqa: E402

PF0 = "01:00.0"
VF_MACS = [igb.mac("02:00:00:00:10:00"), igb.mac("02:00:00:00:10:01")]
PEER_MAC = igb.mac("02:00:00:00:99:99")   # a station on the wire (not in any RAR entry)


def show_vf(emu, vf):
    cls = emu.cfg_read32(vf, regs.CLASS_REVISION)
    caps = ", ".join(f"{cid:#04x}@{off:#x}" for cid, off in emu.capabilities(vf))
    ext = ", ".join(f"{cid:#06x}@{off:#x}" for cid, _, off in emu.ext_capabilities(vf))
    print(f"    {vf} (rid {int(vf):#06x}): class {cls >> 8:06x} rev {cls & 0xff:02x}; caps [{caps}]; ext [{ext}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=None, help="tcp://host:port or unix:///path")
    ap.add_argument("--token-file", default=None,
                    help="TCP: the server's token file (default: $PCIEEMU_TOKEN, else the default token file)")
    args = ap.parse_args()
    with pcieemu.connect(args.target, token_file=args.token_file) as emu:
        print(f"connected to {emu.target}")
        emu.reset()
        print("functions:")
        for f in emu.list_functions():
            print(f"  {pcieemu.format_bdf(f.rid)} {f.vendor_id:04x}:{f.device_id:04x} class {f.class_code:06x}"
                  + "".join(f" BAR{b.index}={b.address:#x}/{b.size:#x}" for b in f.bars))

        for ari in (False, True):
            st = emu.enable_vfs(PF0, 2, ari=ari)
            print(f"enabled {st.num_vfs} VFs on {st.pf} with ARI {'on' if st.ari else 'off'}: "
                  f"First VF Offset {st.first_vf_offset:#x}, stride {st.vf_stride}, VF device {st.vf_device_id:04x}")
            for vf in st.vfs:
                show_vf(emu, vf)
            emu.disable_vfs(PF0)
        print("VFs disabled;", len(emu.list_functions()), "functions left")
        nic_demo(emu)
    return 0


def nic_demo(emu) -> None:
    """Frames between VF0, VF1 and the wire, the way a PF driver and two VF drivers would do it."""
    st = emu.enable_vfs(PF0, 2)
    nic = igb.Nic(emu, PF0)
    print(f"NIC: RAM {'mapped' if nic.ram.mapped else 'through Read/WriteMemory'}; "
          f"PF0 BAR0 {nic.pf_bar0:#x}, VF0 BAR0 {nic.vf_bar0(0):#x}, VF1 BAR0 {nic.vf_bar0(1):#x}")
    for vf in st.vfs:
        nic.bus_master(vf)
    nic.setup_vmdq(VF_MACS)
    tx = nic.vf_tx_ring(0)
    rx = nic.vf_rx_ring(1)
    nic.vf_enable_rx_interrupt(1, vector=0, data=0x41)

    frame = igb.ethernet_frame(VF_MACS[1], VF_MACS[0], b"hello from VF0")
    with emu.subscribe_interrupts([st.vfs[1]], timeout=30) as irq:
        i = tx.post(frame)
        got = rx.receive(timeout=5)
        ev = next(irq)
    print(f"VF0 -> VF1: TX descriptor {i} DD={tx.tx_done(i)}, VF1 received {len(got)} bytes, "
          f"{'identical' if got == frame else 'DIFFERENT'}; MSI-X from {pcieemu.format_bdf(ev.rid)} "
          f"vector {ev.vector} data {ev.data:#x}")

    out = igb.ethernet_frame(PEER_MAC, VF_MACS[0], b"to the wire")
    with emu.capture_frames(0, timeout=30) as cap:
        tx.post(out)
        seen = next(cap)
    print(f"VF0 -> wire: CaptureFrames saw {len(seen.data)} bytes on port {seen.port}, "
          f"{'identical' if seen.data == out else 'DIFFERENT'}")

    back = igb.ethernet_frame(VF_MACS[1], PEER_MAC, b"from the wire")
    r = emu.inject_frame(0, back)
    got = rx.receive(timeout=5)
    print(f"wire -> VF1: InjectFrame accepted={r.accepted} queues={r.queues}, VF1 received {len(got)} bytes, "
          f"{'identical' if got == back else 'DIFFERENT'}")
    emu.disable_vfs(PF0)


if __name__ == "__main__":
    sys.exit(main())
