"""The asyncio API (grpc.aio): the blocking :class:`pcieemu.Client`'s calls, awaitable.

    import asyncio, pcieemu.aio

    async def main():
        async with await pcieemu.aio.connect("unix:///run/user/1000/pcie-emu/pcie-emu.sock") as emu:
            print(hex(await emu.cfg_read32("01:00.0", 0)))
            st = await emu.enable_vfs("01:00.0", 2)
            async with emu.session() as s:
                s.config_write(st.vfs[0], 0x04, 2, 0x0006)          # posted
                print(await s.config_read(st.vfs[0], 0x04, 2))     # sees the write
            async with await emu.capture_frames(0) as cap:
                async for frame in cap: ...

    asyncio.run(main())

Same target syntax, token lookup (TCP only), default deadline (30 s on unary calls, ``timeout=``
per call) and results as the blocking API; errors are :class:`pcieemu.ServerError`.
"""
from __future__ import annotations

import asyncio
from typing import Iterable, List, Optional, Tuple

import grpc
import grpc.aio

from . import _logic, pb
from .bdf import RidLike, to_rid
from .client import (DEFAULT_TIMEOUT, ChannelOwner, ConfigRead, ServerError, ViolationsError, trace_filter,
                     violations_request)
from .ram import RamView, map_region
from .session import _END, SessionBase, SessionError, take_batch, transact_request
from ._logic import SriovState

__all__ = ["AsyncClient", "AsyncRamView", "AsyncSession", "AsyncStreamSubscription", "connect"]


class AsyncClient(ChannelOwner):
    """One grpc.aio channel to a PcieEmu server; every call is a coroutine. Use ``async with``
    (or ``await close()``)."""

    def __init__(self, target: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT,
                 token: Optional[str] = None, token_file: Optional[str] = None):
        self.channel = self._open(target, timeout, token, token_file,
                                  lambda gt, options, _bearer: grpc.aio.insecure_channel(gt, options=options))

    # -- lifetime ---------------------------------------------------------------------------
    async def wait_ready(self, timeout: float = 10.0) -> "AsyncClient":
        """Waits until the channel is connected (raises asyncio.TimeoutError)."""
        await asyncio.wait_for(self.channel.channel_ready(), timeout)
        return self

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _call(self, fn, request, timeout: Optional[float] = None):
        try:
            return await fn(request, timeout=self.timeout if timeout is None else timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise ServerError(e) from None

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep (the shared SR-IOV sequence waits through it)."""
        await asyncio.sleep(seconds)

    # -- platform ---------------------------------------------------------------------------
    async def get_platform(self, timeout: Optional[float] = None):
        return await self._call(self.platform_stub.GetPlatform, pb.platform_pb2.GetPlatformRequest(), timeout)

    async def list_functions(self, timeout: Optional[float] = None) -> list:
        return list((await self._call(self.platform_stub.ListFunctions, pb.platform_pb2.ListFunctionsRequest(),
                                      timeout)).functions)

    async def reset(self, timeout: Optional[float] = None) -> int:
        return (await self._call(self.platform_stub.ResetPlatform, pb.platform_pb2.ResetPlatformRequest(),
                                 timeout)).functions

    # -- config -----------------------------------------------------------------------------
    async def config_read(self, rid: RidLike, offset: int, width: int = 4, timeout: Optional[float] = None) -> ConfigRead:
        r = await self._call(self.config_stub.ReadConfig,
                             pb.config_pb2.ReadConfigRequest(rid=to_rid(rid), offset=offset, width=width), timeout)
        return ConfigRead(r.status, r.value)

    async def config_write(self, rid: RidLike, offset: int, width: int, value: int,
                           timeout: Optional[float] = None) -> int:
        req = pb.config_pb2.WriteConfigRequest(rid=to_rid(rid), offset=offset, width=width, value=value)
        return (await self._call(self.config_stub.WriteConfig, req, timeout)).status

    async def cfg_read8(self, rid: RidLike, offset: int, timeout: Optional[float] = None) -> int:
        return (await self.config_read(rid, offset, 1, timeout)).value

    async def cfg_read16(self, rid: RidLike, offset: int, timeout: Optional[float] = None) -> int:
        return (await self.config_read(rid, offset, 2, timeout)).value

    async def cfg_read32(self, rid: RidLike, offset: int, timeout: Optional[float] = None) -> int:
        return (await self.config_read(rid, offset, 4, timeout)).value

    async def cfg_write8(self, rid: RidLike, offset: int, value: int, timeout: Optional[float] = None) -> int:
        return await self.config_write(rid, offset, 1, value, timeout)

    async def cfg_write16(self, rid: RidLike, offset: int, value: int, timeout: Optional[float] = None) -> int:
        return await self.config_write(rid, offset, 2, value, timeout)

    async def cfg_write32(self, rid: RidLike, offset: int, value: int, timeout: Optional[float] = None) -> int:
        return await self.config_write(rid, offset, 4, value, timeout)

    # -- capabilities -------------------------------------------------------------------------
    async def capabilities(self, rid: RidLike) -> List[Tuple[int, int]]:
        return await _logic.capabilities(self, rid)

    async def ext_capabilities(self, rid: RidLike) -> List[Tuple[int, int, int]]:
        return await _logic.ext_capabilities(self, rid)

    async def find_capability(self, rid: RidLike, cap_id: int) -> Optional[int]:
        return await _logic.find_capability(self, rid, cap_id)

    async def find_ext_capability(self, rid: RidLike, cap_id: int) -> Optional[int]:
        return await _logic.find_ext_capability(self, rid, cap_id)

    async def bar_address(self, rid: RidLike, index: int) -> int:
        return await _logic.bar_address(self, rid, index)

    # -- SR-IOV -----------------------------------------------------------------------------
    async def enable_vfs(self, pf: RidLike, num_vfs: int, ari: Optional[bool] = None, settle: float = 0.1) -> SriovState:
        """Linux-style SR-IOV enable (``ari=None``: ARI when the port and device support it)."""
        return await _logic.enable_vfs(self, pf, num_vfs, ari=ari, settle=settle)

    async def disable_vfs(self, pf: RidLike) -> None:
        await _logic.disable_vfs(self, pf)

    # -- MMIO -------------------------------------------------------------------------------
    async def mmio_read(self, address: int, width: int = 4, timeout: Optional[float] = None) -> ConfigRead:
        r = await self._call(self.mmio_stub.ReadMmio, pb.mmio_pb2.ReadMmioRequest(address=address, width=width), timeout)
        return ConfigRead(r.status, r.value)

    async def mmio_write(self, address: int, width: int, value: int, timeout: Optional[float] = None) -> int:
        req = pb.mmio_pb2.WriteMmioRequest(address=address, width=width, value=value)
        return (await self._call(self.mmio_stub.WriteMmio, req, timeout)).status

    async def read32(self, address: int, timeout: Optional[float] = None) -> int:
        return (await self.mmio_read(address, 4, timeout)).value

    async def write32(self, address: int, value: int, timeout: Optional[float] = None) -> int:
        return await self.mmio_write(address, 4, value, timeout)

    # -- memory -----------------------------------------------------------------------------
    async def read_memory(self, address: int, length: int, timeout: Optional[float] = None) -> bytes:
        req = pb.memory_pb2.ReadMemoryRequest(address=address, length=length)
        return (await self._call(self.memory_stub.ReadMemory, req, timeout)).data

    async def write_memory(self, address: int, data: bytes, timeout: Optional[float] = None) -> int:
        req = pb.memory_pb2.WriteMemoryRequest(address=address, data=bytes(data))
        return (await self._call(self.memory_stub.WriteMemory, req, timeout)).length

    async def map_ram(self, prefer_mmap: bool = True) -> "AsyncRamView":
        """RAM: the shared file mapped with mmap when reachable (``mapped``), else RPCs."""
        region = (await self.get_platform()).ram_regions[0]
        mm = map_region(region, prefer_mmap and self.is_local)
        return AsyncRamView(self, RamView(None, region.base, region.size, mm, region.shared_file_path))

    # -- Ethernet / IOMMU -------------------------------------------------------------------
    async def inject_frame(self, port: int, data: bytes, timeout: Optional[float] = None):
        """InjectFrameResponse (accepted, queues) for ``data`` delivered to ``port`` from the wire."""
        req = pb.ethernet_pb2.InjectFrameRequest(port=port, data=bytes(data))
        return await self._call(self.ethernet_stub.InjectFrame, req, timeout)

    async def translate_address(self, rid: RidLike, address: int, write: bool = False, dry_run: bool = True,
                                timeout: Optional[float] = None):
        req = pb.iommu_pb2.TranslateAddressRequest(rid=to_rid(rid), address=address, write=write, dry_run=dry_run)
        return await self._call(self.iommu_stub.TranslateAddress, req, timeout)

    # -- streams ----------------------------------------------------------------------------
    def session(self) -> "AsyncSession":
        """The ordered Session stream: ``async with emu.session() as s``."""
        return AsyncSession(self)

    async def subscribe_interrupts(self, rids: Optional[Iterable[RidLike]] = None,
                                   timeout: Optional[float] = None) -> "AsyncStreamSubscription":
        """Interrupt events for ``rids`` (all when empty); live when this returns; ``async for``."""
        req = pb.interrupt_pb2.SubscribeInterruptsRequest(rids=[to_rid(r) for r in (rids or [])])
        return await AsyncStreamSubscription.open(
            self.interrupt_stub.SubscribeInterrupts(req, timeout=timeout, metadata=self._metadata))

    async def capture_frames(self, port: int = 0, timeout: Optional[float] = None) -> "AsyncStreamSubscription":
        """Frames ``port`` transmits onto the wire (CapturedFrame); live when this returns; ``async for``."""
        req = pb.ethernet_pb2.CaptureFramesRequest(port=port)
        return await AsyncStreamSubscription.open(
            self.ethernet_stub.CaptureFrames(req, timeout=timeout, metadata=self._metadata))


    async def subscribe_trace(self, rids: Optional[Iterable[RidLike]] = None, kinds: Optional[Iterable[str]] = None,
                              timeout: Optional[float] = None) -> "AsyncStreamSubscription":
        """Decoded transactions (TraceEvent) passing the filter, in order; live when this returns;
        ``async for``; no deadline unless ``timeout``; see :meth:`pcieemu.Client.subscribe_trace`."""
        return await AsyncStreamSubscription.open(
            self.trace_stub.Subscribe(trace_filter(rids, kinds), timeout=timeout, metadata=self._metadata))


    # -- driver-conduct checker (docs/checker.md) ---------------------------------------------
    async def get_violations(self, rule_ids: Optional[Iterable[str]] = None, rids: Optional[Iterable[RidLike]] = None,
                             after_sequence: int = 0, timeout: Optional[float] = None):
        """GetViolationsResponse; see :meth:`pcieemu.Client.get_violations`."""
        return await self._call(self.trace_stub.GetViolations, violations_request(rule_ids, rids, after_sequence), timeout)

    async def clear_violations(self, timeout: Optional[float] = None) -> int:
        """Forgets the violations recorded so far; returns how many."""
        return (await self._call(self.trace_stub.ClearViolations, pb.trace_pb2.ClearViolationsRequest(), timeout)).cleared

    async def assert_no_violations(self, timeout: Optional[float] = None) -> None:
        """Raises :class:`pcieemu.ViolationsError` (an AssertionError) listing every violation
        recorded so far, or returns when there is none."""
        r = await self.get_violations(timeout=timeout)
        if r.violations or r.dropped:
            raise ViolationsError(r.violations, r.dropped)


class _Status(grpc.RpcError):
    """A finished call's status in the shape ServerError reads."""

    def __init__(self, code: grpc.StatusCode, details: Optional[str]):
        super().__init__()
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> Optional[str]:
        return self._details


class AsyncStreamSubscription:
    """A server stream as an async iterator; ``close()`` (or leaving ``async with``) cancels it."""

    def __init__(self, call):
        self._call = call

    @classmethod
    async def open(cls, call) -> "AsyncStreamSubscription":
        try:
            await call.initial_metadata()  # sent once the server registered the subscription
            if call.done():  # refused (bad filter, limit): the status came instead of headers
                code, details = await call.code(), await call.details()
                if code != grpc.StatusCode.OK:
                    raise ServerError(_Status(code, details))
        except grpc.RpcError as e:
            raise ServerError(e) from None
        return cls(call)

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            msg = await self._call.read()
        except asyncio.CancelledError:
            raise StopAsyncIteration from None
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                raise StopAsyncIteration from None
            raise ServerError(e) from None
        if msg is grpc.aio.EOF:
            raise StopAsyncIteration
        return msg

    def close(self) -> None:
        self._call.cancel()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()


class AsyncRamView:
    """RAM through the mapped file (``mapped``) or the Read/WriteMemory RPCs; awaitable calls."""

    def __init__(self, client: AsyncClient, view: RamView):
        self._client, self._view = client, view
        self.base, self.size, self.path = view.base, view.size, view.path

    @property
    def mapped(self) -> bool:
        return self._view.mapped

    async def read(self, address: int, length: int) -> bytes:
        if self._view.mapped:
            return self._view.read(address, length)
        self._view._check(address, length)
        return await self._client.read_memory(address, length)

    async def write(self, address: int, data: bytes) -> None:
        if self._view.mapped:
            self._view.write(address, data)
            return
        self._view._check(address, len(data))
        await self._client.write_memory(address, data)

    async def read32(self, address: int) -> int:
        return int.from_bytes(await self.read(address, 4), "little")

    async def write32(self, address: int, value: int) -> None:
        await self.write(address, value.to_bytes(4, "little"))

    def close(self) -> None:
        self._view.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()


class AsyncSession(SessionBase):
    """One Transact stream on the event loop: operations return :class:`asyncio.Future` objects
    (reads, acked writes) or None (posted writes); queued transactions are coalesced into batches
    of up to 256."""

    def __init__(self, client: AsyncClient):
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._queue: "asyncio.Queue" = asyncio.Queue()
        self._call = client.session_stub.Transact(self._requests(), metadata=client._metadata)
        self._reader = self._loop.create_task(self._read())

    def _new_future(self) -> "asyncio.Future":
        return self._loop.create_future()

    def _enqueue(self, transaction) -> None:
        self._queue.put_nowait(transaction)

    async def _requests(self):
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            items, end = take_batch(item, self._queue.get_nowait, asyncio.QueueEmpty, self.MAX_BATCH)
            yield transact_request(items)
            if end:
                return

    async def _read(self) -> None:
        err = None
        try:
            async for resp in self._call:
                self._complete_all(resp)
        except grpc.RpcError as e:
            err = SessionError(e.code(), e.details() or "")
        self._finish(err)

    async def barrier(self, timeout: float = 10.0) -> None:
        """Waits until every earlier request has been executed."""
        await asyncio.wait_for(self.config_read(0, 0, 4), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        """Half-closes the stream and waits for outstanding completions (cancels it after ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_END)
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except asyncio.TimeoutError:
            self._call.cancel()
            await asyncio.wait_for(self._reader, timeout)

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


async def connect(target: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT, wait: float = 10.0,
                  token: Optional[str] = None, token_file: Optional[str] = None) -> AsyncClient:
    """Connects like :func:`pcieemu.connect`; awaitable. ``wait=0`` does not wait for the server."""
    c = AsyncClient(target, timeout=timeout, token=token, token_file=token_file)
    if wait:
        try:
            await c.wait_ready(wait)
        except asyncio.TimeoutError:
            await c.close()
            raise ConnectionError(f"no PcieEmu server answered at {c.target} within {wait} s") from None
    return c
