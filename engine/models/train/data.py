"""Training data: photos that ship inside packages, the classical cartoon target, degradations.

Training photos come from scikit-image's and scikit-learn's bundled sample data. The held-out
photos (never trained on) are LiveFX's own samples: the astronaut, the cameraman, and
scikit-image's coffee and cat (the last two are read from scikit-image too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

TRAIN_SKIMAGE = (
    "rocket", "stereo_motorcycle", "hubble_deep_field", "immunohistochemistry", "retina", "brick",
    "grass", "gravel", "colorwheel", "logo", "horse", "page", "coins", "moon", "clock",
)  # fmt: skip
TRAIN_SKLEARN = ("china.jpg", "flower.jpg")
HELD_OUT = ("astronaut", "camera", "coffee", "chelsea")


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img * (255.0 if img.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def training_photos() -> list[np.ndarray]:
    from skimage import data

    photos = []
    for name in TRAIN_SKIMAGE:
        try:
            loaded = getattr(data, name)()
        except Exception:  # a sample missing from this scikit-image version: use the rest
            continue
        # stereo_motorcycle is (left, right, disparity): two photos.
        photos += [_rgb(p) for p in (loaded[:2] if name == "stereo_motorcycle" else (loaded,))]
    from sklearn.datasets import load_sample_image

    photos += [_rgb(load_sample_image(name)) for name in TRAIN_SKLEARN]
    return [p for p in photos if min(p.shape[:2]) >= 128]


def held_out_photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {name: _rgb(getattr(data, name)()) for name in HELD_OUT}


def cartoon_target(rgb: np.ndarray, colours: int = 8) -> np.ndarray:
    """The classical cartoon pipeline: edge-preserving smoothing, colour quantisation (k-means,
    fixed seed), and dark edge lines from an adaptive threshold of the smoothed grey image."""
    smooth = rgb
    for _ in range(3):
        smooth = cv2.bilateralFilter(smooth, 9, 40, 7)
    cv2.setRNGSeed(0)
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    # OpenCV's stubs disagree across releases on ``bestLabels=None``: called untyped.
    kmeans: Any = cv2.kmeans
    _, labels, centres = kmeans(pixels, colours, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    flat = centres.astype(np.uint8)[labels.reshape(-1)].reshape(rgb.shape)
    grey = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, 4)
    out = flat.copy()
    out[edges == 0] = (out[edges == 0] * 0.15).astype(np.uint8)
    return out


@dataclass(frozen=True)
class Degradation:
    scale: float  # downscale factor before the bicubic upscale back
    blur: float  # Gaussian σ in pixels
    noise: float  # Gaussian noise σ in 8-bit levels
    jpeg: int  # JPEG quality (blocking like a low-bitrate VP8/H.264 stream)


EVAL_DEGRADATION = Degradation(scale=2.0, blur=0.8, noise=4.0, jpeg=35)


def random_degradation(rng: np.random.Generator) -> Degradation:
    return Degradation(
        scale=float(rng.uniform(1.0, 2.5)),
        blur=float(rng.uniform(0.0, 1.2)),
        noise=float(rng.uniform(0.0, 8.0)),
        jpeg=int(rng.integers(20, 75)),
    )


def degrade(rgb: np.ndarray, d: Degradation, rng: np.random.Generator) -> np.ndarray:
    """A poor webcam's picture of ``rgb``: soft, noisy, blocky, at the same size."""
    h, w = rgb.shape[:2]
    img = rgb
    if d.scale > 1.01:
        small = cv2.resize(
            img,
            (max(1, round(w / d.scale)), max(1, round(h / d.scale))),
            interpolation=cv2.INTER_AREA,
        )
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if d.blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), d.blur)
    if d.noise > 0:
        noisy = img.astype(np.float32) + rng.normal(0.0, d.noise, img.shape).astype(np.float32)
        img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(
        ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, d.jpeg]
    )
    decoded = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    assert ok and decoded is not None
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def augment(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The same random flip and quarter turn on a pair."""
    k = int(rng.integers(0, 4))
    a, b = np.rot90(a, k), np.rot90(b, k)
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    return np.ascontiguousarray(a), np.ascontiguousarray(b)


class PatchSampler:
    """Random (input, target) patches, float32 NCHW in [0, 1], from whole-photo pairs."""

    def __init__(self, task: str, photos: list[np.ndarray], patch: int, seed: int) -> None:
        self.task = task
        self.patch = patch
        self.rng = np.random.default_rng(seed)
        self.photos = photos
        # Cartoon targets are made once per photo (and per scale of the photo).
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        if task == "cartoon":
            for p in photos:
                for s in (1.0, 0.5):
                    img = (
                        p
                        if s == 1.0
                        else cv2.resize(p, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                    )
                    if min(img.shape[:2]) > patch:
                        self.pairs.append((img, cartoon_target(img)))

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        size = self.patch
        for _ in range(n):
            if self.task == "cartoon":
                src, tgt = self.pairs[int(self.rng.integers(len(self.pairs)))]
            else:
                photo = self.photos[int(self.rng.integers(len(self.photos)))]
                src = tgt = photo
            h, w = src.shape[:2]
            y0, x0 = (
                int(self.rng.integers(0, h - size + 1)),
                int(self.rng.integers(0, w - size + 1)),
            )
            a = src[y0 : y0 + size, x0 : x0 + size]
            b = tgt[y0 : y0 + size, x0 : x0 + size]
            if self.task == "enhance":
                a = degrade(b, random_degradation(self.rng), self.rng)
            a, b = augment(a, b, self.rng)
            xs.append(a)
            ys.append(b)
        x = np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        y = np.stack(ys).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        return x, y
