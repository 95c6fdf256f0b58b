"""The virtio-net example driver (examples/virtio_net.py) against a server started with
docs/machines/virtio-net.json (an 82576 and a virtio-net device)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pcieemu
from pcieemu.testing import ServerProcess, repo_root

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "virtio_net.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("virtio_net_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


vn = _load_example()


@pytest.fixture(scope="module")
def virtio_server():
    s = ServerProcess(extra_args=["--machine", str(repo_root() / "docs" / "machines" / "virtio-net.json")])
    yield s
    s.stop()


@pytest.fixture()
def vemu(virtio_server):
    c = pcieemu.connect(virtio_server.tcp_target, token_file=virtio_server.token_file)
    c.reset()
    yield c
    c.close()


def test_example_driver_sends_and_receives_a_frame(virtio_server):
    env = dict(os.environ, PCIEEMU_TOKEN=virtio_server.token)
    r = subprocess.run([sys.executable, str(EXAMPLE), "--target", virtio_server.tcp_target],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "virtio-net 03:00.0 (1af4:1041) on Ethernet port 2" in r.stdout
    assert "features 0x100000020 accepted (FEATURES_OK); mac 02:00:00:00:77:01" in r.stdout
    assert "DRIVER_OK: device_status 0xf" in r.stdout
    assert "TX: used len 0, CaptureFrames saw 60 bytes on port 2, identical" in r.stdout
    assert "RX: InjectFrame accepted=True, received 60 bytes, identical" in r.stdout


def test_driver_steps_leave_the_device_in_the_states_the_spec_names(vemu):
    drv = vn.VirtioNetDriver.find(vemu)
    try:
        drv.enable()
        assert vemu.cfg_read16(drv.rid, 0x04) & 0x6 == 0x6
        drv.find_structures()
        bar4 = vemu.bar_address(drv.rid, 4)
        assert (drv.common, drv.isr, drv.device, drv.notify) == (bar4, bar4 + 0x1000, bar4 + 0x2000, bar4 + 0x3000)
        drv.reset()
        assert drv.status() == vn.ACKNOWLEDGE | vn.DRIVER
        assert drv.negotiate() == vn.F_VERSION_1 | vn.F_MAC
        drv.setup_queue(vn.RECEIVEQ)
        drv.setup_queue(vn.TRANSMITQ)
        assert drv.queues[vn.TRANSMITQ]["notify"] == drv.notify + 1 * drv.notify_multiplier
        drv.driver_ok()
        # two frames back to back: the used ring and the capture see them in order
        frames = [vn.ethernet_frame(vn.PEER_MAC, drv.mac(), bytes([i]) * 40) for i in range(2)]
        with vemu.capture_frames(drv.port, timeout=30) as cap:
            for f in frames:
                drv.send(f)
            assert [next(cap).data for _ in frames] == frames
        # reset stops the device: an injected frame is not taken
        drv.reset()
        assert vemu.inject_frame(drv.port, vn.ethernet_frame(drv.mac(), vn.PEER_MAC, b"late")).accepted is False
    finally:
        drv.close()


def test_features_ok_is_refused_without_version_1(vemu):
    drv = vn.VirtioNetDriver.find(vemu)
    try:
        drv.enable()
        drv.find_structures()
        drv.reset()
        # a legacy-only driver (no VERSION_1) on a modern-only device: FEATURES_OK does not stick
        drv.cc_write(vn.DRIVER_FEATURE_SELECT, 4, 0)
        drv.cc_write(vn.DRIVER_FEATURE, 4, vn.F_MAC)
        drv.cc_write(vn.DEVICE_STATUS, 1, vn.ACKNOWLEDGE | vn.DRIVER | vn.FEATURES_OK)
        assert drv.status() & vn.FEATURES_OK == 0
    finally:
        drv.close()


def test_find_without_a_virtio_device_says_what_to_do(emu):
    with pytest.raises(RuntimeError, match="--machine"):
        vn.VirtioNetDriver.find(emu)
