"""Python client for the PcieEmu wire protocol (pcieemu.v1).

    import pcieemu
    with pcieemu.connect("tcp://127.0.0.1:50551") as emu:
        for f in emu.list_functions():
            print(f.bdf, hex(f.vendor_id), hex(f.device_id))

The protobuf/gRPC modules are generated from the repository's proto/ on first import
(see pcieemu._codegen); ``pcieemu.pb`` exposes them.
"""
from . import _codegen

_codegen.ensure()

from . import pb  # noqa: E402
from .bdf import Bdf, format_bdf, parse_bdf, to_rid  # noqa: E402
from .client import (Client, ConfigRead, ServerError, connect, default_target, default_token_path,  # noqa: E402
                     default_unix_socket, resolve_token)
from .session import Session, SessionError  # noqa: E402
from .ram import RamView  # noqa: E402
from .sriov import SriovState  # noqa: E402

__all__ = ["Bdf", "Client", "ConfigRead", "RamView", "ServerError", "Session", "SessionError",
           "SriovState", "connect", "default_target", "default_token_path", "default_unix_socket", "format_bdf",
           "parse_bdf", "pb", "resolve_token", "to_rid"]
