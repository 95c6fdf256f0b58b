"""Starts a real PcieEmu server for tests and tools: build it, run it on a free TCP port and a
temporary Unix socket, wait for gRPC health SERVING, stop it at the end."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import grpc


def repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "PcieEmu.sln").exists():
            return parent
    raise RuntimeError("cannot find the repository root (PcieEmu.sln) above " + __file__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_dll(build: bool = True) -> Path:
    root = repo_root()
    dll = root / "src" / "PcieEmu.Server" / "bin" / "Release" / "net10.0" / "pcie-emu.dll"
    if build and os.environ.get("PCIEEMU_SKIP_BUILD") != "1":
        dotnet = shutil.which("dotnet")
        if not dotnet:
            raise RuntimeError("dotnet is not installed: cannot build src/PcieEmu.Server")
        res = subprocess.run([dotnet, "build", str(root / "src" / "PcieEmu.Server"), "-c", "Release", "-nologo",
                              "-clp:ErrorsOnly", "-v", "q"], capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            raise RuntimeError("building src/PcieEmu.Server failed:\n" + res.stdout[-4000:] + res.stderr[-2000:])
    if not dll.exists():
        raise RuntimeError(f"{dll} does not exist (build src/PcieEmu.Server -c Release)")
    return dll


def _health_serving(target: str, timeout: float, token: Optional[str] = None) -> bool:
    """Calls grpc.health.v1.Health/Check by hand (no grpcio-health-checking package needed)."""
    opts = [("grpc.default_authority", "localhost")] if target.startswith("unix:") else []
    with grpc.insecure_channel(target, options=opts) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check",
                               request_serializer=lambda _: b"",  # HealthCheckRequest{service=""}
                               response_deserializer=lambda b: b)
        try:
            md = [("authorization", "Bearer " + token)] if token else None
            resp = check(None, timeout=timeout, metadata=md)
        except grpc.RpcError:
            return False
        return resp == b"\x08\x01"  # HealthCheckResponse{status=SERVING}


class ServerProcess:
    """A running ``pcie-emu serve`` with ``tcp_target`` and ``unix_target``. TCP needs its token:
    the server writes it to ``token_file`` (in the temporary directory; ``token`` holds it once
    the server is up). ``extra_args=["--tcp-auth", "none"]`` starts one without. With
    ``runtime_dir`` the server runs with XDG_RUNTIME_DIR=runtime_dir and writes its token to the
    default place (runtime_dir/pcie-emu/token), where clients given the same XDG_RUNTIME_DIR find it."""

    def __init__(self, extra_args: Optional[list] = None, build: bool = True, start_timeout: float = 60.0,
                 runtime_dir: Optional[str] = None):
        self.tmp = tempfile.mkdtemp(prefix="pcieemu-test-")
        self.port = free_port()
        self.socket_path = os.path.join(self.tmp, "pcie-emu.sock")
        self.tcp_target = f"tcp://127.0.0.1:{self.port}"
        self.unix_target = f"unix://{self.socket_path}"
        self.log_path = os.path.join(self.tmp, "server.log")
        self.token_file = os.path.join(runtime_dir, "pcie-emu", "token") if runtime_dir else os.path.join(self.tmp, "token")
        self.token: Optional[str] = None
        dll = server_dll(build)
        args = ["dotnet", str(dll), "serve", "--listen", self.tcp_target, "--listen", self.unix_target,
                "--ram-file", os.path.join(self.tmp, "ram.bin")] + ([] if runtime_dir else ["--token-file", self.token_file]) \
            + list(extra_args or [])
        env = dict(os.environ, XDG_RUNTIME_DIR=runtime_dir) if runtime_dir else None
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.token_file):
                with open(self.token_file, encoding="ascii") as f:
                    self.token = f.read().strip() or None
            if _health_serving(f"127.0.0.1:{self.port}", 1.0, self.token):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not SERVING after {start_timeout} s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
