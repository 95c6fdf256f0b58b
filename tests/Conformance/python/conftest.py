import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2] / "clients" / "python" / "src"))

import pcieemu  # noqa: E402,F401  (generates the pcieemu.v1 modules)
from pcieemu.testing import ServerProcess  # noqa: E402


VIRTIO_MACHINE = HERE.parent / "virtio-net" / "machine.json"


def _serve(extra_args=None):
    s = ServerProcess(extra_args=extra_args)
    yield s
    s.stop()


def _run_against(s):
    import conformance
    # Over the Unix socket: the server's direct gRPC loop (issue 16); the client tests cover TCP.
    r = conformance.Runner(s.unix_target)
    yield r
    r.close()


@pytest.fixture(scope="session")
def server():
    yield from _serve()


@pytest.fixture(scope="session")
def runner(server):
    yield from _run_against(server)


@pytest.fixture(scope="session")
def virtio_server():
    """A server built from the virtio-net suite's machine (two virtio-net devices on one L2 segment)."""
    yield from _serve(["--machine", str(VIRTIO_MACHINE)])


@pytest.fixture(scope="session")
def virtio_runner(virtio_server):
    yield from _run_against(virtio_server)
