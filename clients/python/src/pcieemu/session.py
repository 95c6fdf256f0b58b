"""The ordered Session stream: posted writes, non-posted reads, completions matched by tag.

    with emu.session() as s:
        s.config_write("01:00.0", 0x04, 2, 0x0006)      # posted: returns at once
        f = s.config_read("01:00.0", 0x04, 2)           # a Future; sees the write above
        print(hex(f.result().value))

Writes get no completion unless they fail or ``ack=True``; a failed posted write is recorded in
``Session.errors``. Reads can be pipelined: issue many, then collect the futures.
"""
from __future__ import annotations

import itertools
import queue
import threading
from concurrent.futures import Future
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

import grpc

from . import pb
from .bdf import RidLike, to_rid

_END = object()


class SessionError(RuntimeError):
    """The stream ended with a gRPC error; every outstanding future fails with it."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self.code, self.details = code, details
        super().__init__(f"{code.name}: {details}")


class Completion:
    """A completion from the stream."""
    __slots__ = ("tag", "status", "value", "data", "kind")

    def __init__(self, c):
        self.tag, self.status, self.value, self.data, self.kind = c.tag, c.status, c.value, c.data, c.kind

    @property
    def ok(self) -> bool:
        return self.status == pb.SUCCESSFUL

    def __repr__(self) -> str:
        return f"Completion(tag={self.tag}, status={pb.status_name(self.status)}, value={self.value:#x})"


def take_batch(first, get_nowait: Callable[[], Any], empty: Type[Exception], limit: int) -> Tuple[List, bool]:
    """``first`` and whatever else is queued now, up to ``limit`` transactions; True when the end
    marker was met (the stream must end after this batch)."""
    items = [first]
    while len(items) < limit:
        try:
            nxt = get_nowait()
        except empty:
            break
        if nxt is _END:
            return items, True
        items.append(nxt)
    return items, False


def transact_request(items: List) -> "pb.session_pb2.TransactRequest":
    """One TransactRequest for queued Transactions: the op itself for one, a batch for more."""
    if len(items) == 1:
        item = items[0]
        req = pb.session_pb2.TransactRequest(tag=item.tag)
        field = item.WhichOneof("op")
        getattr(req, field).CopyFrom(getattr(item, field))
        return req
    return pb.session_pb2.TransactRequest(batch=items)


class SessionBase:
    """What both Session flavours share: tags, the pending futures, completion matching and the
    operations. A subclass provides ``_new_future()`` and ``_enqueue(transaction)``."""

    MAX_BATCH = 256  # the batch default of every client: transactions coalesced into one message (server limit: ServerLimits.max_transactions_per_message)

    def __init__(self) -> None:
        self._pending: Dict[int, Any] = {}
        self._lock = threading.Lock()
        self._tags = itertools.count(1)
        self._closed = False
        self.errors: List[Completion] = []        # failed posted writes (no ack asked)
        self.failure: Optional[SessionError] = None

    def _new_future(self) -> Any:
        raise NotImplementedError

    def _enqueue(self, transaction) -> None:
        raise NotImplementedError

    def _complete(self, c) -> None:
        comp = Completion(c)
        with self._lock:
            fut = self._pending.pop(comp.tag, None)
        if fut is not None:
            fut.set_result(comp)
        elif not comp.ok:
            self.errors.append(comp)

    def _complete_all(self, resp) -> None:
        self._complete(resp)
        for more in resp.more:
            self._complete(more)

    def _finish(self, err: Optional[SessionError]) -> None:
        """The stream ended (``err`` None: cleanly); fails whatever is still outstanding."""
        with self._lock:
            if err is None and self._pending:
                err = SessionError(grpc.StatusCode.UNKNOWN, "stream ended with requests outstanding")
            self.failure = err if err is not None and err.code != grpc.StatusCode.CANCELLED else None
            pending, self._pending = self._pending, {}
        for f in pending.values():
            if not f.done():
                f.set_exception(err or SessionError(grpc.StatusCode.CANCELLED, "session closed"))

    def _submit(self, field: str, op, want_completion: bool, tag: Optional[int] = None):
        if self._closed:
            raise RuntimeError("session is closed")
        tag = next(self._tags) if tag is None else tag
        fut = None
        if want_completion:
            fut = self._new_future()
            with self._lock:
                if self.failure is not None:
                    raise self.failure
                self._pending[tag] = fut
        self._enqueue(pb.session_pb2.Transaction(tag=tag, **{field: op}))
        return fut

    # -- operations (a future of a Completion for reads and acked writes; None for posted writes) --
    def config_read(self, rid: RidLike, offset: int, width: int = 4):
        return self._submit("config_read", pb.session_pb2.ConfigReadOp(rid=to_rid(rid), offset=offset, width=width), True)

    def config_write(self, rid: RidLike, offset: int, width: int, value: int, ack: bool = False):
        op = pb.session_pb2.ConfigWriteOp(rid=to_rid(rid), offset=offset, width=width, value=value, ack=ack)
        return self._submit("config_write", op, ack)

    def mmio_read(self, address: int, width: int = 4):
        return self._submit("mmio_read", pb.session_pb2.MmioReadOp(address=address, width=width), True)

    def mmio_write(self, address: int, width: int, value: int, ack: bool = False):
        return self._submit("mmio_write", pb.session_pb2.MmioWriteOp(address=address, width=width, value=value, ack=ack), ack)

    def memory_read(self, address: int, length: int):
        return self._submit("memory_read", pb.session_pb2.MemoryReadOp(address=address, length=length), True)

    def memory_write(self, address: int, data: bytes, ack: bool = False):
        return self._submit("memory_write", pb.session_pb2.MemoryWriteOp(address=address, data=bytes(data), ack=ack), ack)


class Session(SessionBase):
    """One Transact stream. Thread-safe for submitters; completions arrive on a reader thread;
    operations return :class:`concurrent.futures.Future` objects."""

    def __init__(self, client):
        super().__init__()
        self._requests: "queue.SimpleQueue" = queue.SimpleQueue()
        self._call = client.session_stub.Transact(self._iter_requests())
        self._reader = threading.Thread(target=self._read, name="pcieemu-session", daemon=True)
        self._reader.start()

    def _new_future(self) -> Future:
        return Future()

    def _enqueue(self, transaction) -> None:
        self._requests.put(transaction)

    def _iter_requests(self):
        """Coalesces whatever is queued (up to MAX_BATCH transactions) into one message: order is kept,
        and pipelined callers pay one message per burst instead of one per transaction."""
        while True:
            item = self._requests.get()
            if item is _END:
                return
            items, end = take_batch(item, self._requests.get_nowait, queue.Empty, self.MAX_BATCH)
            yield transact_request(items)
            if end:
                return

    def _read(self) -> None:
        err = None
        try:
            for resp in self._call:
                self._complete_all(resp)
        except grpc.RpcError as e:
            err = SessionError(e.code(), e.details() or "")
        self._finish(err)

    def cfg_read32(self, rid: RidLike, offset: int, timeout: float = 10.0) -> int:
        return self.config_read(rid, offset, 4).result(timeout).value

    def barrier(self, timeout: float = 10.0) -> None:
        """Waits until every earlier request has been executed (a read pushes posted writes ahead of it)."""
        self.config_read(0, 0, 4).result(timeout)

    # -- lifetime ---------------------------------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Half-closes the stream and waits for outstanding completions."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_END)
        self._reader.join(timeout)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(timeout)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
