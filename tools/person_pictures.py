"""The README's before/after picture of the body prior, made with the real command.

For three scenes with salient objects (``engine.samples.SCENES``: a cup beside her, a logo behind
her shoulder, a cat beside her) writes the 720p clip, runs ``livefx process --effect replace``
on it with ``--person-model off`` and ``lite``, and puts frame 20 of each side by side:
docs/images/person_prior.jpg (left: the selfie matte alone; right: fused with the body prior).

    .venv/bin/python tools/person_pictures.py
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
from engine.samples import scene_clip  # noqa: E402

SCENES = ("cup-beside", "logo-behind", "cat-beside")
FRAME = 20


def frame_rgb(path: Path, index: int) -> np.ndarray:
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return np.asarray(f.to_ndarray(format="rgb24"))
    raise SystemExit(f"{path}: fewer than {index + 1} frames")


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scene in SCENES:
            clip = scene_clip(scene, 1280, 720, FRAME + 5)
            src = Path(tmp) / f"{scene}.mp4"
            with VideoWriter(src, 1280, 720, Fraction(30)) as w:
                for i, f in enumerate(clip.frames):
                    f.pts, f.time_base = i, Fraction(1, 30)
                    w.write(f)
            tiles = []
            for model in ("off", "lite"):
                out = Path(tmp) / f"{scene}-{model}.mp4"
                cmd = [sys.executable, "-m", "engine", "process", str(src), str(out), "--quiet"]
                cmd += ["--effect", "replace", "--background", "samples/backgrounds/hubble.jpg"]
                cmd += ["--person-model", model]
                subprocess.run(cmd, check=True, cwd=ROOT)
                tile = cv2.resize(frame_rgb(out, FRAME), (640, 360), interpolation=cv2.INTER_AREA)
                label = "selfie matte alone" if model == "off" else "with the body prior (lite)"
                cv2.putText(
                    tile, label, (12, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2
                )
                tiles.append(tile)
            rows.append(np.hstack(tiles))
    picture = np.vstack(rows)
    dest = ROOT / "docs" / "images" / "person_prior.jpg"
    cv2.imwrite(str(dest), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
