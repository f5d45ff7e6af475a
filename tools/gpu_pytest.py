"""A pytest plugin for tools/gpu_check.sh: what the GPU tests need from tests/conftest.py on a
lent GPU machine, where tests/conftest.py itself may not import (it imports the server's test
client, which needs PyAV and aiortc; that machine has neither unless they are carried).

Loaded with ``python3 -m pytest --noconftest -p tools.gpu_pytest …``. Where tests/conftest.py
imports, its own ``net_lib`` fixture is used; else this module gives ``net_lib`` (the same job:
the kernels' host build, made where missing or stale) and puts a ``tests.conftest`` holding
``ROOT`` where ``from tests.conftest import ROOT`` finds it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

try:
    from tests.conftest import net_lib  # the real fixture, where it imports
except ImportError as exc:
    WHY = f"tests/conftest.py does not import here ({exc}); tools/gpu_pytest.py stands in"
    stub = types.ModuleType("tests.conftest")
    stub.ROOT = ROOT  # type: ignore[attr-defined]
    stub.__file__ = str(ROOT / "tests" / "conftest.py")
    sys.modules["tests.conftest"] = stub

    @pytest.fixture(scope="session")
    def net_lib() -> Any:
        """The net kernels' host build (build/liblfx_host.so), made where missing or stale."""
        from engine.inference.net.host import LIB, library

        names = ("net_host.cpp", "host_api.cpp", "net.cuh", "pixel.cuh")
        sources = [ROOT / "kernels" / n for n in names]
        if not LIB.exists() or LIB.stat().st_mtime < max(s.stat().st_mtime for s in sources):
            if shutil.which("g++") is None:
                pytest.skip("no host C++ compiler (g++) to build kernels/net_host.cpp")
            subprocess.run(
                ["make", "--no-print-directory", "build/liblfx_host.so"], cwd=ROOT, check=True
            )
        return library()

else:
    WHY = "tests/conftest.py imports here: its fixtures are used"


def pytest_report_header(config: Any) -> str:
    return f"tools/gpu_pytest.py: {WHY}"
