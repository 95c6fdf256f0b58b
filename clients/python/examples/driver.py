#!/usr/bin/python3
"""Example driver: enumerate, enable 2 VFs on PF0, read a VF's config space through non-ARI
routing (VFs on bus 2) and ARI routing (VFs on bus 1), then disable the VFs.

    /usr/bin/python3 clients/python/examples/driver.py --target tcp://127.0.0.1:50551
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pcieemu  # noqa: E402
from pcieemu import regs  # noqa: E402

PF0 = "01:00.0"


def show_vf(emu, vf):
    cls = emu.cfg_read32(vf, regs.CLASS_REVISION)
    caps = ", ".join(f"{cid:#04x}@{off:#x}" for cid, off in emu.capabilities(vf))
    ext = ", ".join(f"{cid:#06x}@{off:#x}" for cid, _, off in emu.ext_capabilities(vf))
    print(f"    {vf} (rid {int(vf):#06x}): class {cls >> 8:06x} rev {cls & 0xff:02x}; caps [{caps}]; ext [{ext}]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=None, help="tcp://host:port or unix:///path")
    args = ap.parse_args()
    with pcieemu.connect(args.target) as emu:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
