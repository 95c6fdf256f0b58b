"""pcieemu.aio (grpc.aio) against the real server: the same calls as the blocking client."""
import asyncio
import socket
import threading

import grpc
import pytest

import pcieemu
import pcieemu.aio
from pcieemu import pb, regs


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_aio_config_capabilities_sriov_over_tcp_and_unix(server):
    async def main(target, token_file):
        async with await pcieemu.aio.connect(target, token_file=token_file) as emu:
            await emu.reset()
            fns = [pcieemu.format_bdf(f.rid) for f in await emu.list_functions()]
            assert fns == ["00:00.0", "00:01.0", "01:00.0", "01:00.1"]
            assert await emu.cfg_read32("01:00.0", 0) == 0x10C98086
            assert await emu.cfg_write8("01:00.0", 0x3C, 0x42) == pb.SUCCESSFUL
            assert await emu.cfg_read8("01:00.0", 0x3C) == 0x42
            r = await emu.config_read("01:00.2", 0, 4)
            assert (r.ok, r.value) == (False, 0xFFFFFFFF)
            assert await emu.capabilities("01:00.0") == [(regs.CAP_PM, 0x40), (regs.CAP_MSI, 0x50),
                                                         (regs.CAP_MSIX, 0x70), (regs.CAP_PCIE, 0xA0)]
            assert await emu.find_ext_capability("01:00.0", regs.EXT_CAP_SRIOV) == 0x160
            st = await emu.enable_vfs("01:00.0", 2, settle=0)
            assert (st.ari, st.first_vf_offset, st.vf_stride, st.vf_device_id) == (True, 0x80, 2, 0x10CA)
            assert await emu.cfg_read16(st.vfs[0], 2) == 0xFFFF  # a VF's Device ID reads all ones
            assert len(await emu.list_functions()) == 6
            await emu.disable_vfs("01:00.0")
            assert len(await emu.list_functions()) == 4
    run(main(server.tcp_target, server.token_file))
    run(main(server.unix_target, None))


def test_aio_mmio_memory_ram_map(server):
    async def main():
        async with await pcieemu.aio.connect(server.unix_target) as emu:
            await emu.reset()
            pf0 = next(f for f in await emu.list_functions() if f.rid == 0x100)
            bar0 = await emu.bar_address("01:00.0", 0)
            assert bar0 == next(b.address for b in pf0.bars if b.index == 0)
            await emu.cfg_write16("01:00.0", regs.COMMAND, 0x0006)
            r = await emu.mmio_read(bar0 + 0x8, 4)  # STATUS
            assert r.ok
            base = (await emu.get_platform()).ram_regions[0].base
            assert await emu.write_memory(base + 0x1000, b"\x01\x02\x03\x04") == 4
            assert await emu.read_memory(base + 0x1000, 4) == b"\x01\x02\x03\x04"
            for prefer in (True, False):
                ram = await emu.map_ram(prefer_mmap=prefer)
                assert ram.mapped == prefer
                await ram.write32(base + 0x2000 + 4 * prefer, 0xCAFEF00D)
                assert await emu.read_memory(base + 0x2000 + 4 * prefer, 4) == (0xCAFEF00D).to_bytes(4, "little")
                assert await ram.read32(base + 0x1000) == 0x04030201
                ram.close()
    run(main())


def test_aio_session_orders_posted_writes_and_batches(server):
    async def main():
        async with await pcieemu.aio.connect(server.tcp_target, token_file=server.token_file) as emu:
            await emu.reset()
            async with emu.session() as s:
                assert s.config_write("01:00.0", 0x3C, 1, 0x5A) is None  # posted
                c = await s.config_read("01:00.0", 0x3C, 1)
                assert (c.ok, c.value) == (True, 0x5A)
                futs = [s.config_read("01:00.0", 0, 4) for _ in range(600)]  # more than one batch
                assert {(await f).value for f in futs} == {0x10C98086}
                ack = await s.config_write("01:00.2", 0x3C, 1, 1, ack=True)
                assert not ack.ok
                await s.barrier()
            assert s.MAX_BATCH == 256
    run(main())


def test_aio_inject_capture_interrupts_translate(server):
    async def main():
        async with await pcieemu.aio.connect(server.unix_target) as emu:
            await emu.reset()
            async with await emu.capture_frames(0) as cap:
                assert isinstance(cap, pcieemu.aio.AsyncStreamSubscription)
            sub = await emu.subscribe_interrupts(["01:00.0"])
            sub.close()
            assert [e async for e in sub] == []
            resp = await emu.inject_frame(0, bytes(range(60)))
            assert resp.accepted is False  # the receiver is off after reset
            tr = await emu.translate_address("01:00.0", 0x1000)
            assert tr.translated_address == 0x1000  # translation is off after reset: passthrough
    run(main())


def test_aio_trace_subscription_in_order_and_bad_kind(server):
    expected = [
        (pb.trace_pb2.TRACE_KIND_CONFIG, "CFG", "W  Command [0x004] = 0x0006: I/O Space 1->0"),
        (pb.trace_pb2.TRACE_KIND_MMIO, "MMIO", "W  PF0 BAR0 EIMS = 0x00000001  (was 0x00000000)"),
        (pb.trace_pb2.TRACE_KIND_CONFIG, "CFG", "R  Vendor ID [0x000] -> 0x8086"),
    ]

    async def main():
        async with await pcieemu.aio.connect(server.tcp_target, token_file=server.token_file, timeout=0.5) as emu:
            await emu.reset(timeout=30)
            bar0 = await emu.bar_address("01:00.0", 0)
            async with await emu.subscribe_trace(["01:00.0"]) as sub:
                await asyncio.sleep(1.0)  # past the unary default deadline: the stream has none
                await emu.cfg_write16("01:00.1", 0x04, 0x0006)  # another function: filtered out
                await emu.cfg_write16("01:00.0", 0x04, 0x0006)
                await emu.write32(bar0 + 0x1524, 1)
                await emu.cfg_read16("01:00.0", 0x00)
                got = [await asyncio.wait_for(sub.__anext__(), 10) for _ in expected]
                sub.close()
                assert [e async for e in sub] == []
            assert [(e.kind, e.token, e.text) for e in got] == expected
            assert all(e.rid == 0x100 for e in got)
            with pytest.raises(pcieemu.ServerError) as e:
                await emu.subscribe_trace(["01:00.0"], kinds=["bogus"])
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and e.value.details.startswith("kinds[0]:")
            assert await emu.cfg_read16("01:00.0", 0) == 0x8086
    run(main())


def test_unary_calls_have_a_default_deadline_and_a_per_call_override():
    # A TCP listener that accepts and never speaks HTTP/2: every call must end by its deadline.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    conns = []
    stop = threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(lsock.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    target = f"tcp://127.0.0.1:{lsock.getsockname()[1]}"
    try:
        assert pcieemu.Client(target, token="t").timeout == 30.0
        c = pcieemu.connect(target, token="t", wait=0, timeout=60)
        with pytest.raises(pcieemu.ServerError) as e:
            c.config_read("01:00.0", 0, 4, timeout=0.5)
        assert e.value.code.name == "DEADLINE_EXCEEDED"
        c.close()

        async def main():
            a = await pcieemu.aio.connect(target, token="t", wait=0, timeout=0.5)
            with pytest.raises(pcieemu.ServerError) as e2:
                await a.list_functions()
            assert e2.value.code.name == "DEADLINE_EXCEEDED"
            with pytest.raises(pcieemu.ServerError) as e3:
                await a.get_platform(timeout=0.3)
            assert e3.value.code.name == "DEADLINE_EXCEEDED"
            await a.close()
        run(main(), timeout=20)
    finally:
        stop.set()
        t.join(5)
        for s in conns:
            s.close()
        lsock.close()


def test_aio_assert_no_violations_names_the_rule_and_passes_after_clear(server):
    async def main():
        async with await pcieemu.aio.connect(server.tcp_target, token_file=server.token_file) as emu:
            await emu.reset()
            await emu.clear_violations()
            await emu.assert_no_violations()
            await emu.cfg_write16("01:00.0", 0x170, 2)    # NumVFs
            await emu.cfg_write16("01:00.0", 0x168, 0x9)  # VF Enable | VF MSE
            await emu.cfg_write16("01:00.0", 0x170, 1)    # NumVFs while enabled
            with pytest.raises(pcieemu.ViolationsError) as e:
                await emu.assert_no_violations()
            assert "SRIOV.NUMVFS_WHILE_ENABLED" in str(e.value) and "01:00.0" in str(e.value)
            assert isinstance(e.value, AssertionError)
            assert [v.rule.id for v in (await emu.get_violations()).violations] == ["SRIOV.NUMVFS_WHILE_ENABLED"]
            assert await emu.clear_violations() == 1
            await emu.assert_no_violations()
            await emu.reset()  # VF Enable is still set: leave the shared server's machine at power-on state
    run(main())
