"""Matte quality against a known truth: flicker, edge error, overlap, ghosting.

All take uint8 mattes (0 = background, 255 = person) at frame size and the true mattes of the
same frames (``engine.samples.composited_clip`` makes both). Results are in matte units [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def far_background(true_alpha: np.ndarray, margin: int) -> np.ndarray:
    """Pixels that are background and at least ``margin`` pixels from the person."""
    bg = (true_alpha == 0).astype(np.uint8)
    return cv2.distanceTransform(bg, cv2.DIST_L2, 3) >= margin


def edge_band(true_alpha: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels of the true person boundary."""
    person = (true_alpha >= 128).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
    return (cv2.dilate(person, kernel) - cv2.erode(person, kernel)) > 0


def flicker(alphas: Sequence[np.ndarray], truths: Sequence[np.ndarray], margin: int = 2) -> float:
    """Mean |Δα| frame to frame over pixels that stay background (and away from the person)."""
    values = []
    for k in range(1, len(alphas)):
        keep = far_background(truths[k], margin) & far_background(truths[k - 1], margin)
        if keep.any():
            d = np.abs(alphas[k].astype(np.int16) - alphas[k - 1].astype(np.int16))
            values.append(float(d[keep].mean()) / 255.0)
    return float(np.mean(values)) if values else 0.0


def edge_error(alphas: Sequence[np.ndarray], truths: Sequence[np.ndarray], width: int = 8) -> float:
    """Mean |α − α_true| in the band around the true boundary."""
    values = []
    for a, t in zip(alphas, truths, strict=True):
        band = edge_band(t, width)
        values.append(float(np.abs(a.astype(np.int16) - t.astype(np.int16))[band].mean()) / 255.0)
    return float(np.mean(values))


def iou(alphas: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> float:
    """Mean intersection over union of the person (α ≥ 0.5)."""
    values = []
    for a, t in zip(alphas, truths, strict=True):
        p, q = a >= 128, t >= 128
        union = (p | q).sum()
        values.append(float((p & q).sum() / union) if union else 1.0)
    return float(np.mean(values))


def ghosting(alphas: Sequence[np.ndarray], truths: Sequence[np.ndarray], margin: int = 8) -> float:
    """Share of true-background pixels (away from the person) shown as person (α ≥ 0.5)."""
    values = []
    for a, t in zip(alphas, truths, strict=True):
        bg = far_background(t, margin)
        values.append(float((a[bg] >= 128).mean()) if bg.any() else 0.0)
    return float(np.mean(values))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * float(np.log10(255.0**2 / max(mse, 1e-12)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window σ = 1.5, K1 = 0.01, K2 = 0.03) of two uint8
    images, over the channels."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x = a.astype(np.float64)
    y = b.astype(np.float64)

    def blur(z: np.ndarray) -> np.ndarray:
        out: np.ndarray = cv2.GaussianBlur(z, (11, 11), 1.5)
        return out

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def edge_sharpness(image: np.ndarray, edges: np.ndarray) -> float:
    """Mean gradient magnitude of ``image``'s luma on the pixels where ``edges`` is true."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.sqrt(gx * gx + gy * gy)[edges].mean()) if edges.any() else 0.0
