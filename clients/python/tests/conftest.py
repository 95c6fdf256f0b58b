import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # codegen.py

import pcieemu  # noqa: E402  (clients/python/test.sh generated pcieemu.v1 with codegen.py)
from pcieemu.testing import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def server():
    """A real pcie-emu server on a free TCP port and a temporary Unix socket."""
    s = ServerProcess()
    yield s
    s.stop()


@pytest.fixture()
def emu(server):
    """A client over TCP (with the server's token file) on a freshly reset machine."""
    c = pcieemu.connect(server.tcp_target, token_file=server.token_file)
    c.reset()
    yield c
    c.close()
