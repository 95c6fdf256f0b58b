"""Build script: the pcieemu.v1 modules and their .pyi stubs are generated from the repository's
proto/ (or $PCIEEMU_PROTO_DIR) into the build directory, so the wheel carries them and nothing is
generated at import time. The version comes from clients/VERSION (one version for every client)."""
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import codegen  # noqa: E402


def version() -> str:
    for cand in (HERE / "VERSION", HERE.parent / "VERSION"):
        if cand.is_file():
            return cand.read_text().strip()
    raise RuntimeError("clients/VERSION not found")


class BuildPyWithProtos(build_py):
    """build_py, then the generated pcieemu.v1 package into build_lib."""

    def run(self):
        super().run()
        if not self.dry_run:
            codegen.generate(Path(self.build_lib))


setup(version=version(), cmdclass={"build_py": BuildPyWithProtos})
