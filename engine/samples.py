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


def centre_crop(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """The centred crop of ``img`` with width:height's aspect (a view)."""
    h, w = img.shape[:2]
    if h * width > w * height:
        ch = w * height // width
        return img[(h - ch) // 2 : (h - ch) // 2 + ch]
    cw = h * width // height
    return img[:, (w - cw) // 2 : (w - cw) // 2 + cw]


def fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``img`` to width:height, then area-resize it to width×height."""
    crop = centre_crop(img, width, height)
    return np.ascontiguousarray(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))


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
    objects: list[np.ndarray] = field(default_factory=list)  # uint8: objects beside/behind
    held: list[np.ndarray] = field(default_factory=list)  # uint8: objects in front of her

    def shown(self) -> list[np.ndarray]:
        """What a matte should keep: the person and what is in front of her (she holds it)."""
        if not self.held:
            return self.alphas
        return [np.maximum(a, h) for a, h in zip(self.alphas, self.held, strict=True)]


def _place_person(
    rgba: np.ndarray, i: int, motion: str, width: int, height: int
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The cut-out warped into frame ``i`` (RGBA), and (x, y, scale) of the photo's origin."""
    import cv2

    scale = 0.92 * height / rgba.shape[0]
    pw = rgba.shape[1] * scale
    if motion == "static":
        cx = width / 2
    elif motion == "sway":
        cx = width / 2 + 0.04 * width * np.sin(2 * np.pi * i / 120)
    else:  # fast: 10 frames across, 10 back
        phase = (i % 20) / 10.0
        cx = width * (0.3 + 0.4 * (phase if phase <= 1 else 2 - phase))
    ox, oy = cx - pw / 2, height - rgba.shape[0] * scale
    m = np.array([[scale, 0, ox], [0, scale, oy]], np.float32)
    person = cv2.warpAffine(
        rgba, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return person, (ox, oy, scale)


def _person_cutout() -> np.ndarray:
    import cv2

    bgra = cv2.imread(str(SAMPLES_DIR / "astronaut_cutout.png"), cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        raise InputError(f"{SAMPLES_DIR / 'astronaut_cutout.png'}: missing or not RGBA")
    rgba: np.ndarray = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
    return rgba


def background_rgb(name: str, width: int, height: int) -> np.ndarray:
    """A shipped background photo, cover-fitted to width × height; or ``#rrggbb``, flat."""
    from engine.media import read_rgb
    from engine.ops import cpu, reference

    if name.startswith("#"):
        from engine.config import parse_colour

        return np.full((height, width, 3), parse_colour(name), np.uint8)

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

    from engine.ops import cpu

    if motion not in MOTIONS:
        raise InputError(f"motion {motion!r} is not one of {', '.join(MOTIONS)}")
    rgba = _person_cutout()
    bg = background_rgb(background, width, height).astype(np.float32)
    rng = np.random.default_rng(seed)
    clip = CompositedClip([], [])
    for i in range(frames):
        person, _ = _place_person(rgba, i, motion, width, height)
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


@dataclass(frozen=True)
class Placement:
    """A salient object in a scene, placed in the person photo's own pixel coordinates (512×512,
    so it scales and moves with her): ``x``, ``y`` its centre, ``size`` its height; ``front``
    puts it in front of her (else behind); it sways ``sway`` photo pixels each way, with its own
    period ``period`` frames."""

    name: str
    x: float
    y: float
    size: float
    front: bool = False
    sway: float = 24.0
    period: int = 90


# Scenes with salient objects the selfie model keeps as foreground (benchmarks/quality.py).
SCENES: dict[str, tuple[Placement, ...]] = {
    "plain": (),
    "cat-beside": (Placement("cat", -60, 250, 260),),
    "cup-beside": (Placement("cup", 620, 170, 210, sway=30, period=70),),
    "logo-behind": (Placement("logo", 410, 130, 230, period=110),),
    "cat-front": (Placement("cat", 70, 300, 190, front=True, sway=40, period=80),),
    "cup-held": (Placement("cup", 150, 440, 150, front=True, sway=0),),
    # A second person (the same cut-out, smaller, behind her left shoulder): not an object.
    "two-people": (Placement("astronaut", -150, 300, 420, sway=10),),
}


def object_rgba(name: str) -> np.ndarray:
    import cv2

    if name == "astronaut":
        return _person_cutout()
    path = SAMPLES_DIR / "objects" / f"{name}.png"
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        raise InputError(f"{path}: missing or not RGBA")
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


def scene_clip(
    scene: str,
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
    """``composited_clip`` with the salient objects of ``SCENES[scene]`` beside, behind or in
    front of her, moving on their own. ``alphas`` is the person as seen (an object in front hides
    her), ``objects`` the pixels in view of the objects beside or behind her, ``held`` those of
    the objects in front of her (what she holds: ``shown()`` is the matte to expect)."""
    import cv2

    from engine.ops import cpu

    if scene not in SCENES:
        raise InputError(f"scene {scene!r} is not one of {', '.join(SCENES)}")
    person_rgba = _person_cutout()
    rng = np.random.default_rng(seed)
    out = CompositedClip([], [])
    bg = background_rgb(background, width, height).astype(np.float32)
    for i in range(frames):
        person, (ox, oy, scale) = _place_person(person_rgba, i, motion, width, height)
        pa = person[..., 3:4].astype(np.float32) / 255.0
        img_person = person[..., :3].astype(np.float32)
        behind = np.zeros((height, width, 1), np.float32)
        front = np.zeros((height, width, 1), np.float32)
        layer_b = np.zeros((height, width, 3), np.float32)
        layer_f = np.zeros((height, width, 3), np.float32)
        for p in SCENES[scene]:
            rgba = object_rgba(p.name)
            s = p.size * scale / rgba.shape[0]
            x = ox + (p.x + p.sway * np.sin(2 * np.pi * i / p.period)) * scale
            y = oy + p.y * scale
            m = np.array(
                [[s, 0, x - rgba.shape[1] * s / 2], [0, s, y - rgba.shape[0] * s / 2]], np.float32
            )
            warped = cv2.warpAffine(
                rgba, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            ).astype(np.float32)
            a = warped[..., 3:4] / 255.0
            acc, layer = (front, layer_f) if p.front else (behind, layer_b)
            layer[:] = warped[..., :3] * a + layer * (1 - a)
            acc[:] = a + acc * (1 - a)
        # Back to front: background, objects behind, the person, objects in front.
        img = bg * (1 - behind) + layer_b
        img = img * (1 - pa) + img_person * pa
        img = img * (1 - front) + layer_f
        if noise > 0:
            img += rng.normal(0.0, noise, img.shape).astype(np.float32)
        rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        frame = cpu.rgb_to_yuv420p(rgb, full_range=False)
        frame.pts = i
        out.frames.append(frame)
        if keep_rgb:
            out.rgb.append(rgb)
        visible_person = pa * (1 - front)
        visible_behind = behind * (1 - pa) * (1 - front)

        def u8(x: np.ndarray) -> np.ndarray:
            return np.clip(np.rint(x[..., 0] * 255), 0, 255).astype(np.uint8)

        out.alphas.append(u8(visible_person))
        out.objects.append(u8(visible_behind))
        out.held.append(u8(front))
    return out


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
