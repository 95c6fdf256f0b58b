"""Generates the pcieemu.v1 protobuf/gRPC modules from the repository's proto/ directory.

The generated modules (``pcieemu/v1/*_pb2.py`` and ``*_pb2_grpc.py``) are build output and
are never committed. They are regenerated whenever a .proto file changes (a stamp file holds
a hash of the inputs). Run ``python3 -m pcieemu._codegen`` to generate explicitly.

Tools: Debian's protobuf-compiler (protoc) and protobuf-compiler-grpc (grpc_python_plugin),
or python3-grpc-tools when present.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
OUT_DIR = PACKAGE_DIR.parent          # generated files land in OUT_DIR/pcieemu/v1/
GEN_DIR = PACKAGE_DIR / "v1"
STAMP = GEN_DIR / ".stamp"


class CodegenError(RuntimeError):
    """The generated modules are missing and cannot be produced."""


def find_proto_root() -> Path:
    """The directory that holds pcieemu/v1/*.proto: $PCIEEMU_PROTO_DIR, else the nearest proto/ above."""
    env = os.environ.get("PCIEEMU_PROTO_DIR")
    if env:
        p = Path(env)
        if (p / "pcieemu" / "v1").is_dir():
            return p
        raise CodegenError(f"PCIEEMU_PROTO_DIR={env} does not contain pcieemu/v1/*.proto")
    for parent in PACKAGE_DIR.parents:
        cand = parent / "proto"
        if (cand / "pcieemu" / "v1").is_dir():
            return cand
    raise CodegenError("cannot find proto/pcieemu/v1 above " + str(PACKAGE_DIR) + "; set PCIEEMU_PROTO_DIR")


def _inputs(root: Path) -> list[Path]:
    files = sorted((root / "pcieemu" / "v1").glob("*.proto"))
    if not files:
        raise CodegenError(f"no .proto files in {root / 'pcieemu' / 'v1'}")
    return files


def _digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _command(root: Path, files: list[Path]) -> list[str]:
    rel = [str(f.relative_to(root)) for f in files]
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if protoc and plugin:
        return [protoc, f"-I{root}", f"--python_out={OUT_DIR}", f"--grpc_python_out={OUT_DIR}",
                f"--plugin=protoc-gen-grpc_python={plugin}", *rel]
    try:
        import grpc_tools  # noqa: F401  (python3-grpc-tools)
        return [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--python_out={OUT_DIR}",
                f"--grpc_python_out={OUT_DIR}", *rel]
    except ImportError:
        pass
    missing = [n for n, p in (("protoc (apt: protobuf-compiler)", protoc),
                              ("grpc_python_plugin (apt: protobuf-compiler-grpc)", plugin)) if not p]
    raise CodegenError("cannot generate the pcieemu.v1 modules: missing " + ", ".join(missing))


def ensure(force: bool = False) -> Path:
    """Generates the modules if they are missing or older than the protos; returns their directory."""
    try:
        root = find_proto_root()
    except CodegenError:
        if (GEN_DIR / "config_pb2.py").exists() and not force:
            return GEN_DIR  # installed package without the sources: use what was generated
        raise
    files = _inputs(root)
    digest = _digest(files)
    if not force and STAMP.exists() and STAMP.read_text().strip() == digest:
        return GEN_DIR
    GEN_DIR.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(_command(root, files), cwd=root, capture_output=True, text=True)
    if res.returncode != 0:
        raise CodegenError(f"protoc failed ({res.returncode}): {res.stderr.strip()}")
    (GEN_DIR / "__init__.py").write_text('"""Generated from proto/pcieemu/v1 (do not edit)."""\n')
    STAMP.write_text(digest + "\n")
    return GEN_DIR


if __name__ == "__main__":
    print(ensure(force="--force" in sys.argv))
