"""Bringing a low-resolution result back to full resolution along the full-resolution frame's
edges (the GAN effect's reduced internal size)."""

from __future__ import annotations

import cv2
import numpy as np

from engine.ops.cpu import box_mean_into

_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(plane: np.ndarray) -> float:
    """The σ of a plane's white noise, in levels (Immerkær, "Fast noise variance estimation",
    1996): the mean absolute response to a filter that cancels smooth shading and edges to the
    first order. Texture reads as noise too: an upper bound on real pictures."""
    r = cv2.filter2D(plane, cv2.CV_32F, _LAPLACE, borderType=cv2.BORDER_REFLECT_101)
    h, w = plane.shape
    return (
        float(np.sqrt(np.pi / 2) * np.abs(r[1:-1, 1:-1]).mean() / 6.0) if h > 2 and w > 2 else 0.0
    )


class GuidedUpsampler:
    """A low-resolution result brought to full resolution along the full-resolution frame's edges.

    The fast guided filter (He & Sun, "Fast Guided Filter", 2015), self-guided per plane: at the
    low resolution, the result ``q`` is fitted locally as ``a·I + b`` of the frame ``I`` scaled to
    the same size (box windows of ``radius``, regularised by ``eps`` on the 0–255 scale); ``a``
    and ``b`` are upsampled bilinearly and applied to the full-resolution frame. Edges and fine
    texture come from the frame itself, the generator's colours and shapes from ``q``. Buffers
    are made once per pair of sizes.
    """

    def __init__(self, radius: int = 2, eps: float = 4.0, noise_eps: float = 0.0) -> None:
        self.radius = radius
        self.eps = np.float32(eps)
        self.noise_eps = noise_eps
        self.last_eps = float(eps)
        self._low: dict[tuple[int, int], list[np.ndarray]] = {}
        self._full: dict[tuple[int, int], list[np.ndarray]] = {}

    def __call__(
        self, low_in: np.ndarray, low_out: np.ndarray, full_in: np.ndarray, dst: np.ndarray
    ) -> None:
        """``low_in``/``low_out``: uint8 planes of one size (the frame scaled down, and the
        generator's result); ``full_in``/``dst``: uint8 planes of the full size."""
        h, w = low_in.shape
        t = self._low.get((w, h))
        if t is None:
            t = self._low[(w, h)] = [np.empty((h, w), np.float32) for _ in range(6)]
        i, q, mi, mq, a, b = t
        np.copyto(i, low_in, casting="unsafe")
        np.copyto(q, low_out, casting="unsafe")
        r = self.radius
        box_mean_into(i, r, mi)
        box_mean_into(q, r, mq)
        np.multiply(i, q, out=a)
        box_mean_into(a, r, a)  # mean of I·q
        np.multiply(i, i, out=b)
        box_mean_into(b, r, b)  # mean of I²
        np.multiply(mi, mq, out=q)
        np.subtract(a, q, out=a)  # cov(I, q)
        np.multiply(mi, mi, out=i)
        np.subtract(b, i, out=b)  # var(I)
        eps = self.eps
        if self.noise_eps > 0:  # smooth what is as small as the frame's own noise
            eps = np.float32(max(float(eps), self.noise_eps * noise_sigma(low_in) ** 2))
        self.last_eps = float(eps)
        b += eps
        np.divide(a, b, out=a)
        np.multiply(a, mi, out=b)
        np.subtract(mq, b, out=b)
        fh, fw = full_in.shape
        f = self._full.get((fw, fh))
        if f is None:
            f = self._full[(fw, fh)] = [np.empty((fh, fw), np.float32) for _ in range(2)]
        big_a, big_b = f
        cv2.resize(a, (fw, fh), dst=big_a, interpolation=cv2.INTER_LINEAR)
        cv2.resize(b, (fw, fh), dst=big_b, interpolation=cv2.INTER_LINEAR)
        cv2.multiply(big_a, full_in, dst=big_a, dtype=cv2.CV_32F)
        cv2.add(big_a, big_b, dst=dst, dtype=cv2.CV_8U)  # rounded and saturated to 0..255


class ResidualUpsampler:
    """A low-resolution result brought to full resolution as a correction of the full frame:
    ``dst = full_in + upsample(low_out − low_in)`` (bilinear). What the generator changed at the
    low size (noise, blocking, colour, coarse sharpening) is changed at full size; detail finer
    than the low size passes through untouched. Buffers are made once per pair of sizes."""

    def __init__(self) -> None:
        self._low: dict[tuple[int, int], np.ndarray] = {}
        self._full: dict[tuple[int, int], np.ndarray] = {}

    def __call__(
        self, low_in: np.ndarray, low_out: np.ndarray, full_in: np.ndarray, dst: np.ndarray
    ) -> None:
        h, w = low_in.shape
        d = self._low.get((w, h))
        if d is None:
            d = self._low[(w, h)] = np.empty((h, w), np.float32)
        cv2.subtract(low_out, low_in, dst=d, dtype=cv2.CV_32F)
        fh, fw = full_in.shape
        big = self._full.get((fw, fh))
        if big is None:
            big = self._full[(fw, fh)] = np.empty((fh, fw), np.float32)
        cv2.resize(d, (fw, fh), dst=big, interpolation=cv2.INTER_LINEAR)
        cv2.add(big, full_in, dst=dst, dtype=cv2.CV_8U)
