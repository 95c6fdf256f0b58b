"""The 82576 NIC driven through the client: VMDq loopback VF0 -> VF1 with rings in the mapped RAM
file, VF1's MSI-X interrupt, CaptureFrames and InjectFrame (pcieemu.igb helpers)."""
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import pcieemu
from pcieemu import igb

PF0 = "01:00.0"
MAC0, MAC1 = igb.mac("02:00:00:00:10:00"), igb.mac("02:00:00:00:10:01")
PEER = igb.mac("02:00:00:00:99:99")


@pytest.fixture()
def nic(emu):
    st = emu.enable_vfs(PF0, 2)
    n = igb.Nic(emu, PF0)
    for vf in st.vfs:
        n.bus_master(vf)
    n.setup_vmdq([MAC0, MAC1])
    n.vfs = st.vfs
    yield n
    n.ram.close()


def test_frame_from_vf0_reaches_vf1_ring_and_raises_its_msix_vector(emu, nic):
    assert nic.ram.mapped  # the server runs on this machine: the RAM file is mmapped
    tx, rx = nic.vf_tx_ring(0), nic.vf_rx_ring(1)
    nic.vf_enable_rx_interrupt(1, vector=0, data=0x4321)
    frame = igb.ethernet_frame(MAC1, MAC0, bytes(range(100)))
    with emu.subscribe_interrupts([nic.vfs[1]], timeout=30) as irq:
        i = tx.post(frame)
        got = rx.receive(timeout=5)
        ev = next(irq)
    assert got == frame
    assert tx.tx_done(i) and tx.head == 1
    status, length = rx.last_write_back
    assert length == len(frame) and status & (igb.RX_STA_DD | igb.RX_STA_EOP) == igb.RX_STA_DD | igb.RX_STA_EOP
    assert rx.write_back(0) == (0, 0)  # re-armed and handed back to the device
    assert (ev.rid, ev.vector, ev.address, ev.data) == (int(nic.vfs[1]), 0, igb.MSI_ADDRESS, 0x4321)
    # loopback counters of both VFs, the wire saw nothing
    assert emu.read32(nic.vf_bar0(0) + igb.VF_GPTLBC) == 1
    assert emu.read32(nic.vf_bar0(1) + igb.VF_GPRLBC) == 1
    assert nic.pf_read(igb.PF_GPTC) == 0


def test_advanced_descriptor_layout_in_ram(emu, nic):
    tx = nic.vf_tx_ring(0)
    frame = igb.ethernet_frame(MAC1, MAC0)
    i = tx.post(frame, kick=False)
    addr, cmd, olinfo = struct.unpack("<QII", nic.ram.read(tx.desc_addr(i), 16))
    assert addr == tx.buffers[i] and cmd & 0xFFFF == 60 and (cmd >> 20) & 0xF == 3
    assert cmd & (igb.ADV_DCMD_EOP | igb.ADV_DCMD_RS | igb.ADV_DCMD_DEXT | igb.ADV_DCMD_IFCS) == \
        igb.ADV_DCMD_EOP | igb.ADV_DCMD_RS | igb.ADV_DCMD_DEXT | igb.ADV_DCMD_IFCS
    assert olinfo >> igb.ADV_PAYLEN_SHIFT == 60
    assert not tx.tx_done(i) and tx.head == 0  # TDT not written yet: the device has not seen it


def test_vf1_without_vfre_receives_nothing(emu, nic):
    tx, rx = nic.vf_tx_ring(0), nic.vf_rx_ring(1)
    nic.pf_write(igb.VFRE, 0b01)  # pool 1 (VF1) may not receive
    tx.post(igb.ethernet_frame(MAC1, MAC0))
    assert tx.tx_done(0)
    with pytest.raises(TimeoutError):
        rx.receive(timeout=0.3)


def test_frame_to_unknown_unicast_goes_to_the_wire(emu, nic):
    tx = nic.vf_tx_ring(0)
    frame = igb.ethernet_frame(PEER, MAC0, b"out")
    with emu.capture_frames(0, timeout=30) as cap:
        tx.post(frame)
        seen = next(cap)
    assert (seen.port, seen.data) == (0, frame) and seen.timestamp_ns > 0
    assert nic.pf_read(igb.PF_GPTC) == 1


def test_injected_frame_reaches_vf1(emu, nic):
    rx = nic.vf_rx_ring(1)
    frame = igb.ethernet_frame(MAC1, PEER, b"in")
    r = emu.inject_frame(0, frame)
    assert (r.accepted, r.queues) == (True, 1)
    assert rx.receive(timeout=5) == frame
    # a frame for nobody (unknown unicast, no default pool) is not taken
    r = emu.inject_frame(0, igb.ethernet_frame(igb.mac("02:00:00:00:55:55"), PEER))
    assert r.accepted is False


def test_inject_frame_errors_name_the_field(emu):
    with pytest.raises(pcieemu.ServerError) as e:
        emu.inject_frame(5, igb.ethernet_frame(MAC1, PEER))
    assert "port" in e.value.details
    with pytest.raises(pcieemu.ServerError) as e:
        emu.inject_frame(0, b"\x01\x02")
    assert "data" in e.value.details


def test_translate_address_at_reset_is_disabled(emu):
    r = emu.translate_address(PF0, 0x1234_5000, write=True)
    assert (pcieemu.pb.iommu_pb2.TranslationStatus.Name(r.status), r.translated_address, r.fault_reason) == \
        ("TRANSLATION_STATUS_TRANSLATION_DISABLED", 0x1234_5000, 0)


def test_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="mac"):
        igb.mac("02:00:00")
    with pytest.raises(ValueError):
        igb.ethernet_frame(b"\x00" * 5, MAC0)
    assert len(igb.ethernet_frame(MAC1, MAC0)) == 60
    a = igb.RamAllocator(0x1000, 0x3000)
    assert a.alloc(0x800) == 0x1000 and a.alloc(0x800) == 0x2000
    with pytest.raises(MemoryError):
        a.alloc(0x2000)


def test_example_driver_runs(server):
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PCIEEMU_TOKEN=server.token)   # the example finds the token in the environment
    r = subprocess.run([sys.executable, str(root / "examples" / "driver.py"), "--target", server.tcp_target],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "VF0 -> VF1: TX descriptor 0 DD=True, VF1 received 60 bytes, identical; MSI-X from 01:10.2" in r.stdout
    assert "VF0 -> wire: CaptureFrames saw 60 bytes on port 0, identical" in r.stdout
    assert "wire -> VF1: InjectFrame accepted=True queues=1, VF1 received 60 bytes, identical" in r.stdout
