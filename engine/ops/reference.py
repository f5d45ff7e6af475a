"""Reference image ops: plain NumPy float64, obvious and slow on purpose.

This module is the truth the fast backends (``cpu``, and later ``cuda``) are tested against. Every
function allocates its result and does the arithmetic in float64, in the most direct way.

Resampling convention (shared by every backend): while both sides are even and at least twice the
target, halve exactly (mean of each 2×2 block, a mip-map level); then bilinear with half-pixel
centres, clamped at the border. Shrinking by 2 or more therefore averages every input pixel (no
aliasing from skipped pixels), and each halving is a cheap pass for the fast backends.
"""

from __future__ import annotations

import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.ops.color import rgb_to_yuv, yuv_to_rgb


def bilinear_matrix(src: int, dst: int) -> np.ndarray:
    """dst×src weights of bilinear resampling with half-pixel centres, clamped at the border."""
    w = np.zeros((dst, src))
    for i in range(dst):
        x = min(max((i + 0.5) * src / dst - 0.5, 0.0), src - 1)
        j0 = int(np.floor(x))
        j1 = min(j0 + 1, src - 1)
        f = x - j0
        w[i, j0] += 1.0 - f
        w[i, j1] += f
    return w


def resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resample a 2-D plane (any dtype) to height×width, float64 (see the module's convention)."""
    p = plane.astype(np.float64)
    for _ in range(halvings(p.shape[1], p.shape[0], width, height)):
        p = halve(p)
    rows = bilinear_matrix(p.shape[0], height)
    cols = bilinear_matrix(p.shape[1], width)
    out: np.ndarray = rows @ p @ cols.T
    return out


def halvings(width: int, height: int, target_w: int, target_h: int) -> int:
    """How many exact 2×2 halvings come before the final bilinear resample to the target.

    Halve while both sides are even and at least twice the target's. Every backend follows this
    rule, so that their cheap halving passes compute what the reference does.
    """
    n = 0
    while width % 2 == 0 and height % 2 == 0 and width >= 2 * target_w and height >= 2 * target_h:
        width, height, n = width // 2, height // 2, n + 1
    return n


def pyramid_sizes(width: int, height: int, max_levels: int = 5) -> list[tuple[int, int]]:
    """(width, height) of a plane's exact halvings: level 0 is the plane itself."""
    sizes = [(width, height)]
    w, h = width, height
    while len(sizes) <= max_levels and w % 2 == 0 and h % 2 == 0 and w >= 4 and h >= 4:
        w, h = w // 2, h // 2
        sizes.append((w, h))
    return sizes


def halve(plane: np.ndarray) -> np.ndarray:
    """Mean of each 2×2 block (both sides even), float64."""
    p = plane.astype(np.float64)
    out: np.ndarray = (p[0::2, 0::2] + p[0::2, 1::2] + p[1::2, 0::2] + p[1::2, 1::2]) / 4.0
    return out


def preprocess(frame: FrameBuffer, width: int, height: int) -> np.ndarray:
    """yuv420p frame → model input: float64 (3, height, width) RGB in [0, 1].

    Each plane is resampled to the model size (``resize``), then the colour matrix is applied:
    the matrix is linear, so this equals converting first and resampling after (up to the clip).
    """
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    yuv = np.stack([resize(p, width, height) for p in (frame.y, frame.u, frame.v)])
    rgb = np.einsum("ij,jhw->ihw", mat, yuv - offset[:, None, None])
    out: np.ndarray = np.clip(rgb, 0.0, 1.0)
    return out


def rgb_to_yuv420p(
    rgb: np.ndarray, *, colorspace: str = "bt601", full_range: bool = True
) -> FrameBuffer:
    """uint8 (H, W, 3) RGB → yuv420p frame; chroma is the mean of each 2×2 block's RGB."""
    mat, offset = rgb_to_yuv(colorspace, full_range)
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float64) / 255.0
    y = np.einsum("ij,hwj->hwi", mat[:1], x)[..., 0] + offset[0]
    cw, ch = chroma_size(w, h)
    padded = np.pad(x, ((0, 2 * ch - h), (0, 2 * cw - w), (0, 0)), mode="edge")
    blocks = padded.reshape(ch, 2, cw, 2, 3).mean(axis=(1, 3))
    uv = np.einsum("ij,hwj->hwi", mat[1:], blocks) + offset[1:]

    def q(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return FrameBuffer(
        q(y), q(uv[..., 0]), q(uv[..., 1]), colorspace=colorspace, full_range=full_range
    )


def yuv420p_to_rgb(frame: FrameBuffer) -> np.ndarray:
    """yuv420p frame → uint8 (H, W, 3) RGB; chroma upsampled by pixel replication."""
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    h, w = frame.height, frame.width
    u = np.repeat(np.repeat(frame.u, 2, axis=0), 2, axis=1)[:h, :w]
    v = np.repeat(np.repeat(frame.v, 2, axis=0), 2, axis=1)[:h, :w]
    yuv = np.stack([frame.y, u, v], axis=-1).astype(np.float64) - offset
    rgb = np.einsum("ij,hwj->hwi", mat, yuv)
    out: np.ndarray = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return out


def matte_to_yuv420p(alpha: np.ndarray, *, colorspace: str, full_range: bool) -> FrameBuffer:
    """uint8 matte (0 = background, 255 = person) → grey yuv420p frame showing it."""
    a = alpha.astype(np.float64)
    y = a if full_range else 16.0 + a * (219.0 / 255.0)
    cw, ch = chroma_size(alpha.shape[1], alpha.shape[0])
    grey = np.full((ch, cw), 128, np.uint8)
    return FrameBuffer(
        np.rint(y).astype(np.uint8), grey, grey.copy(), colorspace=colorspace, full_range=full_range
    )


# -- matte refinement -----------------------------------------------------------------------------


def box_mean(plane: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window; borders mirrored without repeating the edge (reflect-101)."""
    p = np.pad(plane.astype(np.float64), radius, mode="reflect")
    k = 2 * radius + 1
    c = np.cumsum(np.cumsum(np.pad(p, ((1, 0), (1, 0))), axis=0), axis=1)
    out: np.ndarray = (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)
    return out


def temporal_smooth(mask: np.ndarray, previous: np.ndarray | None, smoothing: float) -> np.ndarray:
    """Motion-adaptive exponential smoothing of a matte in [0, 1].

    Per pixel, the new value moves from the previous one by a fraction k of the difference:
    k = k_min for tiny changes (noise, flicker) and grows to 1 for changes of 0.25 or more (real
    motion), so a moving person leaves no ghost trail. k_min = 1 − 0.85·smoothing.
    """
    m = mask.astype(np.float64)
    if previous is None or smoothing <= 0.0:
        return m
    prev = previous.astype(np.float64)
    k_min = 1.0 - 0.85 * smoothing
    k = np.minimum(1.0, k_min + (1.0 - k_min) * np.abs(m - prev) * 4.0)
    out: np.ndarray = prev + k * (m - prev)
    return out


def matte_curve(mask: np.ndarray, threshold: float, feather: float) -> np.ndarray:
    """Linear ramp of width ``feather`` centred on ``threshold`` (feather 0: a hard step)."""
    m = mask.astype(np.float64)
    if feather <= 0.0:
        return (m >= threshold).astype(np.float64)
    out: np.ndarray = np.clip((m - threshold) / feather + 0.5, 0.0, 1.0)
    return out


def guided_filter(guide: np.ndarray, mask: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a grey guide in [0, 1]: q = mean(a)·I + mean(b), where
    (a, b) is the least-squares linear fit of the mask to the guide in each window, so q keeps
    the mask's values but takes its edges from the guide."""
    i = guide.astype(np.float64)
    p = mask.astype(np.float64)
    mean_i, mean_p = box_mean(i, radius), box_mean(p, radius)
    var_i = box_mean(i * i, radius) - mean_i * mean_i
    cov_ip = box_mean(i * p, radius) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    out: np.ndarray = box_mean(a, radius) * i + box_mean(b, radius)
    return out


def refine(
    mask: np.ndarray,
    previous: np.ndarray | None,
    luma_small: np.ndarray | None,
    width: int,
    height: int,
    chroma_w: int,
    chroma_h: int,
    *,
    smoothing: float,
    threshold: float,
    feather: float,
    radius: int,
    eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The refine stage: (smoothed mask, low-resolution matte, Y matte, U/V matte).

    ``luma_small`` is the uint8 luma at the mask's size, the guided filter's guide (None: no
    guided filter). The order: guided filter, temporal smoothing, ramp, bilinear upsampling.
    """
    m = mask.astype(np.float64)
    if luma_small is not None:
        m = guided_filter(luma_small.astype(np.float64) / 255.0, m, radius, eps)
    smoothed = temporal_smooth(m, previous, smoothing)
    matte = matte_curve(smoothed, threshold, feather)

    def up(w: int, h: int) -> np.ndarray:
        return np.clip(np.rint(resize(matte * 255.0, w, h)), 0, 255).astype(np.uint8)

    return smoothed, matte, up(width, height), up(chroma_w, chroma_h)


# -- background and composite -------------------------------------------------------------------


def box_blur(plane: np.ndarray, radius: int, passes: int = 2) -> np.ndarray:
    """``passes`` box means of radius ``radius`` (two passes: a tent filter), float64."""
    out = plane.astype(np.float64)
    for _ in range(passes):
        out = box_mean(out, radius)
    return out


def masked_blur(plane: np.ndarray, weight: np.ndarray, radius: int) -> np.ndarray:
    """Blur of the background only: blur(x·w) / blur(w), w = background weight in [0, 1].

    The person's colours do not bleed into the blurred background (no halo). Where no
    background is near (blur(w) ≤ 1e-3: deep inside the person, hidden by the matte) the pixel
    is kept unblurred.
    """
    x = plane.astype(np.float64)
    w = weight.astype(np.float64)
    num, den = box_blur(x * w, radius), box_blur(w, radius)
    out: np.ndarray = np.where(den > 1e-3, num / np.maximum(den, 1e-3), x)
    return out


def composite(fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """out = a·fg + (1 − a)·bg with a = alpha/255, all uint8 planes of one size."""
    a = alpha.astype(np.float64) / 255.0
    out = a * fg.astype(np.float64) + (1.0 - a) * bg.astype(np.float64)
    result: np.ndarray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return result


def cover_crop(width: int, height: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the centred crop of a width × height image with the target's aspect."""
    if width * target_h > height * target_w:  # too wide: crop the sides
        w = max(1, round(height * target_w / target_h))
        return (width - w) // 2, 0, w, height
    h = max(1, round(width * target_h / target_w))
    return 0, (height - h) // 2, width, h


def cover_fit(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale an image to cover width × height keeping its aspect (centre crop); float64."""
    x, y, w, h = cover_crop(rgb.shape[1], rgb.shape[0], width, height)
    crop = rgb[y : y + h, x : x + w]
    channels = [resize(crop[..., c], width, height) for c in range(crop.shape[2])]
    return np.stack(channels, axis=-1)
