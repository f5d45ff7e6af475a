"""Regenerate the README's effect screenshots with the real command.

Writes a composited 720p clip (the astronaut over the rocket photo, swaying, camera noise), runs
``livefx process`` on it once per effect, and saves frame 15 of each output under docs/images/.

    .venv/bin/python tools/effect_screenshots.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.media import VideoWriter  # noqa: E402
from engine.samples import composited_clip  # noqa: E402

RUNS = {
    "original": ["--effect", "none"],
    "blur": ["--effect", "blur", "--strength", "0.6"],
    "replace": ["--effect", "replace", "--background", "samples/backgrounds/hubble.jpg"],
    "colour": ["--effect", "colour", "--colour", "green"],
    "mask": ["--effect", "mask"],
}


def frame_rgb(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return np.asarray(f.to_ndarray(format="rgb24"))
    raise SystemExit(f"{path} has fewer than {index + 1} frames")


def main() -> int:
    out_dir = ROOT / "docs" / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clip.mp4"
        clip = composited_clip(1280, 720, 30, motion="sway", noise=2.0)
        with VideoWriter(src, 1280, 720, Fraction(30)) as w:
            for f in clip.frames:
                f.time_base = Fraction(1, 30)
                w.write(f)
        shots = {}
        for name, args in RUNS.items():
            dst = Path(tmp) / f"{name}.mp4"
            cmd = [sys.executable, "-m", "engine", "process", str(src), str(dst), "-q", *args]
            subprocess.run(cmd, check=True, cwd=ROOT)
            shots[name] = frame_rgb(dst, 15)
            path = out_dir / f"effect_{name}.jpg"
            small = cv2.resize(shots[name], (640, 360), interpolation=cv2.INTER_AREA)
            cv2.imwrite(
                str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
            )
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
