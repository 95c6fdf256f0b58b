"""Generates the pcieemu.v1 protobuf/gRPC modules and their type stubs from proto/pcieemu/v1.

Used at build time (setup.py puts the modules into the wheel) and in the repository (tests,
examples, the conformance runner import ``clients/python/src``). The package never generates
anything when imported.

    /usr/bin/python3 clients/python/codegen.py            # into clients/python/src (when a .proto changed)
    /usr/bin/python3 clients/python/codegen.py --force    # regenerate unconditionally

Tools: protoc (Debian protobuf-compiler), grpc_python_plugin (protobuf-compiler-grpc), and
mypy-protobuf's protoc-gen-mypy / protoc-gen-mypy_grpc for the .pyi stubs of the messages and
the services; or python3-grpc-tools in place of protoc + grpc_python_plugin.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"


class CodegenError(RuntimeError):
    """The modules cannot be generated (protos or tools missing, protoc failed)."""


def find_proto_root(start: Path = HERE) -> Path:
    """The directory holding pcieemu/v1/*.proto: $PCIEEMU_PROTO_DIR, else proto/ next to or above ``start``."""
    env = os.environ.get("PCIEEMU_PROTO_DIR")
    if env:
        if (Path(env) / "pcieemu" / "v1").is_dir():
            return Path(env)
        raise CodegenError(f"PCIEEMU_PROTO_DIR={env} does not contain pcieemu/v1/*.proto")
    for parent in (start, *start.parents):
        cand = parent / "proto"
        if (cand / "pcieemu" / "v1").is_dir():
            return cand
    raise CodegenError(f"cannot find proto/pcieemu/v1 at or above {start}; set PCIEEMU_PROTO_DIR")


def proto_files(root: Path) -> List[Path]:
    files = sorted((root / "pcieemu" / "v1").glob("*.proto"))
    if not files:
        raise CodegenError(f"no .proto files in {root / 'pcieemu' / 'v1'}")
    return files


def digest(files: List[Path]) -> str:
    """A hash of the inputs: names and contents of the .proto files."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _command(root: Path, files: List[Path], out: Path) -> List[str]:
    rel = [str(f.relative_to(root)) for f in files]
    mypy, mypy_grpc = shutil.which("protoc-gen-mypy"), shutil.which("protoc-gen-mypy_grpc")
    if not (mypy and mypy_grpc):
        raise CodegenError("protoc-gen-mypy / protoc-gen-mypy_grpc are missing (apt-get install mypy-protobuf): they write the .pyi stubs")
    outs = [f"-I{root}", f"--python_out={out}", f"--grpc_python_out={out}",
            f"--plugin=protoc-gen-mypy={mypy}", f"--mypy_out={out}",
            f"--plugin=protoc-gen-mypy_grpc={mypy_grpc}", f"--mypy_grpc_out={out}"]
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if protoc and plugin:
        return [protoc, f"--plugin=protoc-gen-grpc_python={plugin}", *outs, *rel]
    try:
        import grpc_tools  # noqa: F401  (python3-grpc-tools)
        return [sys.executable, "-m", "grpc_tools.protoc", *outs, *rel]
    except ImportError:
        pass
    missing = [n for n, p in (("protoc (apt: protobuf-compiler)", protoc),
                              ("grpc_python_plugin (apt: protobuf-compiler-grpc)", plugin)) if not p]
    raise CodegenError("cannot generate the pcieemu.v1 modules: missing " + ", ".join(missing))


def generate(out: Path, root: Optional[Path] = None, force: bool = True) -> Path:
    """Writes ``out``/pcieemu/v1/ (modules, .pyi stubs, __init__.py, a .stamp with the input hash);
    without ``force`` nothing happens when the stamp matches. Returns that directory."""
    root = (root or find_proto_root()).resolve()
    out = out.resolve()
    files = proto_files(root)
    gen_dir = out / "pcieemu" / "v1"
    stamp = gen_dir / ".stamp"
    want = digest(files)
    if not force and stamp.exists() and stamp.read_text().strip() == want:
        return gen_dir
    if gen_dir.exists():
        shutil.rmtree(gen_dir)
    gen_dir.mkdir(parents=True)
    res = subprocess.run(_command(root, files, out), cwd=root, capture_output=True, text=True)
    if res.returncode != 0:
        raise CodegenError(f"protoc failed ({res.returncode}): {res.stderr.strip()}")
    (gen_dir / "__init__.py").write_text('"""Generated from proto/pcieemu/v1 (do not edit)."""\n')
    stamp.write_text(want + "\n")
    return gen_dir


if __name__ == "__main__":
    try:
        print(generate(SRC, force="--force" in sys.argv))
    except CodegenError as e:
        sys.exit(f"codegen: {e}")
