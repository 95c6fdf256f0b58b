"""Driver-side helpers for the emulated Intel 82576 (igb PF / igbvf VF): register offsets and
bits, a PF setup for VMDq with loopback between pools, descriptor rings in guest RAM, and
Ethernet frames.

Register offsets and bits are hardware facts of the 82576 (datasheet chapter 8, the
register summary; docs/nic.md lists what the emulator models). All registers are 32 bits wide
and are accessed through MMIO to BAR0 of the PF or the VF.

    nic = igb.Nic(emu)                       # PF0, its BAR0/BAR3 from ListFunctions
    nic.setup_vmdq([mac0, mac1])             # pools 0 and 1 = VF0 and VF1
    tx = nic.vf_tx_ring(0); rx = nic.vf_rx_ring(1)
    tx.post(frame); data = rx.receive()
"""
from __future__ import annotations

import struct
import time
from typing import List, Optional, Sequence

from .bdf import RidLike, format_bdf, to_rid
from . import regs

# --- PF and VF BAR0 registers ------------------------------------------------------------
CTRL = 0x0000
STATUS = 0x0008
CTRL_EXT = 0x0018
ICR = 0x00C0
IMS = 0x00D0
RCTL = 0x0100
TCTL = 0x0400
GPIE = 0x1514
EICS = 0x1520
EIMS = 0x1524
EIMC = 0x1528
EIAC = 0x152C
EIAM = 0x1530
EICR = 0x1580
IVAR0 = 0x1700
IVAR_MISC = 0x1740
VMBMEM = 0x0800
P2VMAILBOX = 0x0C00      # PF: 4 bytes per VF
VFMAILBOX = 0x0C40       # VF
MBVFICR = 0x0C80
MBVFIMR = 0x0C84
VFLRE = 0x0C88
VFRE = 0x0C8C            # PF: per-pool receive enable
VFTE = 0x0C90            # PF: per-pool transmit enable
DTXSWC = 0x3500          # PF: VMDq transmit switch control
MTA = 0x5200
RAL0 = 0x5400            # RAL/RAH pairs, 8 bytes per entry (entries 0-15; 16-23 at RA2)
RA2 = 0x54E0
MRQC = 0x5818
VT_CTL = 0x581C
VMOLR = 0x5AD0           # 4 bytes per pool
# Statistics: PF (clear on read) and VF (free-running)
PF_GPRC = 0x4074
PF_GPTC = 0x4080
VF_GPRC = 0x0F10
VF_GPTC = 0x0F14
VF_GPRLBC = 0x0F40
VF_GPTLBC = 0x0F44

# Queue register blocks: the PF's 16 queues at 0xC000/0xE000 + 0x40*n; the legacy view
# (0x2800/0x3800 + 0x100*n) is what a VF sees for its queues 0 and 1.
RX_QUEUES = 0xC000
TX_QUEUES = 0xE000
RX_LEGACY = 0x2800
TX_LEGACY = 0x3800
# Offsets inside an RX queue block
RDBAL, RDBAH, RDLEN, SRRCTL, RDH, RDT, RXDCTL = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x18, 0x28
# Offsets inside a TX queue block
TDBAL, TDBAH, TDLEN, TDH, TDT, TXDCTL = 0x00, 0x04, 0x08, 0x10, 0x18, 0x28

# --- bits ----------------------------------------------------------------------------------
CTRL_RST = 1 << 26
CTRL_EXT_PFRSTD = 1 << 14
RCTL_EN = 1 << 1
RCTL_BAM = 1 << 15
RCTL_SECRC = 1 << 26
TCTL_EN = 1 << 1
TCTL_PSP = 1 << 3
QUEUE_ENABLE = 1 << 25                 # RXDCTL / TXDCTL
SRRCTL_BSIZEPKT_1K = 1                 # BSIZEPACKET unit: 1 KiB
SRRCTL_DESCTYPE_ADV_ONEBUF = 1 << 25
RAH_AV = 1 << 31
RAH_POOL_SHIFT = 18
MRQC_VMDQ = 3
DTXSWC_LOOPBACK_EN = 1 << 31
VMOLR_AUPE = 1 << 24
VMOLR_BAM = 1 << 27
IVAR_VALID = 0x80
VFMB_RSTD = 0x80

# Advanced transmit data descriptor (DTYP 3): cmd_type_len and olinfo_status
ADV_DTYP_DATA = 0x3 << 20
ADV_DCMD_EOP = 1 << 24
ADV_DCMD_IFCS = 1 << 25
ADV_DCMD_RS = 1 << 27
ADV_DCMD_DEXT = 1 << 29
ADV_PAYLEN_SHIFT = 14
ADV_TX_STA_DD = 1 << 0                 # dword 3 after write-back
# Advanced receive descriptor write-back (status_error in dword 2, length in bits 15:0 of dword 3)
RX_STA_DD = 1 << 0
RX_STA_EOP = 1 << 1

DESC_SIZE = 16
VF_MSIX_VECTORS = 3
MSIX_TABLE_ENTRY = 16
MSI_ADDRESS = 0xFEE0_0000


# --- Ethernet frames -----------------------------------------------------------------------
def mac(text: str) -> bytes:
    """'02:00:00:00:10:00' -> 6 bytes."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"mac: {text!r} is not six hex bytes")
    return bytes(int(p, 16) for p in parts)


def format_mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


BROADCAST = b"\xff" * 6


def ethernet_frame(dst: bytes, src: bytes, payload: bytes = b"", ethertype: int = 0x88B5, min_length: int = 60) -> bytes:
    """dst, src, ethertype (default 0x88B5, the IEEE local experimental type), payload, zero
    padded to ``min_length`` (60 = the Ethernet minimum without FCS)."""
    if len(dst) != 6 or len(src) != 6:
        raise ValueError("ethernet_frame: dst and src must be 6 bytes")
    f = bytes(dst) + bytes(src) + struct.pack(">H", ethertype) + bytes(payload)
    return f + bytes(max(0, min_length - len(f)))


# --- RAM -----------------------------------------------------------------------------------
class RamAllocator:
    """Hands out 4 KiB-aligned pieces of guest RAM from ``start`` up (never frees)."""

    def __init__(self, start: int = 0x10_0000, end: Optional[int] = None):
        self.next = start
        self.end = end

    def alloc(self, size: int, align: int = 0x1000) -> int:
        a = (self.next + align - 1) & ~(align - 1)
        if self.end is not None and a + size > self.end:
            raise MemoryError(f"RamAllocator: {size} bytes do not fit below {self.end:#x}")
        self.next = a + size
        return a


class Ring:
    """A descriptor ring in guest RAM and its queue registers (``block`` inside ``bar0``)."""

    def __init__(self, nic: "Nic", bar0: int, block: int, count: int, base: int, buffers: List[int], buf_size: int, tx: bool):
        self.nic, self.bar0, self.block, self.count = nic, bar0, block, count
        self.base, self.buffers, self.buf_size, self.tx = base, buffers, buf_size, tx
        self.tail = 0   # TX: next descriptor to fill; RX: value last written to RDT
        self.next = 0   # RX: next descriptor to look at for a write-back
        self.last_write_back = (0, 0)  # RX: (status_error, length) of the last frame received

    def reg(self, off: int) -> int:
        return self.bar0 + self.block + off

    def desc_addr(self, i: int) -> int:
        return self.base + DESC_SIZE * (i % self.count)

    @property
    def head(self) -> int:
        return self.nic.emu.read32(self.reg(TDH if self.tx else RDH))

    def write_tail(self, value: int) -> None:
        self.tail = value % self.count
        self.nic.emu.write32(self.reg(TDT if self.tx else RDT), self.tail)

    # -- TX
    def post(self, frame: bytes, kick: bool = True) -> int:
        """Copies ``frame`` into the next buffer, writes an advanced data descriptor
        (DTYP 3, DEXT, EOP, IFCS, RS) and, with ``kick``, bumps TDT. Returns the descriptor index."""
        if not self.tx:
            raise TypeError("post: not a TX ring")
        if not 0 < len(frame) <= self.buf_size:
            raise ValueError(f"post: frame length {len(frame)} outside 1..{self.buf_size}")
        i = self.tail
        ram = self.nic.ram
        ram.write(self.buffers[i], frame)
        cmd = len(frame) | ADV_DTYP_DATA | ADV_DCMD_EOP | ADV_DCMD_IFCS | ADV_DCMD_RS | ADV_DCMD_DEXT
        ram.write(self.desc_addr(i), struct.pack("<QII", self.buffers[i], cmd, len(frame) << ADV_PAYLEN_SHIFT))
        if kick:
            self.write_tail(i + 1)
        else:
            self.tail = (i + 1) % self.count
        return i

    def tx_done(self, i: int) -> bool:
        """DD written back into dword 3 of descriptor ``i``."""
        return bool(self.nic.ram.read32(self.desc_addr(i) + 12) & ADV_TX_STA_DD)

    # -- RX
    def write_back(self, i: int):
        """(status_error, length) of RX descriptor ``i`` as it is in RAM now."""
        _, _, status, length = struct.unpack("<IIIH", self.nic.ram.read(self.desc_addr(i), 14))
        return status, length

    def receive(self, timeout: float = 5.0, poll: float = 0.001) -> bytes:
        """Polls the next RX descriptor for DD (one-buffer frames), returns the frame, re-arms the
        descriptor and hands it back to the device. Raises TimeoutError."""
        if self.tx:
            raise TypeError("receive: not an RX ring")
        i = self.next
        deadline = time.monotonic() + timeout
        while True:
            status, length = self.write_back(i)
            if status & RX_STA_DD:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"RX descriptor {i} at {self.desc_addr(i):#x}: no DD within {timeout} s")
            time.sleep(poll)
        if not status & RX_STA_EOP:
            raise RuntimeError(f"RX descriptor {i}: frame spans several buffers (status {status:#x})")
        data = self.nic.ram.read(self.buffers[i], length)
        self.last_write_back = (status, length)
        self._arm(i)
        self.next = (i + 1) % self.count
        self.write_tail(i)  # the re-armed descriptor goes back to the device
        return data

    def _arm(self, i: int) -> None:
        self.nic.ram.write(self.desc_addr(i), struct.pack("<QQ", self.buffers[i], 0))


class Nic:
    """One 82576 port (a PF) and its VFs, driven over MMIO with rings in guest RAM."""

    def __init__(self, emu, pf: RidLike = "01:00.0", ram=None, allocator: Optional[RamAllocator] = None):
        self.emu = emu
        self.pf = to_rid(pf)
        self.ram = ram if ram is not None else emu.map_ram()
        self.alloc = allocator or RamAllocator()
        self.pf_bar0 = self.bar(self.pf, 0)
        self.pf_bar3 = self.bar(self.pf, 3)

    def bar(self, rid: RidLike, index: int) -> int:
        """BAR ``index`` of a function as ListFunctions reports it (VFs included)."""
        rid = to_rid(rid)
        for f in self.emu.list_functions():
            if f.rid == rid:
                for b in f.bars:
                    if b.index == index:
                        return b.address
                raise LookupError(f"{format_bdf(rid)} has no BAR{index}")
        raise LookupError(f"{format_bdf(rid)} is not present (VFs enabled?)")

    # -- PF registers
    def pf_read(self, off: int) -> int:
        return self.emu.read32(self.pf_bar0 + off)

    def pf_write(self, off: int, value: int) -> None:
        self.emu.write32(self.pf_bar0 + off, value & 0xFFFF_FFFF)

    def set_rar(self, entry: int, mac_addr: bytes, pools: int) -> None:
        """Receive address entry ``entry``: the MAC, the pool bits (RAH 25:18) and Address Valid."""
        off = (RAL0 + 8 * entry) if entry < 16 else (RA2 + 8 * (entry - 16))
        lo, hi = struct.unpack("<IH", bytes(mac_addr))
        self.pf_write(off, lo)
        self.pf_write(off + 4, hi | (pools & 0xFF) << RAH_POOL_SHIFT | RAH_AV)

    def setup_vmdq(self, vf_macs: Sequence[bytes]) -> None:
        """What a PF driver does for SR-IOV: PF reset done (PFRSTD), VMDq (MRQC), loopback between
        pools (DTXSWC), receive (broadcast accepted, CRC stripped) and transmit on, per VF pool
        VMOLR accept untagged + broadcast, VFRE/VFTE, and RAR entry i+1 = VF i's MAC in pool i."""
        self.pf_write(CTRL_EXT, self.pf_read(CTRL_EXT) | CTRL_EXT_PFRSTD)
        self.pf_write(MRQC, MRQC_VMDQ)
        self.pf_write(DTXSWC, DTXSWC_LOOPBACK_EN)
        self.pf_write(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC)
        self.pf_write(TCTL, TCTL_EN | TCTL_PSP)
        pools = 0
        for i, m in enumerate(vf_macs):
            self.pf_write(VMOLR + 4 * i, VMOLR_AUPE | VMOLR_BAM)
            pools |= 1 << i
            self.set_rar(i + 1, m, 1 << i)
        self.pf_write(VFRE, pools)
        self.pf_write(VFTE, pools)

    # -- VFs
    def vf_rids(self) -> List[int]:
        """Routing IDs of the enabled VFs, from the SR-IOV capability (First VF Offset, Stride)."""
        pos = self.emu.find_ext_capability(self.pf, regs.EXT_CAP_SRIOV)
        if pos is None:
            raise LookupError(f"{format_bdf(self.pf)} has no SR-IOV capability")
        n = self.emu.cfg_read16(self.pf, pos + regs.SRIOV_NUM_VFS)
        if not self.emu.cfg_read16(self.pf, pos + regs.SRIOV_CTRL) & regs.SRIOV_CTRL_VF_ENABLE:
            return []
        off = self.emu.cfg_read16(self.pf, pos + regs.SRIOV_FIRST_VF_OFFSET)
        stride = self.emu.cfg_read16(self.pf, pos + regs.SRIOV_VF_STRIDE)
        return [self.pf + off + k * stride for k in range(n)]

    def vf_rid(self, vf: int) -> int:
        rids = self.vf_rids()
        if not 0 <= vf < len(rids):
            raise IndexError(f"VF {vf} is not enabled ({len(rids)} VFs)")
        return rids[vf]

    def vf_bar0(self, vf: int) -> int:
        return self.bar(self.vf_rid(vf), 0)

    def bus_master(self, rid: RidLike) -> None:
        """Sets Bus Master Enable in the Command register (the function may then DMA: rings, buffers, MSI-X)."""
        rid = to_rid(rid)
        cmd = self.emu.cfg_read16(rid, regs.COMMAND)
        self.emu.cfg_write16(rid, regs.COMMAND, cmd | regs.CMD_BUS_MASTER)

    # -- rings
    def _ring(self, bar0: int, block: int, count: int, tx: bool, buf_kib: int = 2) -> Ring:
        if count < 8 or count % 8:
            raise ValueError(f"ring count must be a multiple of 8 (RDLEN/TDLEN are in 128-byte units), was {count}")
        base = self.alloc.alloc(count * DESC_SIZE, 128)
        buffers = [self.alloc.alloc(buf_kib * 1024, 1024) for _ in range(count)]
        ring = Ring(self, bar0, block, count, base, buffers, buf_kib * 1024, tx)
        w = lambda off, v: self.emu.write32(bar0 + block + off, v)  # noqa: E731
        self.ram.write(base, bytes(count * DESC_SIZE))
        if tx:
            w(TDBAL, base & 0xFFFF_FFFF)
            w(TDBAH, base >> 32)
            w(TDLEN, count * DESC_SIZE)
            w(TDH, 0)
            w(TDT, 0)
            w(TXDCTL, QUEUE_ENABLE)
        else:
            for i in range(count):
                ring._arm(i)
            w(RDBAL, base & 0xFFFF_FFFF)
            w(RDBAH, base >> 32)
            w(RDLEN, count * DESC_SIZE)
            w(SRRCTL, buf_kib * SRRCTL_BSIZEPKT_1K | SRRCTL_DESCTYPE_ADV_ONEBUF)
            w(RDH, 0)
            w(RDT, 0)
            w(RXDCTL, QUEUE_ENABLE)
            ring.write_tail(count - 1)  # every descriptor but one belongs to the device
        return ring

    def vf_tx_ring(self, vf: int, queue: int = 0, count: int = 64) -> Ring:
        return self._ring(self.vf_bar0(vf), TX_LEGACY + 0x100 * queue, count, tx=True)

    def vf_rx_ring(self, vf: int, queue: int = 0, count: int = 64) -> Ring:
        return self._ring(self.vf_bar0(vf), RX_LEGACY + 0x100 * queue, count, tx=False)

    # -- VF interrupts
    def vf_enable_rx_interrupt(self, vf: int, vector: int = 0, data: int = 0x40) -> None:
        """MSI-X on the VF: table entry ``vector`` -> MSI_ADDRESS / ``data``, unmasked; IVAR0 maps RX
        queue 0 to it; EIMS enables it; MSI-X Enable in the VF's capability."""
        rid = self.vf_rid(vf)
        bar0, bar3 = self.bar(rid, 0), self.bar(rid, 3)
        entry = bar3 + MSIX_TABLE_ENTRY * vector
        self.emu.write32(entry, MSI_ADDRESS)
        self.emu.write32(entry + 4, 0)
        self.emu.write32(entry + 8, data)
        self.emu.write32(entry + 12, 0)  # vector control: unmasked
        cap = self.emu.find_capability(rid, regs.CAP_MSIX)
        if cap is None:
            raise LookupError(f"{format_bdf(rid)} has no MSI-X capability")
        self.emu.cfg_write16(rid, cap + 2, self.emu.cfg_read16(rid, cap + 2) | 0x8000)
        ivar = self.emu.read32(bar0 + IVAR0)
        self.emu.write32(bar0 + IVAR0, (ivar & ~0xFF) | IVAR_VALID | vector)
        self.emu.write32(bar0 + EIMS, 1 << vector)
