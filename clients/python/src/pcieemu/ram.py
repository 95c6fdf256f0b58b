"""Host RAM: the server's RAM file mapped with mmap when reachable, else Read/WriteMemory RPCs."""
from __future__ import annotations

import mmap
import os
from typing import Optional


def map_region(region, allowed: bool) -> Optional[mmap.mmap]:
    """The RAM region's shared file mapped read/write, or None when not ``allowed``, absent, too
    small or not ours to map (permissions, another host): the caller then uses RPCs."""
    path = region.shared_file_path
    if not (allowed and path and os.path.exists(path)):
        return None
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            return mmap.mmap(fd, region.size) if os.fstat(fd).st_size >= region.size else None
        finally:
            os.close(fd)
    except OSError:
        return None


class RamView:
    """Reads and writes guest-physical RAM. ``mapped`` tells which path is in use."""

    def __init__(self, client, base: int, size: int, mm: Optional[mmap.mmap] = None, path: str = ""):
        self._client, self.base, self.size, self._mm, self.path = client, base, size, mm, path

    @classmethod
    def open(cls, client, prefer_mmap: bool = True) -> "RamView":
        region = client.get_platform().ram_regions[0]
        return cls(client, region.base, region.size, map_region(region, prefer_mmap and client.is_local),
                   region.shared_file_path)

    @property
    def mapped(self) -> bool:
        return self._mm is not None

    def _check(self, address: int, length: int) -> int:
        if length < 0 or address < self.base or address + length > self.base + self.size:
            raise IndexError(f"[{address:#x}, +{length}) is outside RAM [{self.base:#x}, +{self.size:#x})")
        return address - self.base

    def read(self, address: int, length: int) -> bytes:
        if self._mm is None:
            return self._client.read_memory(address, length)
        off = self._check(address, length)
        return bytes(self._mm[off:off + length])

    def write(self, address: int, data: bytes) -> None:
        if self._mm is None:
            self._client.write_memory(address, data)
            return
        off = self._check(address, len(data))
        self._mm[off:off + len(data)] = data

    def read32(self, address: int) -> int:
        return int.from_bytes(self.read(address, 4), "little")

    def write32(self, address: int, value: int) -> None:
        self.write(address, value.to_bytes(4, "little"))

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
