#!/usr/bin/python3
"""Example virtio-net driver (virtio 1.2, modern PCI transport, split virtqueues): find the
1AF4:1041 function, enable it, find its common/notify/ISR/device structures through the vendor
capabilities, reset, negotiate VERSION_1 and MAC, set up receiveq0 and transmitq0 in RAM,
DRIVER_OK, send one frame (seen on CaptureFrames) and receive one injected with InjectFrame,
polling the used rings. The same steps, in the same order and with the same names, as the Go,
C++ and TypeScript examples (clients/go/cmd/virtionet, clients/cpp/examples/virtio_net.cpp,
clients/typescript/examples/virtio-net.ts). Needs a machine with a virtio-net device:

    pcie-emu serve --machine docs/machines/virtio-net.json
    /usr/bin/python3 clients/python/examples/virtio_net.py
"""
import argparse
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pcieemu  # noqa: E402
from pcieemu import regs  # noqa: E402

VIRTIO_VENDOR, VIRTIO_NET_DEVICE = 0x1AF4, 0x1041          # §4.1.2: 0x1040 + device ID 1
CAP_VENDOR = 0x09
# virtio_pci_cap.cfg_type (§4.1.4)
COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG = 1, 2, 3, 4
# virtio_pci_common_cfg field offsets (§4.1.4.3)
DEVICE_FEATURE_SELECT, DEVICE_FEATURE, DRIVER_FEATURE_SELECT, DRIVER_FEATURE = 0x00, 0x04, 0x08, 0x0C
NUM_QUEUES, DEVICE_STATUS, QUEUE_SELECT, QUEUE_SIZE = 0x12, 0x14, 0x16, 0x18
QUEUE_MSIX_VECTOR, QUEUE_ENABLE, QUEUE_NOTIFY_OFF = 0x1A, 0x1C, 0x1E
QUEUE_DESC, QUEUE_DRIVER, QUEUE_DEVICE = 0x20, 0x28, 0x30
# device status (§2.1)
ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, NEEDS_RESET, FAILED = 1, 2, 4, 8, 64, 128
# feature bits (§5.1.3, §6)
F_MAC, F_VERSION_1 = 1 << 5, 1 << 32
NO_VECTOR = 0xFFFF
DESC_F_WRITE = 2                                           # §2.7.5
NET_HDR_LEN = 12                                           # virtio_net_hdr with VERSION_1 (§5.1.6)
RECEIVEQ, TRANSMITQ = 0, 1                                 # receiveq1, transmitq1 (§5.1.2)
QUEUE_ENTRIES = 8
BUF_SIZE = 2048
RAM_OFFSET = 0x200000      # where the driver puts its rings and buffers, from the RAM base
PEER_MAC = bytes.fromhex("020000009999")                    # a station on the wire


def ethernet_frame(dst: bytes, src: bytes, payload: bytes) -> bytes:
    """dst, src, EtherType 0x88B5 (local experimental), payload; padded to 60 bytes."""
    return (dst + src + b"\x88\xb5" + payload).ljust(60, b"\x00")


class VirtioNetDriver:
    """The driver's state: the function, its BAR4 structures, the two split virtqueues."""

    def __init__(self, emu, rid: int, port: int):
        self.emu, self.rid, self.port = emu, rid, port
        self.ram = emu.map_ram()
        self.common = self.notify = self.isr = self.device = 0
        self.notify_multiplier = 0
        self.features = 0
        self.queues = {}    # index -> dict(desc, avail, used, buf, notify, last_used, next_avail)

    # -- step 1: find the device ------------------------------------------------------------
    @staticmethod
    def find(emu) -> "VirtioNetDriver":
        """The first 1AF4:1041 function (ListFunctions) and its Ethernet port (GetPlatform)."""
        fn = next((f for f in emu.list_functions()
                   if (f.vendor_id, f.device_id) == (VIRTIO_VENDOR, VIRTIO_NET_DEVICE)), None)
        if fn is None:
            raise RuntimeError("no virtio-net function (1af4:1041): start the server with a --machine "
                               "description that has a virtio-net device (docs/machines/virtio-net.json)")
        ports = [p.number for d in emu.get_platform().devices for p in d.ethernet_ports if p.function_rid == fn.rid]
        if not ports:
            raise RuntimeError(f"GetPlatform lists no Ethernet port for {pcieemu.format_bdf(fn.rid)}")
        return VirtioNetDriver(emu, fn.rid, ports[0])

    # -- step 2: enable memory decoding and bus mastering -------------------------------------
    def enable(self) -> None:
        cmd = self.emu.cfg_read16(self.rid, regs.COMMAND)
        self.emu.cfg_write16(self.rid, regs.COMMAND, cmd | regs.CMD_MEMORY | regs.CMD_BUS_MASTER)

    # -- step 3: the vendor capabilities (virtio_pci_cap, §4.1.4) -----------------------------
    def find_structures(self) -> None:
        found = {}
        for cap_id, off in self.emu.capabilities(self.rid):
            if cap_id != CAP_VENDOR:
                continue
            cfg_type = self.emu.cfg_read8(self.rid, off + 3)
            bar = self.emu.cfg_read8(self.rid, off + 4)
            offset = self.emu.cfg_read32(self.rid, off + 8)
            if cfg_type in found or cfg_type not in (COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG):
                continue    # the first of each type is the one to use (§4.1.4.1); PCI_CFG is not used here
            found[cfg_type] = self.emu.bar_address(self.rid, bar) + offset
            if cfg_type == NOTIFY_CFG:
                self.notify_multiplier = self.emu.cfg_read32(self.rid, off + 16)
        missing = [n for t, n in ((COMMON_CFG, "common"), (NOTIFY_CFG, "notify"), (ISR_CFG, "isr"),
                                  (DEVICE_CFG, "device")) if t not in found]
        if missing:
            raise RuntimeError(f"virtio capabilities missing: {', '.join(missing)}")
        self.common, self.notify, self.isr, self.device = (found[t] for t in (COMMON_CFG, NOTIFY_CFG, ISR_CFG, DEVICE_CFG))

    # common configuration accesses, each at its field's width
    def cc_read(self, off: int, width: int) -> int:
        return self.emu.mmio_read(self.common + off, width).value

    def cc_write(self, off: int, width: int, value: int) -> None:
        self.emu.mmio_write(self.common + off, width, value)

    def status(self) -> int:
        return self.cc_read(DEVICE_STATUS, 1)

    # -- step 4: reset, ACKNOWLEDGE | DRIVER (§3.1.1) ------------------------------------------
    def reset(self) -> None:
        self.cc_write(DEVICE_STATUS, 1, 0)
        if self.status() != 0:
            raise RuntimeError("device_status did not read 0 after reset")
        self.cc_write(DEVICE_STATUS, 1, ACKNOWLEDGE)
        self.cc_write(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER)

    # -- step 5: features, FEATURES_OK and re-read it ----------------------------------------
    def negotiate(self, wanted: int = F_VERSION_1 | F_MAC) -> int:
        offered = 0
        for sel in (0, 1):
            self.cc_write(DEVICE_FEATURE_SELECT, 4, sel)
            offered |= self.cc_read(DEVICE_FEATURE, 4) << (32 * sel)
        if not offered & F_VERSION_1:
            raise RuntimeError(f"device does not offer VERSION_1 (features {offered:#x})")
        self.features = offered & wanted
        for sel in (0, 1):
            self.cc_write(DRIVER_FEATURE_SELECT, 4, sel)
            self.cc_write(DRIVER_FEATURE, 4, (self.features >> (32 * sel)) & 0xFFFFFFFF)
        self.cc_write(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER | FEATURES_OK)
        if not self.status() & FEATURES_OK:
            self.cc_write(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER | FAILED)
            raise RuntimeError(f"device refused FEATURES_OK for features {self.features:#x}")
        return self.features

    def mac(self) -> bytes:
        """The device config `mac` (§5.1.4), present with VIRTIO_NET_F_MAC."""
        return bytes(self.emu.mmio_read(self.device + i, 1).value for i in range(6))

    # -- step 6: a split virtqueue (§2.7) in RAM -----------------------------------------------
    def setup_queue(self, index: int) -> None:
        self.cc_write(QUEUE_SELECT, 2, index)
        max_size = self.cc_read(QUEUE_SIZE, 2)
        if max_size < QUEUE_ENTRIES:
            raise RuntimeError(f"queue {index}: queue_size {max_size} < {QUEUE_ENTRIES}")
        base = self.ram.base + RAM_OFFSET + index * 0x10000
        q = dict(desc=base, avail=base + 0x1000, used=base + 0x2000, buf=base + 0x4000, last_used=0, next_avail=0)
        self.ram.write(base, bytes(0x4000 + QUEUE_ENTRIES * BUF_SIZE))   # rings and buffers zeroed
        self.cc_write(QUEUE_SIZE, 2, QUEUE_ENTRIES)
        self.cc_write(QUEUE_MSIX_VECTOR, 2, NO_VECTOR)                    # polled: no interrupt
        for field, addr in ((QUEUE_DESC, q["desc"]), (QUEUE_DRIVER, q["avail"]), (QUEUE_DEVICE, q["used"])):
            self.cc_write(field, 4, addr & 0xFFFFFFFF)                      # 64-bit fields as two halves
            self.cc_write(field + 4, 4, addr >> 32)
        q["notify"] = self.notify + self.cc_read(QUEUE_NOTIFY_OFF, 2) * self.notify_multiplier
        self.cc_write(QUEUE_ENABLE, 2, 1)
        if self.cc_read(QUEUE_ENABLE, 2) != 1:
            raise RuntimeError(f"queue {index}: queue_enable refused")
        self.queues[index] = q

    # -- step 7: DRIVER_OK ------------------------------------------------------------------------
    def driver_ok(self) -> None:
        self.cc_write(DEVICE_STATUS, 1, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK)
        st = self.status()
        if st & (NEEDS_RESET | DRIVER_OK) != DRIVER_OK:
            raise RuntimeError(f"DRIVER_OK not taken (device_status {st:#x})")

    def post(self, index: int, data: bytes, writable: bool) -> int:
        """Puts one buffer (one descriptor) on the available ring and notifies the device."""
        q = self.queues[index]
        slot = q["next_avail"] % QUEUE_ENTRIES
        addr = q["buf"] + slot * BUF_SIZE
        length = BUF_SIZE if writable else len(data)
        if not writable:
            self.ram.write(addr, data)
        self.ram.write(q["desc"] + 16 * slot, struct.pack("<QIHH", addr, length, DESC_F_WRITE if writable else 0, 0))
        self.ram.write(q["avail"] + 4 + 2 * slot, struct.pack("<H", slot))
        q["next_avail"] += 1
        self.ram.write(q["avail"] + 2, struct.pack("<H", q["next_avail"] & 0xFFFF))   # avail.idx after the entry
        self.emu.mmio_write(q["notify"], 2, index)
        return slot

    def wait_used(self, index: int, timeout: float = 5.0):
        """Polls used.idx; returns (id, len) of the next used element."""
        q = self.queues[index]
        deadline = time.monotonic() + timeout
        while struct.unpack("<H", self.ram.read(q["used"] + 2, 2))[0] == q["last_used"] & 0xFFFF:
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue {index}: nothing used after {timeout} s "
                                   f"(device_status {self.status():#x})")
            time.sleep(0.002)
        pos = q["last_used"] % QUEUE_ENTRIES
        q["last_used"] += 1
        return struct.unpack("<II", self.ram.read(q["used"] + 4 + 8 * pos, 8))

    # -- step 8: send one frame -----------------------------------------------------------------
    def send(self, frame: bytes) -> int:
        self.post(TRANSMITQ, bytes(NET_HDR_LEN) + frame, writable=False)
        _, used_len = self.wait_used(TRANSMITQ)
        return used_len

    # -- step 9: receive one frame ----------------------------------------------------------------
    def post_receive_buffer(self) -> None:
        self.post(RECEIVEQ, b"", writable=True)

    def receive(self, timeout: float = 5.0) -> bytes:
        desc_id, used_len = self.wait_used(RECEIVEQ, timeout)
        addr = self.queues[RECEIVEQ]["buf"] + desc_id * BUF_SIZE
        return self.ram.read(addr + NET_HDR_LEN, used_len - NET_HDR_LEN)

    def close(self) -> None:
        self.ram.close()


def run(emu, out=print) -> None:
    drv = VirtioNetDriver.find(emu)
    try:
        out(f"virtio-net {pcieemu.format_bdf(drv.rid)} (1af4:1041) on Ethernet port {drv.port}")
        drv.enable()
        drv.find_structures()
        out(f"BAR4 structures: common {drv.common:#x}, notify {drv.notify:#x} (multiplier {drv.notify_multiplier}), "
            f"isr {drv.isr:#x}, device {drv.device:#x}")
        drv.reset()
        features = drv.negotiate()
        mac = drv.mac()
        out(f"features {features:#x} accepted (FEATURES_OK); mac {mac.hex(':')}")
        drv.setup_queue(RECEIVEQ)
        drv.setup_queue(TRANSMITQ)
        drv.driver_ok()
        out(f"DRIVER_OK: device_status {drv.status():#x}, {drv.cc_read(NUM_QUEUES, 2)} queues, RAM "
            f"{'mapped' if drv.ram.mapped else 'through Read/WriteMemory'}")

        frame = ethernet_frame(PEER_MAC, mac, b"hello from the virtio-net driver")
        with emu.capture_frames(drv.port, timeout=30) as cap:
            used_len = drv.send(frame)
            seen = next(cap)
        out(f"TX: used len {used_len}, CaptureFrames saw {len(seen.data)} bytes on port {seen.port}, "
            f"{'identical' if seen.data == frame else 'DIFFERENT'}")

        drv.post_receive_buffer()
        back = ethernet_frame(mac, PEER_MAC, b"hello from the wire")
        r = emu.inject_frame(drv.port, back)
        got = drv.receive()
        out(f"RX: InjectFrame accepted={r.accepted}, received {len(got)} bytes, "
            f"{'identical' if got == back else 'DIFFERENT'}")
    finally:
        drv.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default=None, help="tcp://host:port or unix:///path")
    ap.add_argument("--token-file", default=None,
                    help="TCP: the server's token file (default: $PCIEEMU_TOKEN, else the default token file)")
    args = ap.parse_args()
    with pcieemu.connect(args.target, token_file=args.token_file) as emu:
        emu.reset()
        run(emu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
