"""Bus/device/function addresses and PCIe routing IDs.

A routing ID (RID) is ``bus << 8 | device << 3 | function``; under ARI the low byte is one
8-bit function number (``bus << 8 | function``). Text form: ``BB:DD.F`` (hex bus and device,
decimal function 0-7), optionally prefixed by a 4-digit segment ``0000:``. ARI functions can
be written ``BB:FF`` style as well, e.g. ``01:10.0`` and ``rid 0x0180`` are the same.
"""
from __future__ import annotations

import re
from typing import Union

RidLike = Union[int, str, "Bdf"]

_BDF_RE = re.compile(r"^(?:(?P<seg>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-7])$")


class Bdf(int):
    """A routing ID that prints as ``BB:DD.F``. It is an int, so it can be passed anywhere a rid is."""

    def __new__(cls, bus: int, device: int = 0, function: int = 0) -> "Bdf":
        if not 0 <= bus <= 0xFF:
            raise ValueError(f"bus must be 0..255 (was {bus})")
        if not 0 <= device <= 31:
            raise ValueError(f"device must be 0..31 (was {device})")
        if not 0 <= function <= 7:
            raise ValueError(f"function must be 0..7 (was {function})")
        return super().__new__(cls, bus << 8 | device << 3 | function)

    @classmethod
    def from_rid(cls, rid: int) -> "Bdf":
        if not 0 <= int(rid) <= 0xFFFF:
            raise ValueError(f"rid must be 0..0xFFFF (was {rid:#x})")
        return cls(rid >> 8, (rid >> 3) & 0x1F, rid & 7)

    @property
    def rid(self) -> int:
        return int(self)

    @property
    def bus(self) -> int:
        return int(self) >> 8

    @property
    def device(self) -> int:
        return (int(self) >> 3) & 0x1F

    @property
    def function(self) -> int:
        return int(self) & 7

    @property
    def ari_function(self) -> int:
        """The 8-bit function number an ARI device sees (device and function fields together)."""
        return int(self) & 0xFF

    def __str__(self) -> str:
        return format_bdf(int(self))

    def __repr__(self) -> str:
        return f"Bdf('{self}')"


def parse_bdf(text: str) -> Bdf:
    """Parses ``BB:DD.F`` or ``SSSS:BB:DD.F`` (segment must be 0). Raises ValueError naming the problem."""
    m = _BDF_RE.match(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a BDF (expected BB:DD.F, hex bus and device, function 0-7)")
    if m.group("seg") and int(m.group("seg"), 16) != 0:
        raise ValueError(f"'{text}': only segment 0 exists")
    dev = int(m.group("dev"), 16)
    if dev > 31:
        raise ValueError(f"'{text}': device must be 00-1f")
    return Bdf(int(m.group("bus"), 16), dev, int(m.group("fn")))


def format_bdf(rid: int) -> str:
    """``0x0182`` -> ``01:10.2``."""
    rid = int(rid)
    if not 0 <= rid <= 0xFFFF:
        raise ValueError(f"rid must be 0..0xFFFF (was {rid:#x})")
    return f"{rid >> 8:02x}:{(rid >> 3) & 0x1F:02x}.{rid & 7}"


def to_rid(value: RidLike) -> int:
    """Accepts a Bdf, an int rid or a ``BB:DD.F`` string."""
    if isinstance(value, str):
        return int(parse_bdf(value))
    rid = int(value)
    if not 0 <= rid <= 0xFFFF:
        raise ValueError(f"rid must be 0..0xFFFF (was {rid:#x})")
    return rid
