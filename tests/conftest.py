from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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


class ServerProcess:
    """``livefx serve`` in a child process on a free port (the real entry point)."""

    def __init__(self, *args: str) -> None:
        import os
        import re

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert self.proc.stdout is not None
        self.log: list[str] = []
        for line in self.proc.stdout:
            self.log.append(line)
            m = re.search(r"serving on (http://[\d.]+:\d+)/", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("server did not start:\n" + "".join(self.log))

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return "".join(self.log) + (out or "")


@pytest.fixture()
def server():
    s = ServerProcess("--max-sessions", "2", "--idle-timeout", "3")
    yield s
    s.stop()
