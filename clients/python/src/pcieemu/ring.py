"""The shared-memory ring (SessionService.OpenRing; layout in docs/protocol.md, "Shared-memory ring").

A client on the server's host maps the ring file and submits config/MMIO/memory transactions as
64-byte entries; the server's ring thread completes them into 32-byte entries. Same ordering as the
Session stream: writes are posted (a completion only when they fail or ``ack=True``), reads complete
in order and see every earlier write.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import platform
import struct
import time
from dataclasses import dataclass
from typing import List, Optional

from . import pb

_SQ_TAIL, _SERVER_SLEEPING, _SQ_HEAD, _CQ_TAIL, _CQ_HEAD = 0x40, 0x44, 0x80, 0xC0, 0x100
_SUBMISSION = struct.Struct("<QBBHHBxQQII24x")  # tag op flags rid offset width | address value data_offset length
_COMPLETION = struct.Struct("<QQBBHI8x")  # tag value kind field status length
_U32 = struct.Struct("<I")
_CONFIG_READ, _CONFIG_WRITE, _MMIO_READ, _MMIO_WRITE, _MEMORY_READ, _MEMORY_WRITE = range(1, 7)
_FUTEX_WAKE = 1
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())


@dataclass(frozen=True)
class RingCompletion:
    """One completion: status 1-4 are CompletionStatus values; 0x100/0x101 mean the entry was
    rejected (``field`` names the culprit, see docs/protocol.md)."""
    tag: int
    value: int
    kind: int
    field: int
    status: int
    length: int

    @property
    def ok(self) -> bool:
        return self.status == pb.SUCCESSFUL


class Ring:
    """An open ring; ``emu.open_ring()`` makes one. Use as a context manager or call ``close()``."""

    def __init__(self, client, submission_entries: int = 0, completion_entries: int = 0,
                 data_size: int = 0, wait: float = 10.0):
        req = pb.session_pb2.OpenRingRequest(submission_entries=submission_entries,
                                             completion_entries=completion_entries, data_size=data_size)
        self._call = client.session_stub.OpenRing(req)
        layout = next(self._call)
        fd = os.open(layout.path, os.O_RDWR)
        try:
            self._mm = mmap.mmap(fd, layout.size)
        finally:
            os.close(fd)
        self._layout = layout
        self._wait = wait
        self._tag = 0
        #: Completions of posted writes that failed, in arrival order.
        self.errors: List[RingCompletion] = []
        self._sq_tail_word = ctypes.c_uint32.from_buffer(self._mm, _SQ_TAIL)
        self._libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> "Ring":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the ring (the server deletes its file)."""
        if self._mm.closed:
            return
        self._call.cancel()
        del self._sq_tail_word
        self._mm.close()

    # -- the contract's operations
    def config_read(self, rid: int, offset: int, width: int = 4) -> RingCompletion:
        return self._complete(self._submit(_CONFIG_READ, rid=rid, offset=offset, width=width))

    def config_write(self, rid: int, offset: int, width: int, value: int, ack: bool = False) -> Optional[RingCompletion]:
        tag = self._submit(_CONFIG_WRITE, rid=rid, offset=offset, width=width, value=value, ack=ack)
        return self._complete(tag) if ack else None

    def mmio_read(self, address: int, width: int = 4) -> RingCompletion:
        return self._complete(self._submit(_MMIO_READ, address=address, width=width))

    def mmio_write(self, address: int, width: int, value: int, ack: bool = False) -> Optional[RingCompletion]:
        tag = self._submit(_MMIO_WRITE, address=address, width=width, value=value, ack=ack)
        return self._complete(tag) if ack else None

    def read_memory(self, address: int, length: int) -> bytes:
        """Reads RAM through the data area (offset 0); raises ``RingError`` unless SUCCESSFUL."""
        c = self._complete(self._submit(_MEMORY_READ, address=address, length=length))
        if not c.ok:
            raise RingError(c)
        base = self._layout.data_offset
        return bytes(self._mm[base:base + c.length])

    def write_memory(self, address: int, data: bytes) -> RingCompletion:
        """Writes RAM through the data area (offset 0), acknowledged so the area is free again."""
        base = self._layout.data_offset
        self._mm[base:base + len(data)] = data
        return self._complete(self._submit(_MEMORY_WRITE, address=address, length=len(data), ack=True))

    # -- the ring protocol
    def _u32(self, off: int) -> int:
        return _U32.unpack_from(self._mm, off)[0]

    def _poll(self, ready, what: str) -> None:
        end = time.monotonic() + self._wait
        while not ready():
            if time.monotonic() > end:
                raise TimeoutError(f"ring: {what} for {self._wait} s")
            time.sleep(0)

    def _submit(self, op: int, rid: int = 0, offset: int = 0, width: int = 0, address: int = 0,
                value: int = 0, length: int = 0, ack: bool = False) -> int:
        entries = self._layout.submission_entries
        tail = self._u32(_SQ_TAIL)
        self._poll(lambda: (tail - self._u32(_SQ_HEAD)) & 0xFFFFFFFF < entries, "no free submission slot")
        self._tag += 1
        slot = self._layout.submission_offset + (tail & (entries - 1)) * self._layout.submission_entry_size
        _SUBMISSION.pack_into(self._mm, slot, self._tag, op, 1 if ack else 0, rid & 0xFFFF, offset, width,
                              address, value, 0, length)
        _U32.pack_into(self._mm, _SQ_TAIL, (tail + 1) & 0xFFFFFFFF)
        if self._u32(_SERVER_SLEEPING) and _SYS_FUTEX is not None:
            self._libc.syscall(_SYS_FUTEX, ctypes.byref(self._sq_tail_word), _FUTEX_WAKE, 1, None, None, 0)
        return self._tag

    def _complete(self, tag: int) -> RingCompletion:
        """Waits for the completion of ``tag``; failed posted writes met on the way go to ``errors``."""
        entries = self._layout.completion_entries
        while True:
            head = self._u32(_CQ_HEAD)
            self._poll(lambda: self._u32(_CQ_TAIL) != head, f"no completion for tag {tag}")
            slot = self._layout.completion_offset + (head & (entries - 1)) * self._layout.completion_entry_size
            c = RingCompletion(*_COMPLETION.unpack_from(self._mm, slot))
            _U32.pack_into(self._mm, _CQ_HEAD, (head + 1) & 0xFFFFFFFF)
            if c.tag == tag:
                return c
            self.errors.append(c)


class RingError(Exception):
    """A ring memory transaction that did not complete SUCCESSFUL."""

    def __init__(self, completion: RingCompletion):
        super().__init__(f"ring transaction {completion.tag}: status {completion.status:#x} (field {completion.field})")
        self.completion = completion
