"""SR-IOV enable/disable the way Linux's PCI core does it (PCIe Base spec, SR-IOV chapter).

Enable: pick ARI (ARI Forwarding Enable in the upstream port's Device Control 2, ARI Capable
Hierarchy in the lowest-numbered PF's SR-IOV Control), write NumVFs, re-read First VF Offset
and VF Stride (both may change with NumVFs and ARI), check the VFs' bus numbers fit below the
port, then set VF Enable and VF MSE in one write and wait before touching the VFs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Optional

from . import regs
from .bdf import Bdf, RidLike, to_rid


@dataclass
class SriovState:
    """What an enable produced."""
    pf: Bdf
    num_vfs: int
    first_vf_offset: int
    vf_stride: int
    ari: bool
    vf_device_id: int
    vfs: List[Bdf] = field(default_factory=list)


def _upstream_port(client, rid: int):
    for rp in client.get_platform().root_ports:
        if rp.secondary_bus <= rid >> 8 <= rp.subordinate_bus:
            return rp
    return None


def _sriov_pos(client, rid: int) -> int:
    pos = client.find_ext_capability(rid, regs.EXT_CAP_SRIOV)
    if pos is None:
        raise ValueError(f"{Bdf.from_rid(rid)} has no SR-IOV capability")
    return pos


def configure_ari(client, pf: int, want: Optional[bool]) -> bool:
    """Sets ARI Forwarding Enable on the upstream port and ARI Capable Hierarchy in PF 0 of the device.

    ``want=None`` enables ARI when both the port (DevCap2 ARI Forwarding Supported) and the device
    (ARI extended capability) support it. Returns whether ARI is on.
    """
    port = _upstream_port(client, pf)
    port_pcie = client.find_capability(port.rid, regs.CAP_PCIE) if port else None
    supported = bool(port_pcie is not None
                     and client.cfg_read32(port.rid, port_pcie + regs.PCIE_DEVCAP2) & regs.DEVCAP2_ARI_FORWARDING
                     and client.find_ext_capability(pf, regs.EXT_CAP_ARI) is not None)
    on = supported if want is None else want
    if on and not supported:
        raise RuntimeError(f"ARI requested but the port above {Bdf.from_rid(pf)} or the device does not support it")
    if port_pcie is not None and supported:
        ctl2 = client.cfg_read16(port.rid, port_pcie + regs.PCIE_DEVCTL2)
        new = (ctl2 | regs.DEVCTL2_ARI_FORWARDING) if on else (ctl2 & ~regs.DEVCTL2_ARI_FORWARDING)
        if new != ctl2:
            client.cfg_write16(port.rid, port_pcie + regs.PCIE_DEVCTL2, new)
    # ARI Capable Hierarchy lives in the lowest-numbered PF of the device (function 0).
    pf0 = pf & 0xFF00 if on else pf & ~0x7
    pos0 = client.find_ext_capability(pf0, regs.EXT_CAP_SRIOV)
    if pos0 is not None:
        ctrl = client.cfg_read16(pf0, pos0 + regs.SRIOV_CTRL)
        new = (ctrl | regs.SRIOV_CTRL_ARI_CAPABLE) if on else (ctrl & ~regs.SRIOV_CTRL_ARI_CAPABLE)
        if new != ctrl:
            client.cfg_write16(pf0, pos0 + regs.SRIOV_CTRL, new)
    return on


def enable_vfs(client, pf: RidLike, num_vfs: int, ari: Optional[bool] = None, settle: float = 0.1) -> SriovState:
    """Enables ``num_vfs`` VFs on ``pf``. ``ari``: None = when supported, True/False = force."""
    rid = to_rid(pf)
    pos = _sriov_pos(client, rid)
    total = client.cfg_read16(rid, pos + regs.SRIOV_TOTAL_VFS)
    if not 1 <= num_vfs <= total:
        raise ValueError(f"num_vfs must be 1..{total} (TotalVFs of {Bdf.from_rid(rid)}), was {num_vfs}")
    ctrl = client.cfg_read16(rid, pos + regs.SRIOV_CTRL)
    if ctrl & regs.SRIOV_CTRL_VF_ENABLE:
        raise RuntimeError(f"{Bdf.from_rid(rid)} already has VFs enabled; disable them first")
    on = configure_ari(client, rid, ari)
    client.cfg_write16(rid, pos + regs.SRIOV_NUM_VFS, num_vfs)
    offset = client.cfg_read16(rid, pos + regs.SRIOV_FIRST_VF_OFFSET)
    stride = client.cfg_read16(rid, pos + regs.SRIOV_VF_STRIDE)
    vfs = [rid + offset + i * stride for i in range(num_vfs)]
    port = _upstream_port(client, rid)
    if port is not None and (vfs[-1] >> 8) > port.subordinate_bus:
        client.cfg_write16(rid, pos + regs.SRIOV_NUM_VFS, 0)
        raise RuntimeError(f"VF bus {vfs[-1] >> 8:#x} is beyond the port's subordinate bus {port.subordinate_bus:#x}")
    ctrl = client.cfg_read16(rid, pos + regs.SRIOV_CTRL)
    client.cfg_write16(rid, pos + regs.SRIOV_CTRL, ctrl | regs.SRIOV_CTRL_VF_ENABLE | regs.SRIOV_CTRL_VF_MSE)
    if settle:
        time.sleep(settle)  # the spec's 100 ms before the VFs must answer config requests
    device = client.cfg_read16(rid, pos + regs.SRIOV_VF_DEVICE_ID)
    return SriovState(Bdf.from_rid(rid), num_vfs, offset, stride, on, device, [Bdf.from_rid(v) for v in vfs])


def disable_vfs(client, pf: RidLike) -> None:
    """Clears VF Enable and VF MSE in one write, then NumVFs."""
    rid = to_rid(pf)
    pos = _sriov_pos(client, rid)
    ctrl = client.cfg_read16(rid, pos + regs.SRIOV_CTRL)
    if ctrl & (regs.SRIOV_CTRL_VF_ENABLE | regs.SRIOV_CTRL_VF_MSE):
        client.cfg_write16(rid, pos + regs.SRIOV_CTRL, ctrl & ~(regs.SRIOV_CTRL_VF_ENABLE | regs.SRIOV_CTRL_VF_MSE))
    client.cfg_write16(rid, pos + regs.SRIOV_NUM_VFS, 0)
