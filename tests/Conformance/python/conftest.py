import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2] / "clients" / "python" / "src"))

import pcieemu  # noqa: E402,F401  (generates the pcieemu.v1 modules)
from pcieemu.testing import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def server():
    s = ServerProcess()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def runner(server):
    import conformance
    r = conformance.Runner(server.tcp_target, token_file=server.token_file)
    yield r
    r.close()


VIRTIO_MACHINE = HERE.parent / "virtio-net" / "machine.json"


@pytest.fixture(scope="session")
def virtio_server():
    """A server built from the virtio-net suite's machine (two virtio-net devices on one L2 segment)."""
    s = ServerProcess(extra_args=["--machine", str(VIRTIO_MACHINE)])
    yield s
    s.stop()


@pytest.fixture(scope="session")
def virtio_runner(virtio_server):
    import conformance
    r = conformance.Runner(virtio_server.tcp_target, token_file=virtio_server.token_file)
    yield r
    r.close()
