from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from engine.server.client import ServerProcess as _ServerProcess

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TFLITE = {
    "general": FIXTURES / "tflite" / "selfie_segmentation.tflite",
    "landscape": FIXTURES / "tflite" / "selfie_segmentation_landscape.tflite",
}


@pytest.fixture(scope="session")
def mediapipe_fixtures() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "mediapipe_masks.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    from engine.samples import sample_rgb

    return sample_rgb("astronaut")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real console entry point, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def wait_for(predicate, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 0.1 s until it holds (True) or ``timeout`` passes (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


class ServerProcess(_ServerProcess):
    """``livefx serve`` for a test. Admission by the machine's load is off unless a test asks
    for it (``--admit-load``): these tests run client and server on one loaded 2-core machine
    and test other things; admission has its own tests (test_scaling.py)."""

    def __init__(self, *args: str) -> None:
        if "--admit-load" not in args:
            args = (*args, "--admit-load", "0")
        super().__init__(*args, cwd=str(ROOT))


@pytest.fixture()
def server():
    # Many requests in a row from one address are what these tests do: the offer rate limit
    # (tested on its own in test_reliability.py) is set out of their way.
    s = ServerProcess("--max-sessions", "2", "--idle-timeout", "3", "--offer-rate", "1000")
    yield s
    s.stop()


@contextmanager
def damaged_shipped_file(path: Path, tmp_path: Path, monkeypatch, cache) -> Iterator[None]:
    """A copy of the shipped model file ``path`` with one byte flipped, in a folder of its own
    that the registry reads instead; ``cache`` (the registry's loader) cleared before and after."""
    from engine.models import registry

    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / path.name).write_bytes(bytes(data))
    monkeypatch.setattr(registry, "MODEL_DIR", tmp_path)
    cache.cache_clear()
    try:
        yield
    finally:
        cache.cache_clear()


@pytest.fixture(params=["compiled", "opencv"])
def loops(request, monkeypatch) -> str:
    """Each cpu op run twice: with LiveFX's compiled loops (``engine.ops._fused``) and with the
    OpenCV/NumPy passes that stand in for them where they are not built."""
    from engine.ops import fused

    if request.param == "compiled":
        if fused.NATIVE is None:
            pytest.skip(f"compiled loops absent: {fused.REASON}")
    else:
        monkeypatch.setattr(fused, "NATIVE", None)
    return str(request.param)


@pytest.fixture(scope="session")
def net_lib():
    """The net kernels' host build (build/liblfx_host.so), made where it is missing or stale."""
    import shutil

    from engine.inference.net.host import LIB, library

    root = Path(__file__).resolve().parent.parent
    sources = [
        root / "kernels" / n for n in ("net_host.cpp", "host_api.cpp", "net.cuh", "pixel.cuh")
    ]
    if not LIB.exists() or LIB.stat().st_mtime < max(s.stat().st_mtime for s in sources):
        if shutil.which("g++") is None:
            pytest.skip("no host C++ compiler (g++) to build kernels/net_host.cpp")
        subprocess.run(
            ["make", "--no-print-directory", "build/liblfx_host.so"], cwd=root, check=True
        )
    return library()  # checks NetStep / NetPtrs against the C++ structs' sizes
