"""The shared-memory ring from Python, against a real server (docs/protocol.md, "Shared-memory ring")."""
import pytest

import pcieemu


def test_ring_orders_posted_writes_before_reads_and_reports_statuses(emu):
    with emu.open_ring(submission_entries=8, completion_entries=8) as ring:
        c = ring.config_read(0x0100, 0x00, 4)
        assert c.ok and c.value == 0x10C98086          # 82576 PF0 vendor/device
        ring.config_write(0x0100, 0x3C, 1, 0x5A)        # posted: no completion
        assert ring.config_read(0x0100, 0x3C, 1).value == 0x5A
        assert ring.config_read(0x7F00, 0x00, 4).status == pcieemu.pb.UNSUPPORTED_REQUEST
        assert ring.config_write(0x0100, 0x3C, 1, 0x11, ack=True).ok
        ring.write_memory(0x2000, b"ring!")
        assert ring.read_memory(0x2000, 5) == b"ring!"
        for k in range(20):                             # more entries than slots: the ring wraps
            ring.config_write(0x0100, 0x3C, 1, k)
        assert ring.config_read(0x0100, 0x3C, 1).value == 19
        bad = ring.config_read(0x0100, 0x1000, 4)       # offset beyond config space: rejected, named
        assert (bad.status, bad.field) == (0x100, 4)
        assert ring.errors == []
    assert emu.cfg_read8(0x0100, 0x3C) == 19            # the machine kept what the ring did


def test_a_failed_posted_write_is_reported_before_the_next_read(emu):
    with emu.open_ring() as ring:
        ring.mmio_write(0xFFFF_F000_0000, 4, 1)         # nobody claims it: UR, reported though posted
        assert ring.config_read(0x0100, 0x00, 2).value == 0x8086
        assert [e.status for e in ring.errors] == [pcieemu.pb.UNSUPPORTED_REQUEST]


def test_a_closed_ring_cannot_be_used(emu):
    ring = emu.open_ring()
    ring.close()
    ring.close()
    with pytest.raises(ValueError):
        ring.config_read(0x0100, 0, 4)
