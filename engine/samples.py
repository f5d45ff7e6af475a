"""Sample photos that ship with the repository, and moving clips made from them.

The photos are scikit-image's sample images (public domain / CC0; see samples/README.md). A clip
is a photo seen through a moving, slowly zooming camera window: real content with a person in it
and real motion, for demos, tests and benchmarks.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InputError

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "samples"
PERSON_PHOTOS = ("astronaut", "cameraman")


def sample_path(name: str) -> Path:
    path = SAMPLES_DIR / f"{name}.jpg"
    if not path.exists():
        raise InputError(f"no sample photo {name!r} in {SAMPLES_DIR}")
    return path


def sample_rgb(name: str) -> np.ndarray:
    from engine.media import read_rgb

    return read_rgb(sample_path(name))


def fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``img`` to width:height, then area-resize it to width×height."""
    h, w = img.shape[:2]
    if h * width > w * height:
        ch = w * height // width
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    else:
        cw = h * width // height
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    return np.ascontiguousarray(cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA))


def camera_frames(
    photo: np.ndarray, width: int, height: int, frames: int, *, motion: float = 1.0
) -> list[np.ndarray]:
    """RGB frames of ``photo`` through a camera window that pans and zooms (deterministic)."""
    ph, pw = photo.shape[:2]
    aspect = width / height
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        zoom = 0.85 + 0.1 * motion * np.sin(2 * np.pi * t)  # share of the photo in view
        wh = min(ph, pw / aspect) * zoom
        ww = wh * aspect
        cx = pw / 2 + motion * 0.5 * (pw - ww) * np.sin(2 * np.pi * t) * 0.8
        cy = ph / 2 + motion * 0.5 * (ph - wh) * np.cos(2 * np.pi * t) * 0.5
        src = np.array(
            [[cx - ww / 2, cy - wh / 2], [cx + ww / 2, cy - wh / 2], [cx - ww / 2, cy + wh / 2]],
            dtype=np.float32,
        )
        dst = np.array([[0, 0], [width, 0], [0, height]], dtype=np.float32)
        m = cv2.getAffineTransform(src, dst)
        out.append(
            cv2.warpAffine(
                photo, m, (width, height), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT
            )
        )
    return out


def write_clip(
    path: str | Path,
    photo: str = "astronaut",
    width: int = 640,
    height: int = 480,
    frames: int = 60,
    fps: int = 30,
) -> Path:
    """Write a moving clip of a sample photo (codec by extension, as ``livefx process``)."""
    from engine.media import VideoWriter
    from engine.ops.cpu import rgb_to_yuv420p

    rate = Fraction(fps)
    with VideoWriter(path, width, height, rate) as writer:
        for i, rgb in enumerate(camera_frames(sample_rgb(photo), width, height, frames)):
            frame = rgb_to_yuv420p(rgb, full_range=False)
            frame.pts, frame.time_base = i, 1 / rate
            writer.write(frame)
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="write a moving clip of a sample photo")
    p.add_argument("output")
    p.add_argument("--photo", default="astronaut", choices=PERSON_PHOTOS)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--fps", type=int, default=30)
    a = p.parse_args(argv)
    write_clip(a.output, a.photo, a.width, a.height, a.frames, a.fps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
