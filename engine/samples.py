"""Sample photos that ship with the repository, and moving clips made from them.

The photos are scikit-image's sample images (public domain / CC0; see samples/README.md). A clip
is a photo seen through a moving, slowly zooming camera window: real content with a person in it
and real motion, for demos, tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from engine.errors import InputError
from engine.frame import FrameBuffer

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


MOTIONS = ("static", "sway", "fast")


@dataclass
class CompositedClip:
    """Frames of a person composited over a background, with the true matte of each frame."""

    frames: list[FrameBuffer]
    alphas: list[np.ndarray]  # uint8, frame size: the person as composited (ground truth)
    rgb: list[np.ndarray] = field(default_factory=list)  # the RGB frames (when kept)


def background_rgb(name: str, width: int, height: int) -> np.ndarray:
    """A shipped background photo, cover-fitted to width × height."""
    from engine.media import read_rgb
    from engine.ops import cpu, reference

    path = SAMPLES_DIR / "backgrounds" / f"{name}.jpg"
    if not path.exists():
        raise InputError(f"no background {name!r} in {path.parent}")
    rgb = read_rgb(path)
    x, y, w, h = reference.cover_crop(rgb.shape[1], rgb.shape[0], width, height)
    out = np.empty((height, width, 3), np.uint8)
    cpu.resize_into(np.ascontiguousarray(rgb[y : y + h, x : x + w]), out)
    return out


def composited_clip(
    width: int,
    height: int,
    frames: int,
    *,
    motion: str = "sway",
    background: str = "rocket",
    noise: float = 2.0,
    seed: int = 0,
    keep_rgb: bool = False,
) -> CompositedClip:
    """The astronaut cut-out over a background photo, moving, with camera noise (deterministic).

    ``motion``: ``static`` (she stands still; only the noise changes), ``sway`` (a slow sway,
    about 4 % of the width each way over 4 s at 30 fps), ``fast`` (she crosses 40 % of the width
    in 10 frames and back: ghost trails show here). ``noise`` is the σ of Gaussian sensor noise
    added to every frame, in 8-bit RGB levels.
    """
    import cv2

    from engine.ops import cpu

    if motion not in MOTIONS:
        raise InputError(f"motion {motion!r} is not one of {', '.join(MOTIONS)}")
    bgra = cv2.imread(str(SAMPLES_DIR / "astronaut_cutout.png"), cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        raise InputError(f"{SAMPLES_DIR / 'astronaut_cutout.png'}: missing or not RGBA")
    rgba = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
    bg = background_rgb(background, width, height).astype(np.float32)
    rng = np.random.default_rng(seed)
    scale = 0.92 * height / rgba.shape[0]
    pw = rgba.shape[1] * scale
    clip = CompositedClip([], [])
    for i in range(frames):
        if motion == "static":
            cx = width / 2
        elif motion == "sway":
            cx = width / 2 + 0.04 * width * np.sin(2 * np.pi * i / 120)
        else:  # fast: 10 frames across, 10 back
            phase = (i % 20) / 10.0
            cx = width * (0.3 + 0.4 * (phase if phase <= 1 else 2 - phase))
        m = np.array(
            [[scale, 0, cx - pw / 2], [0, scale, height - rgba.shape[0] * scale]], np.float32
        )
        person = cv2.warpAffine(
            rgba, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        alpha = person[..., 3:4].astype(np.float32) / 255.0
        img = person[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
        if noise > 0:
            img += rng.normal(0.0, noise, img.shape).astype(np.float32)
        rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        frame = cpu.rgb_to_yuv420p(rgb, full_range=False)
        frame.pts = i
        clip.frames.append(frame)
        clip.alphas.append(np.ascontiguousarray(person[..., 3]))
        if keep_rgb:
            clip.rgb.append(rgb)
    return clip


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
