"""The package as a user gets it: a wheel built from this directory (pcieemu.v1 generated from
proto/ at build time), installed into a fresh venv (Debian's grpcio/protobuf through
--system-site-packages), used by a small consumer script outside the tree against a running
server (TCP with the token found in the default token file, and the Unix socket, blocking and
asyncio), then uninstalled without leftovers."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from pcieemu.testing import ServerProcess

HERE = Path(__file__).resolve().parents[1]
VERSION = (HERE.parent / "VERSION").read_text().strip()

CONSUMER = r'''
import asyncio, json, sys
import pcieemu, pcieemu.aio
from pcieemu import regs

out = {"file": pcieemu.__file__}
tcp, unix = sys.argv[1], sys.argv[2]
with pcieemu.connect(tcp) as emu:                      # no token given: the default token file
    out["has_token"] = emu.has_token
    emu.reset()
    out["tcp_functions"] = [pcieemu.format_bdf(f.rid) for f in emu.list_functions()]
    out["tcp_id"] = emu.cfg_read32("01:00.0", 0)
    out["tcp_caps"] = list(emu.ext_capabilities("01:00.0"))
    st = emu.enable_vfs("01:00.0", 2)
    out["tcp_vfs"] = [str(v) for v in st.vfs]
    with emu.session() as s:
        s.config_write("01:00.0", 0x3C, 1, 0x77)              # posted; the read below sees it
        out["session_read"] = s.config_read("01:00.0", 0x3C, 1).result(10).value
    emu.disable_vfs("01:00.0")

async def aio():
    async with await pcieemu.aio.connect(unix) as emu:
        out["unix_has_token"] = emu.has_token
        out["unix_functions"] = len(await emu.list_functions())
        out["unix_pcie_cap"] = await emu.find_capability("01:00.0", regs.CAP_PCIE)
        ram = await emu.map_ram()
        base = ram.base
        await ram.write(base + 0x3000, b"consumer")
        out["unix_ram"] = (await emu.read_memory(base + 0x3000, 8)).decode()
        out["unix_ram_mapped"] = ram.mapped
        ram.close()
asyncio.run(aio())
print(json.dumps(out))
'''


TYPED = '''
import pcieemu, pcieemu.aio
from pcieemu import pb


def blocking(emu: pcieemu.Client) -> int:
    req = pb.config_pb2.ReadConfigRequest(rid=1, offset=0, width=4)
    wrong: str = req.rid
    return emu.config_read("01:00.0", 0, 4).value


async def asynchronous(emu: pcieemu.aio.AsyncClient) -> str:
    return await emu.cfg_read32("01:00.0", 0)
'''


def _files(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    shutil.rmtree(HERE / "build", ignore_errors=True)  # setuptools' build tree: no stale files into the wheel
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-index", "--no-deps",
                        "-q", "-w", str(dist), str(HERE)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(dist.glob("pcieemu-*.whl"))
    assert [w.name for w in wheels] == [f"pcieemu-{VERSION}-py3-none-any.whl"]
    return wheels[0]


def test_wheel_carries_generated_modules_and_type_stubs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for mod in ("common", "config", "mmio", "memory", "platform", "session", "interrupt", "ethernet", "iommu"):
        assert f"pcieemu/v1/{mod}_pb2.py" in names and f"pcieemu/v1/{mod}_pb2.pyi" in names
        if mod != "common":
            assert f"pcieemu/v1/{mod}_pb2_grpc.py" in names and f"pcieemu/v1/{mod}_pb2_grpc.pyi" in names
    assert {"pcieemu/py.typed", "pcieemu/aio.py", "pcieemu/v1/__init__.py"} <= names
    assert not any("codegen" in n for n in names)


def test_consumer_project_installs_uses_and_uninstalls_the_wheel(wheel):
    with tempfile.TemporaryDirectory(prefix="pcieemu-consumer-") as tmp:
        tmp = Path(tmp)
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
        py = venv / "bin" / "python"
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--no-deps", str(wheel)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        site = next(venv.glob("lib/python3*/site-packages"))
        installed = _files(site)
        assert "pcieemu/v1/config_pb2.py" in installed and "pcieemu/py.typed" in installed

        project = tmp / "project"
        project.mkdir()
        (project / "consumer.py").write_text(CONSUMER)
        runtime = tmp / "run"
        runtime.mkdir(mode=0o700)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PCIEEMU_TOKEN", "PCIEEMU_TARGET")}
        env["XDG_RUNTIME_DIR"] = str(runtime)
        with ServerProcess(runtime_dir=str(runtime)) as srv:
            r = subprocess.run([str(py), "consumer.py", srv.tcp_target, srv.unix_target], cwd=project, env=env,
                               capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["file"].startswith(str(site))                      # the installed copy, not the tree
        assert (out["has_token"], out["unix_has_token"]) == (True, False)
        assert out["tcp_functions"] == ["00:00.0", "00:01.0", "01:00.0", "01:00.1"]
        assert out["tcp_id"] == 0x10C98086
        assert [c[0] for c in out["tcp_caps"]] == [0x0001, 0x0003, 0x000E, 0x0010]   # AER, DSN, ARI, SR-IOV
        assert out["tcp_vfs"] == ["01:10.0", "01:10.2"]
        assert out["session_read"] == 0x77
        assert out["unix_functions"] == 4 and out["unix_pcie_cap"] == 0xA0
        assert (out["unix_ram"], out["unix_ram_mapped"]) == ("consumer", True)
        assert _files(site) == installed, "running the package wrote into site-packages"

        # Typed: mypy, seeing only the installed package (py.typed, the .pyi of pcieemu.v1), finds
        # exactly the two mistakes (an int field into a str, an awaited int returned as str).
        (project / "typed.py").write_text(TYPED)
        r = subprocess.run([sys.executable, "-m", "mypy", "--python-executable", str(py), "--no-incremental",
                            "--ignore-missing-imports", "typed.py"], cwd=project, env=env, capture_output=True,
                           text=True, timeout=300)
        errors = [line for line in r.stdout.splitlines() if ": error:" in line]
        assert len(errors) == 2, r.stdout + r.stderr
        assert "typed.py:8:" in errors[0] and 'expression has type "int", variable has type "str"' in errors[0]
        assert "typed.py:13:" in errors[1] and 'got "int", expected "str"' in errors[1]

        r = subprocess.run([str(py), "-m", "pip", "uninstall", "-y", "-q", "pcieemu"], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert [f for f in _files(site) if f.startswith("pcieemu")] == []
