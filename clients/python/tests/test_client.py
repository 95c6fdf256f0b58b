"""The pcieemu client against a real server (started once per test session)."""
import threading
import time

import grpc
import pytest

import pcieemu
from pcieemu import pb, regs


def test_connect_over_tcp_and_unix(server):
    for target, token_file in ((server.tcp_target, server.token_file), (server.unix_target, None)):
        with pcieemu.connect(target, token_file=token_file) as c:
            assert [str(pcieemu.Bdf.from_rid(f.rid)) for f in c.list_functions()] == ["00:00.0", "00:01.0", "01:00.0", "01:00.1"]


def test_connect_to_nothing_fails_clearly():
    with pytest.raises(ConnectionError, match="no PcieEmu server"):
        pcieemu.connect("tcp://127.0.0.1:1", wait=0.5)


def test_config_read_write_by_width(emu):
    assert emu.cfg_read32("01:00.0", 0) == 0x10C98086
    assert emu.cfg_read16("01:00.0", 2) == 0x10C9
    assert emu.cfg_read8("01:00.0", 0) == 0x86
    assert emu.cfg_write8("01:00.0", 0x3C, 0x42) == pb.SUCCESSFUL
    assert emu.cfg_read8("01:00.0", 0x3C) == 0x42
    r = emu.config_read("01:00.2", 0, 4)
    assert (r.ok, r.status_name, r.value) == (False, "UNSUPPORTED_REQUEST", 0xFFFFFFFF)


def test_malformed_requests_raise_server_error_naming_the_field(emu):
    with pytest.raises(pcieemu.ServerError) as e:
        emu.config_read("01:00.0", 0, 3)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "width" in e.value.details
    with pytest.raises(pcieemu.ServerError) as e:
        emu.read_memory(1 << 40, 4)
    assert e.value.code == grpc.StatusCode.OUT_OF_RANGE


def test_capability_walks(emu):
    assert list(emu.capabilities("01:00.0")) == [(regs.CAP_PM, 0x40), (regs.CAP_MSI, 0x50), (regs.CAP_MSIX, 0x70), (regs.CAP_PCIE, 0xA0)]
    assert list(emu.ext_capabilities("01:00.0")) == [(regs.EXT_CAP_AER, 1, 0x100), (regs.EXT_CAP_DSN, 1, 0x140),
                                                      (regs.EXT_CAP_ARI, 1, 0x150), (regs.EXT_CAP_SRIOV, 1, 0x160)]
    assert emu.find_capability("00:01.0", regs.CAP_PCIE) == 0x40
    assert emu.find_ext_capability("00:00.0", regs.EXT_CAP_SRIOV) is None
    assert list(emu.capabilities("00:00.0")) == []


def test_bar_address_matches_list_functions(emu):
    pf0 = next(f for f in emu.list_functions() if f.rid == 0x100)
    for bar in pf0.bars:
        if bar.index < 6:
            assert emu.bar_address("01:00.0", bar.index) == bar.address


def test_sriov_enable_without_ari(emu):
    st = emu.enable_vfs("01:00.0", 2, ari=False, settle=0)
    assert (st.first_vf_offset, st.vf_stride, st.ari, st.vf_device_id) == (0x180, 2, False, 0x10CA)
    assert [str(v) for v in st.vfs] == ["02:10.0", "02:10.2"]
    assert emu.cfg_read16("01:00.0", 0x168) & 0x9 == 0x9
    vfs = [f for f in emu.list_functions() if f.is_virtual]
    assert [(f.rid, f.device_id, f.physical_function_rid) for f in vfs] == [(0x280, 0x10CA, 0x100), (0x282, 0x10CA, 0x100)]
    assert emu.config_read("01:10.0", 8, 4).status_name == "UNSUPPORTED_REQUEST"
    emu.disable_vfs("01:00.0")
    assert not any(f.is_virtual for f in emu.list_functions())
    assert emu.cfg_read16("01:00.0", 0x170) == 0


def test_sriov_enable_with_ari(emu):
    st = emu.enable_vfs("01:00.0", 2, settle=0)
    assert st.ari and st.first_vf_offset == 0x80
    assert [str(v) for v in st.vfs] == ["01:10.0", "01:10.2"]
    assert emu.cfg_read16("00:01.0", 0x68) & regs.DEVCTL2_ARI_FORWARDING
    assert emu.cfg_read16("01:00.0", 0x168) & regs.SRIOV_CTRL_ARI_CAPABLE
    assert emu.config_read("01:10.2", 8, 4).value >> 8 == 0x020000
    assert emu.get_platform().root_ports[0].ari_forwarding_enabled
    with pytest.raises(RuntimeError, match="already has VFs"):
        emu.enable_vfs("01:00.0", 1, settle=0)
    emu.disable_vfs("01:00.0")
    # switching ARI off again moves the VFs back to bus 2
    st = emu.enable_vfs("01:00.0", 1, ari=False, settle=0)
    assert [str(v) for v in st.vfs] == ["02:10.0"]


def test_sriov_rejects_bad_counts(emu):
    with pytest.raises(ValueError, match="num_vfs"):
        emu.enable_vfs("01:00.0", 9, settle=0)
    with pytest.raises(ValueError, match="no SR-IOV"):
        emu.enable_vfs("00:01.0", 1, settle=0)


def test_ram_mmap_and_rpc_fallback_see_the_same_bytes(emu):
    with emu.map_ram() as mapped, emu.map_ram(prefer_mmap=False) as remote:
        assert mapped.mapped and not remote.mapped
        mapped.write(0x8000, b"hello, device")
        assert remote.read(0x8000, 13) == b"hello, device"
        remote.write32(0x9000, 0xCAFEF00D)
        assert mapped.read32(0x9000) == 0xCAFEF00D
        assert emu.mmio_read(0x9000, 4).value == 0xCAFEF00D
        with pytest.raises(IndexError):
            mapped.read(mapped.size - 2, 4)


def test_session_posted_writes_are_seen_by_later_reads(emu):
    with emu.session() as s:
        assert s.config_write("01:00.0", 0x3C, 1, 0x21) is None  # posted: nothing to wait for
        f = s.config_read("01:00.0", 0x3C, 1)
        s.mmio_write(0xA000, 8, 0x0123456789ABCDEF)
        g = s.mmio_read(0xA000, 8)
        s.memory_write(0xA010, b"\x01\x02")
        h = s.memory_read(0xA010, 2)
        assert f.result(10).value == 0x21
        assert g.result(10).value == 0x0123456789ABCDEF
        assert h.result(10).data == b"\x01\x02"
        ack = s.config_write("01:00.0", 0x0C, 1, 0x08, ack=True)
        assert ack.result(10).ok
        s.config_write("01:00.2", 0x04, 2, 6)  # fails UR: reported, not raised
        s.barrier()
    assert [c.status for c in s.errors] == [pb.UNSUPPORTED_REQUEST]


def test_session_pipelined_reads_complete_in_order(emu):
    with emu.session() as s:
        futures = [s.config_read("01:00.0", 0, 4) for _ in range(300)]
        results = [f.result(10) for f in futures]
    assert all(r.value == 0x10C98086 for r in results)
    tags = [r.tag for r in results]
    assert tags == sorted(tags)


def test_session_error_fails_outstanding_futures(emu):
    s = emu.session()
    bad = s.config_read("01:00.0", 0, 3)
    with pytest.raises(pcieemu.SessionError) as e:
        bad.result(10)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "width" in e.value.details
    s.close()


def test_interrupt_subscription_iterates_and_closes(emu):
    bar0, bar3 = emu.bar_address("01:00.0", 0), emu.bar_address("01:00.0", 3)
    sub = emu.subscribe_interrupts(["01:00.0"], timeout=30)
    received, errors, got_one = [], [], threading.Event()

    def consume():
        try:
            for ev in sub:
                received.append(ev)
                got_one.set()
        except Exception as e:  # noqa: BLE001 - the test asserts there is none
            errors.append(e)

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    emu.write32(bar3 + 0x0, 0xFEE00000)   # MSI-X entry 0: address, data, unmasked
    emu.write32(bar3 + 0x8, 0x31)
    emu.write32(bar3 + 0xC, 0)
    emu.cfg_write16("01:00.0", 0x72, 0x8000)  # MSI-X Enable
    emu.write32(bar0 + 0x1514, 0x10)          # GPIE: MSI-X mode
    emu.write32(bar0 + 0x1524, 1)             # EIMS
    emu.write32(bar0 + 0x1520, 1)             # EICS: cause 0 -> vector 0
    assert got_one.wait(10), "the iterating thread never received the MSI-X event"
    sub.close()  # cancelling ends the iteration cleanly: StopIteration, not an error
    t.join(10)
    assert not t.is_alive(), "close() did not end the iteration"
    assert not errors, f"the iteration ended with an error instead of stopping: {errors!r}"
    assert [(ev.rid, ev.vector, ev.data) for ev in received] == [(0x100, 0, 0x31)]


def test_interrupt_subscription_yields_msix_events(emu):
    bar0, bar3 = emu.bar_address("01:00.0", 0), emu.bar_address("01:00.0", 3)
    with emu.subscribe_interrupts(["01:00.0"], timeout=30) as sub:
        emu.write32(bar3 + 0x0, 0xFEE00000)   # MSI-X entry 0: address, data, unmasked
        emu.write32(bar3 + 0x8, 0x31)
        emu.write32(bar3 + 0xC, 0)
        emu.cfg_write16("01:00.0", 0x72, 0x8000)  # MSI-X Enable
        emu.write32(bar0 + 0x1514, 0x10)          # GPIE: MSI-X mode
        emu.write32(bar0 + 0x1524, 1)             # EIMS
        emu.write32(bar0 + 0x1520, 1)             # EICS: cause 0 -> vector 0
        ev = next(sub)
    assert (ev.rid, ev.kind, ev.address, ev.data, ev.vector) == (0x100, pb.interrupt_pb2.INTERRUPT_KIND_MSIX, 0xFEE00000, 0x31, 0)


def test_interrupt_subscription_bad_rid(emu):
    with pytest.raises(ValueError, match="rid"):
        emu.subscribe_interrupts([0x10000])  # checked before it is sent
    call = emu.interrupt_stub.SubscribeInterrupts(pb.interrupt_pb2.SubscribeInterruptsRequest(rids=[0x10000]), timeout=10)
    with pytest.raises(pcieemu.ServerError) as e:
        next(pcieemu.client.InterruptSubscription(call))
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "rids" in e.value.details


TRACE_EXPECTED = [
    (pb.trace_pb2.TRACE_KIND_CONFIG, "CFG", "W  Command [0x004] = 0x0006: I/O Space 1->0"),
    (pb.trace_pb2.TRACE_KIND_MMIO, "MMIO", "W  PF0 BAR0 EIMS = 0x00000001  (was 0x00000000)"),
    (pb.trace_pb2.TRACE_KIND_CONFIG, "CFG", "R  Vendor ID [0x000] -> 0x8086"),
]


def test_trace_subscription_sees_the_functions_events_in_order(server):
    # A 0.5 s default deadline on unary calls must not end the stream: it has none unless asked.
    with pcieemu.connect(server.tcp_target, token_file=server.token_file, timeout=0.5) as emu:
        emu.reset(timeout=30)
        bar0 = emu.bar_address("01:00.0", 0)
        with emu.subscribe_trace(["01:00.0"]) as sub:
            time.sleep(1.0)
            emu.cfg_write16("01:00.1", 0x04, 0x0006)  # another function: filtered out
            emu.cfg_write16("01:00.0", 0x04, 0x0006)
            emu.write32(bar0 + 0x1524, 1)        # EIMS
            emu.cfg_read16("01:00.0", 0x00)      # the marker: nothing else came in between
            got = [next(sub) for _ in TRACE_EXPECTED]
            sub.close()
            assert list(sub) == []  # cancelled: the iteration just ends
    assert [(e.kind, e.token, e.text) for e in got] == TRACE_EXPECTED
    assert all(e.rid == 0x100 for e in got)
    assert got[0].sequence < got[1].sequence < got[2].sequence
    assert (got[1].write, got[1].address, got[1].value, got[1].register) == (True, bar0 + 0x1524, 1, "EIMS")


def test_trace_subscription_filters_by_kind_and_rejects_a_bad_kind(emu):
    bar0 = emu.bar_address("01:00.0", 0)
    with emu.subscribe_trace([pcieemu.Bdf(1, 0, 0)], kinds=["mmio"], timeout=30) as sub:
        emu.cfg_write16("01:00.0", 0x04, 0x0006)
        emu.write32(bar0 + 0x1524, 1)
        ev = next(sub)
    assert (ev.kind, ev.text) == TRACE_EXPECTED[1][::2]
    with pytest.raises(pcieemu.ServerError) as e:
        emu.subscribe_trace(["01:00.0"], kinds=["bogus"])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.details.startswith("kinds[0]:")
    with pytest.raises(pcieemu.ServerError) as e:
        emu.subscribe_trace(["01:10"])
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.details.startswith("rids[0]:")
    assert emu.cfg_read16("01:00.0", 0) == 0x8086  # the server goes on


def test_example_driver_runs(server):
    import runpy
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[1] / "examples" / "driver.py"
    old = sys.argv
    sys.argv = [str(script), "--target", server.tcp_target, "--token-file", server.token_file]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None)
    finally:
        sys.argv = old


def _misbehave(cfg_write16):
    # PF0's SR-IOV capability is at 0x160: NumVFs at +0x10, SR-IOV Control at +0x08.
    cfg_write16("01:00.0", 0x170, 2)    # NumVFs
    cfg_write16("01:00.0", 0x168, 0x9)  # VF Enable | VF MSE
    cfg_write16("01:00.0", 0x170, 1)    # NumVFs while VF Enable is set: SRIOV.NUMVFS_WHILE_ENABLED


def test_assert_no_violations_names_the_rule_and_passes_after_clear(emu):
    emu.clear_violations()
    emu.assert_no_violations()
    _misbehave(emu.cfg_write16)
    r = emu.get_violations()
    assert [v.rule.id for v in r.violations] == ["SRIOV.NUMVFS_WHILE_ENABLED"]
    assert r.violations[0].requester == "01:00.0"
    assert len(emu.get_violations(rule_ids=["VTD.FAULT"]).violations) == 0
    assert len(emu.get_violations(rids=["01:00.0"]).violations) == 1
    with pytest.raises(AssertionError) as e:
        emu.assert_no_violations()
    assert isinstance(e.value, pcieemu.ViolationsError)
    assert "SRIOV.NUMVFS_WHILE_ENABLED" in str(e.value) and "01:00.0" in str(e.value)
    assert "Hint: Clear VF Enable" in str(e.value)
    assert [v.rule.id for v in e.value.violations] == ["SRIOV.NUMVFS_WHILE_ENABLED"]
    with pytest.raises(pcieemu.ServerError) as bad:
        emu.get_violations(rule_ids=["NO.SUCH_RULE"])
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT and bad.value.details.startswith("rule_ids[0]")
    assert emu.clear_violations() == 1
    emu.assert_no_violations()
    emu.reset()  # VF Enable is still set: leave the shared server's machine as the next test expects
