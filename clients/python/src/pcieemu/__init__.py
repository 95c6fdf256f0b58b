"""Python client for the PcieEmu wire protocol (pcieemu.v1).

    import pcieemu
    with pcieemu.connect("tcp://127.0.0.1:50551") as emu:
        for f in emu.list_functions():
            print(pcieemu.format_bdf(f.rid), hex(f.vendor_id), hex(f.device_id))

The asyncio API with the same calls is :mod:`pcieemu.aio`. The generated messages and stubs
(``pcieemu.v1``, short names in ``pcieemu.pb``) are built into the package from the protos
when the wheel is built; in the repository ``clients/python/codegen.py`` writes them.
"""
try:
    from . import v1 as _v1  # noqa: F401
except ImportError as e:  # pragma: no cover - only in a source tree that was never generated
    raise ImportError("pcieemu.v1 (the generated protobuf modules) is missing: install the built wheel, "
                      "or run '/usr/bin/python3 clients/python/codegen.py' in the repository") from e

from . import pb  # noqa: E402
from .bdf import Bdf, format_bdf, parse_bdf, to_rid  # noqa: E402
from .client import (Client, ConfigRead, ServerError, StreamSubscription, connect, default_target,  # noqa: E402
                     default_token_path, default_unix_socket, resolve_token, ViolationsError)
from .session import Session, SessionError  # noqa: E402
from .ring import Ring, RingCompletion, RingError  # noqa: E402
from .ram import RamView  # noqa: E402
from .sriov import SriovState  # noqa: E402

__all__ = ["Bdf", "Client", "ConfigRead", "RamView", "Ring", "RingCompletion", "RingError", "ServerError", "Session", "SessionError",
           "SriovState", "StreamSubscription", "ViolationsError", "connect", "default_target", "default_token_path",
           "default_unix_socket", "format_bdf", "parse_bdf", "pb", "resolve_token", "to_rid"]
