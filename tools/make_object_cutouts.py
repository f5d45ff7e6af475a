"""Make samples/objects/*.png: salient objects with an alpha channel, for the matte benchmarks.

The objects are what a selfie segmenter wrongly keeps as "person" when they sit next to or
behind someone: a cup on its saucer, a cat's head, a colourful logo. Photos from scikit-image's
bundled data (CC0 / public domain, see samples/README.md). Each is cut semi-automatically with
OpenCV's GrabCut (parts of at least a fifth of the largest kept, holes filled, feathered by one
pixel), seeded by hand:
``cup`` from a rectangle around the saucer; ``cat`` from two ellipses around her head (outside
the outer one is background, inside the inner one is cat); ``logo`` (on white) from its
non-white pixels.

    .venv/bin/python tools/make_object_cutouts.py samples/objects
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np


def seed_cup(rgb: np.ndarray) -> np.ndarray:
    mask = np.full(rgb.shape[:2], cv2.GC_BGD, np.uint8)
    mask[14:396, 70:486] = cv2.GC_PR_FGD
    return mask


def seed_cat(rgb: np.ndarray) -> np.ndarray:
    mask = np.full(rgb.shape[:2], cv2.GC_BGD, np.uint8)
    cv2.ellipse(mask, (215, 165), (215, 175), 0, 0, 360, cv2.GC_PR_FGD, -1)
    cv2.ellipse(mask, (215, 170), (140, 110), 0, 0, 360, cv2.GC_FGD, -1)
    return mask


def seed_logo(rgb: np.ndarray) -> np.ndarray:
    coloured = (rgb.min(axis=2) < 235).astype(np.uint8)
    mask = np.where(coloured > 0, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
    core = cv2.erode(coloured, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    mask[core > 0] = cv2.GC_FGD
    return mask


# name: (skimage image, seed, output height)
OBJECTS = {
    "cup": ("coffee", seed_cup, 240),
    "cat": ("chelsea", seed_cat, 240),
    "logo": ("logo", seed_logo, 200),
}


def grabcut(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, mask, None, bgd, fgd, 8, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    obj = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(obj)
    areas = stats[1:, cv2.CC_STAT_AREA]
    big = 1 + np.nonzero(areas >= 0.2 * areas.max())[0]  # the logo's two halves are apart
    obj = np.isin(labels, big).astype(np.uint8)
    contours, _ = cv2.findContours(obj, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(obj)
    cv2.drawContours(filled, contours, -1, 1, cv2.FILLED)
    alpha = cv2.GaussianBlur(filled.astype(np.float32) * 255.0, (3, 3), 0)
    return np.clip(np.rint(alpha), 0, 255).astype(np.uint8)


def crop_rgba(rgba: np.ndarray, height: int) -> np.ndarray:
    ys, xs = np.nonzero(rgba[..., 3] > 0)
    rgba = rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    width = round(rgba.shape[1] * height / rgba.shape[0])
    return cv2.resize(rgba, (width, height), interpolation=cv2.INTER_AREA)


def main(out: str) -> int:
    from skimage import data

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (image, seed, height) in OBJECTS.items():
        rgb = np.ascontiguousarray(getattr(data, image)()[..., :3])
        rgba = np.dstack([rgb, grabcut(rgb, seed(rgb))])
        rgba = crop_rgba(rgba, height)
        cv2.imwrite(str(out_dir / f"{name}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        opaque = float((rgba[..., 3] > 127).mean())
        print(f"{name}: {rgba.shape[1]}×{rgba.shape[0]}, {opaque:.2f} opaque")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "samples/objects"))
