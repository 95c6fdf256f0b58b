"""SR-IOV enable/disable the way Linux's PCI core does it (the sequence is in pcieemu._logic,
shared with pcieemu.aio); blocking entry points over a :class:`pcieemu.Client`."""
from __future__ import annotations

from typing import Optional

from . import _logic
from ._logic import SriovState
from .bdf import RidLike

__all__ = ["SriovState", "configure_ari", "disable_vfs", "enable_vfs"]


def configure_ari(client, pf: int, want: Optional[bool]) -> bool:
    """Sets or clears ARI in the port and PF 0 (``want=None``: when both support it); returns whether it is on."""
    return _logic.run_sync(_logic.configure_ari(_logic.SyncAdapter(client), pf, want))


def enable_vfs(client, pf: RidLike, num_vfs: int, ari: Optional[bool] = None, settle: float = 0.1) -> SriovState:
    """Enables ``num_vfs`` VFs on ``pf``. ``ari``: None = when supported, True/False = force."""
    return _logic.run_sync(_logic.enable_vfs(_logic.SyncAdapter(client), pf, num_vfs, ari=ari, settle=settle))


def disable_vfs(client, pf: RidLike) -> None:
    """Clears VF Enable and VF MSE in one write, then NumVFs."""
    _logic.run_sync(_logic.disable_vfs(_logic.SyncAdapter(client), pf))
