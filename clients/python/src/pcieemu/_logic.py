"""The capability walks and the SR-IOV sequences, written once for both APIs.

Each function here is a coroutine over a client-like object with four awaitable calls:
``config_read(rid, offset, width) -> ConfigRead``, ``config_write(rid, offset, width, value)``,
``get_platform()`` and ``sleep(seconds)``. :class:`pcieemu.aio.AsyncClient` has them; the
blocking :class:`pcieemu.Client` is wrapped in :class:`SyncAdapter` and the coroutine is run by
:func:`run_sync`, which completes it in one step because nothing in it ever suspends.

SR-IOV follows Linux's PCI core (PCIe Base spec, SR-IOV chapter): pick ARI (ARI Forwarding
Enable in the upstream port's Device Control 2, ARI Capable Hierarchy in the lowest-numbered
PF's SR-IOV Control), write NumVFs, re-read First VF Offset and VF Stride (both may change with
NumVFs and ARI), check the VFs' bus numbers fit below the port, then set VF Enable and VF MSE in
one write and wait before touching the VFs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Coroutine, List, Optional, Set, Tuple, TypeVar

from . import regs
from .bdf import Bdf, RidLike, to_rid

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never suspends (one over a :class:`SyncAdapter`) to its result."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a blocking call suspended")


class SyncAdapter:
    """A blocking client seen through the awaitable calls the shared coroutines use."""

    def __init__(self, client):
        self._c = client

    async def config_read(self, rid: int, offset: int, width: int):
        return self._c.config_read(rid, offset, width)

    async def config_write(self, rid: int, offset: int, width: int, value: int) -> int:
        return self._c.config_write(rid, offset, width, value)

    async def get_platform(self):
        return self._c.get_platform()

    async def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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


async def _r(c, rid: int, offset: int, width: int) -> int:
    return (await c.config_read(rid, offset, width)).value


async def capabilities(c, rid: RidLike) -> List[Tuple[int, int]]:
    """(id, offset) of each standard capability, following 0x34; stops on a loop or a broken chain."""
    rid = to_rid(rid)
    caps: List[Tuple[int, int]] = []
    if not await _r(c, rid, regs.STATUS, 2) & regs.STATUS_CAP_LIST:
        return caps
    ptr = await _r(c, rid, regs.CAPABILITIES_POINTER, 1) & 0xFC
    seen: Set[int] = set()
    while ptr >= 0x40 and ptr not in seen and len(seen) < 48:
        seen.add(ptr)
        header = await _r(c, rid, ptr, 2)
        if header & 0xFF == 0xFF:
            break
        caps.append((header & 0xFF, ptr))
        ptr = (header >> 8) & 0xFC
    return caps


async def ext_capabilities(c, rid: RidLike) -> List[Tuple[int, int, int]]:
    """(id, version, offset) of each extended capability, from 0x100."""
    rid = to_rid(rid)
    caps: List[Tuple[int, int, int]] = []
    ptr, seen = 0x100, set()  # type: Tuple[int, Set[int]]
    while ptr >= 0x100 and ptr not in seen and len(seen) < 960:
        seen.add(ptr)
        r = await c.config_read(rid, ptr, 4)
        if not r.ok or r.value in (0, 0xFFFFFFFF):
            break
        caps.append((r.value & 0xFFFF, (r.value >> 16) & 0xF, ptr))
        ptr = (r.value >> 20) & 0xFFC
    return caps


async def find_capability(c, rid: RidLike, cap_id: int) -> Optional[int]:
    return next((off for cid, off in await capabilities(c, rid) if cid == cap_id), None)


async def find_ext_capability(c, rid: RidLike, cap_id: int) -> Optional[int]:
    return next((off for cid, _, off in await ext_capabilities(c, rid) if cid == cap_id), None)


async def bar_address(c, rid: RidLike, index: int) -> int:
    """The address programmed in BAR ``index`` (64-bit BARs combined, I/O and flag bits stripped)."""
    rid = to_rid(rid)
    lo = await _r(c, rid, regs.BAR0 + 4 * index, 4)
    if lo & 1:
        return lo & ~0x3 & 0xFFFFFFFF
    addr = lo & ~0xF & 0xFFFFFFFF
    if (lo >> 1) & 3 == 2:
        addr |= await _r(c, rid, regs.BAR0 + 4 * index + 4, 4) << 32
    return addr


async def _upstream_port(c, rid: int):
    for rp in (await c.get_platform()).root_ports:
        if rp.secondary_bus <= rid >> 8 <= rp.subordinate_bus:
            return rp
    return None


async def _sriov_pos(c, rid: int) -> int:
    pos = await find_ext_capability(c, rid, regs.EXT_CAP_SRIOV)
    if pos is None:
        raise ValueError(f"{Bdf.from_rid(rid)} has no SR-IOV capability")
    return pos


async def configure_ari(c, pf: int, want: Optional[bool]) -> bool:
    """Sets ARI Forwarding Enable on the upstream port and ARI Capable Hierarchy in PF 0 of the device.

    ``want=None`` enables ARI when both the port (DevCap2 ARI Forwarding Supported) and the device
    (ARI extended capability) support it. Returns whether ARI is on.
    """
    port = await _upstream_port(c, pf)
    port_pcie = await find_capability(c, port.rid, regs.CAP_PCIE) if port else None
    supported = bool(port_pcie is not None
                     and await _r(c, port.rid, port_pcie + regs.PCIE_DEVCAP2, 4) & regs.DEVCAP2_ARI_FORWARDING
                     and await find_ext_capability(c, pf, regs.EXT_CAP_ARI) is not None)
    on = supported if want is None else want
    if on and not supported:
        raise RuntimeError(f"ARI requested but the port above {Bdf.from_rid(pf)} or the device does not support it")
    if port_pcie is not None and supported:
        ctl2 = await _r(c, port.rid, port_pcie + regs.PCIE_DEVCTL2, 2)
        new = (ctl2 | regs.DEVCTL2_ARI_FORWARDING) if on else (ctl2 & ~regs.DEVCTL2_ARI_FORWARDING)
        if new != ctl2:
            await c.config_write(port.rid, port_pcie + regs.PCIE_DEVCTL2, 2, new)
    # ARI Capable Hierarchy lives in the lowest-numbered PF of the device (function 0).
    pf0 = pf & 0xFF00 if on else pf & ~0x7
    pos0 = await find_ext_capability(c, pf0, regs.EXT_CAP_SRIOV)
    if pos0 is not None:
        ctrl = await _r(c, pf0, pos0 + regs.SRIOV_CTRL, 2)
        new = (ctrl | regs.SRIOV_CTRL_ARI_CAPABLE) if on else (ctrl & ~regs.SRIOV_CTRL_ARI_CAPABLE)
        if new != ctrl:
            await c.config_write(pf0, pos0 + regs.SRIOV_CTRL, 2, new)
    return on


async def enable_vfs(c, pf: RidLike, num_vfs: int, ari: Optional[bool] = None, settle: float = 0.1) -> SriovState:
    """Enables ``num_vfs`` VFs on ``pf``. ``ari``: None = when supported, True/False = force."""
    rid = to_rid(pf)
    pos = await _sriov_pos(c, rid)
    total = await _r(c, rid, pos + regs.SRIOV_TOTAL_VFS, 2)
    if not 1 <= num_vfs <= total:
        raise ValueError(f"num_vfs must be 1..{total} (TotalVFs of {Bdf.from_rid(rid)}), was {num_vfs}")
    if await _r(c, rid, pos + regs.SRIOV_CTRL, 2) & regs.SRIOV_CTRL_VF_ENABLE:
        raise RuntimeError(f"{Bdf.from_rid(rid)} already has VFs enabled; disable them first")
    on = await configure_ari(c, rid, ari)
    await c.config_write(rid, pos + regs.SRIOV_NUM_VFS, 2, num_vfs)
    offset = await _r(c, rid, pos + regs.SRIOV_FIRST_VF_OFFSET, 2)
    stride = await _r(c, rid, pos + regs.SRIOV_VF_STRIDE, 2)
    vfs = [rid + offset + i * stride for i in range(num_vfs)]
    port = await _upstream_port(c, rid)
    if port is not None and (vfs[-1] >> 8) > port.subordinate_bus:
        await c.config_write(rid, pos + regs.SRIOV_NUM_VFS, 2, 0)
        raise RuntimeError(f"VF bus {vfs[-1] >> 8:#x} is beyond the port's subordinate bus {port.subordinate_bus:#x}")
    ctrl = await _r(c, rid, pos + regs.SRIOV_CTRL, 2)
    await c.config_write(rid, pos + regs.SRIOV_CTRL, 2, ctrl | regs.SRIOV_CTRL_VF_ENABLE | regs.SRIOV_CTRL_VF_MSE)
    if settle:
        await c.sleep(settle)  # the spec's 100 ms before the VFs must answer config requests
    device = await _r(c, rid, pos + regs.SRIOV_VF_DEVICE_ID, 2)
    return SriovState(Bdf.from_rid(rid), num_vfs, offset, stride, on, device, [Bdf.from_rid(v) for v in vfs])


async def disable_vfs(c, pf: RidLike) -> None:
    """Clears VF Enable and VF MSE in one write, then NumVFs."""
    rid = to_rid(pf)
    pos = await _sriov_pos(c, rid)
    ctrl = await _r(c, rid, pos + regs.SRIOV_CTRL, 2)
    if ctrl & (regs.SRIOV_CTRL_VF_ENABLE | regs.SRIOV_CTRL_VF_MSE):
        await c.config_write(rid, pos + regs.SRIOV_CTRL, 2, ctrl & ~(regs.SRIOV_CTRL_VF_ENABLE | regs.SRIOV_CTRL_VF_MSE))
    await c.config_write(rid, pos + regs.SRIOV_NUM_VFS, 2, 0)
