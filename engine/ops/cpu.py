"""Fast CPU image ops: OpenCV and NumPy, writing into buffers the caller owns.

Same conventions as ``engine.ops.reference`` (which the tests hold these to); the difference is
that nothing here allocates per frame once its scratch buffers exist for a given frame size.
"""

from __future__ import annotations

import cv2
import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.ops import fused, reference
from engine.ops.color import rgb_to_yuv, yuv_to_rgb


def resize_into(src: np.ndarray, dst: np.ndarray) -> None:
    """``reference.resize`` into ``dst``: exact 2×2 halvings, then bilinear (half-pixel).

    Planes (H, W) or images (H, W, C), uint8 or float32."""
    sh, sw = src.shape[:2]
    dh, dw = dst.shape[:2]
    k = reference.halvings(sw, sh, dw, dh)
    while k > 0:
        sh, sw, k = sh // 2, sw // 2, k - 1
        # OpenCV's bilinear at exactly half size is the 2×2 mean.
        shape = (sh, sw, *src.shape[2:])
        half = dst if k == 0 and (sh, sw) == (dh, dw) else np.empty(shape, src.dtype)
        cv2.resize(src, (sw, sh), dst=half, interpolation=cv2.INTER_LINEAR)
        src = half
    if src is not dst:
        cv2.resize(src, (dw, dh), dst=dst, interpolation=cv2.INTER_LINEAR)


class Pyramid:
    """A plane and its exact 2×2 halvings (level k is 2^k times smaller), remade each frame.

    Halving with OpenCV's bilinear resize at exactly half size averages each 2×2 block, so a
    level costs a fraction of a pass over the plane above it. Levels are computed on demand.
    """

    def __init__(self, width: int, height: int, max_levels: int = 5) -> None:
        self.sizes = reference.pyramid_sizes(width, height, max_levels)
        self._levels: list[np.ndarray] = [np.empty((0, 0), np.uint8)] + [
            np.empty((h, w), np.uint8) for w, h in self.sizes[1:]
        ]
        self._ready = 0

    def set(self, plane: np.ndarray) -> None:
        self._levels[0] = plane
        self._ready = 1

    def level(self, k: int) -> np.ndarray:
        k = min(k, len(self.sizes) - 1)
        while self._ready <= k:
            src, dst = self._levels[self._ready - 1], self._levels[self._ready]
            cv2.resize(src, (dst.shape[1], dst.shape[0]), dst=dst, interpolation=cv2.INTER_LINEAR)
            self._ready += 1
        return self._levels[k]

    def shrink_into(self, dst: np.ndarray) -> None:
        """``reference.resize`` of the plane into ``dst``, reusing this frame's levels."""
        w, h = self.sizes[0]
        k = reference.halvings(w, h, dst.shape[1], dst.shape[0])
        resize_into(self.level(min(k, len(self.sizes) - 1)), dst)


class FramePyramids:
    """Pyramids of the Y, U and V planes of frames of one size."""

    def __init__(self, width: int, height: int) -> None:
        cw, ch = chroma_size(width, height)
        self.y = Pyramid(width, height)
        self.u = Pyramid(cw, ch)
        self.v = Pyramid(cw, ch)

    def set(self, frame: FrameBuffer) -> None:
        self.y.set(frame.y)
        self.u.set(frame.u)
        self.v.set(frame.v)


class Preprocessor:
    """yuv420p planes → float32 NCHW model input, RGB in [0, 1].

    Shrinks the three planes to the model size first (halvings, then one area resample), then
    applies the colour matrix at model resolution only: a full-resolution RGB frame never exists.
    ``luma`` keeps the shrunk Y plane: the guide for the matte at the model's resolution.
    """

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._small = np.empty((3, height, width), np.uint8)
        self._yuv = np.empty((3, height * width), np.float32)

    @property
    def luma(self) -> np.ndarray:
        return self._small[0]

    @property
    def small(self) -> np.ndarray:
        """The Y, U and V planes shrunk to the model size, (3, H, W) uint8, from the last call."""
        return self._small

    def __call__(
        self,
        pyramids: FramePyramids,
        out: np.ndarray,
        colorspace: str = "bt601",
        full_range: bool = False,
    ) -> None:
        """Write the model input into ``out`` (shape (3, H, W) or (1, 3, H, W))."""
        for pyramid, small in zip((pyramids.y, pyramids.u, pyramids.v), self._small, strict=True):
            pyramid.shrink_into(small)
        mat, offset = yuv_to_rgb(colorspace, full_range)
        np.subtract(
            self._small.reshape(3, -1),
            offset.astype(np.float32)[:, None],
            out=self._yuv,
            casting="unsafe",
        )
        flat = out.reshape(3, -1)
        np.matmul(mat.astype(np.float32), self._yuv, out=flat)
        np.clip(flat, 0.0, 1.0, out=flat)


class RgbToYuv420p:
    """Planar float RGB in [0, 1] (3, h, w) → a yuv420p frame of any size (resampled per plane).

    The colour matrix runs at the RGB's own resolution; the planes are then resampled to the
    frame's Y and U/V sizes. Buffers are made once per size.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, rgb: np.ndarray, out: FrameBuffer) -> None:
        planes = self.planes(rgb, out.colorspace, out.full_range)
        for src, dst in zip(planes, (out.y, out.u, out.v), strict=True):
            resize_into(src, dst)

    def planes(self, rgb: np.ndarray, colorspace: str, full_range: bool) -> np.ndarray:
        """The Y, U and V planes at the RGB's own resolution, (3, h, w) uint8 (reused)."""
        _, h, w = rgb.shape
        bufs = self._bufs.get((w, h))
        if bufs is None:
            bufs = self._bufs[(w, h)] = (
                np.empty((3, h * w), np.float32),
                np.empty((3, h, w), np.uint8),
            )
        yuv, planes = bufs
        mat, offset = rgb_to_yuv(colorspace, full_range)
        np.matmul(mat.astype(np.float32), rgb.reshape(3, -1), out=yuv)
        yuv += (offset.astype(np.float32) + np.float32(0.5))[:, None]
        np.clip(yuv, 0, 255, out=yuv)
        np.copyto(planes.reshape(3, -1), yuv, casting="unsafe")
        return planes


def box_mean_into(src: np.ndarray, radius: int, dst: np.ndarray) -> None:
    """``reference.box_mean`` on float32 planes (OpenCV's default border is reflect-101)."""
    k = 2 * radius + 1
    cv2.boxFilter(src, -1, (k, k), dst=dst, normalize=True, borderType=cv2.BORDER_REFLECT_101)


class MatteRefiner:
    """Low-resolution mask → uint8 mattes for the Y plane and for the U/V planes.

    All the filtering runs at the mask's resolution (a few tens of thousands of pixels), in this
    order (as ``reference.refine``):

    1. guided filter with the frame's luma at the mask's size as guide: the mask's edges snap to
       the picture's edges (``guided``; skipped when off);
    2. motion-adaptive temporal smoothing (its state is ``previous``; ``reset()`` forgets it).
       It comes after the guided filter so that it also damps the noise the guide brings in;
    3. the threshold/feather ramp: ``matte``, the low-resolution matte, and ``small8``, its
       8-bit version (``quantise``): the full-size passes read and write bytes, not floats;
    4. bilinear upsampling to each plane's size: the pipeline resamples ``small8`` across and
       the composite lerps it down (``engine.ops.fused``).

    ``run`` does 1–3 in one call of the compiled loops where they exist.
    """

    def __init__(self, mask_w: int, mask_h: int) -> None:
        shape = (mask_h, mask_w)
        self.previous: np.ndarray | None = None
        self.filtered = np.empty(shape, np.float32)  # after the guided filter
        self.smoothed = np.empty(shape, np.float32)  # after temporal smoothing
        self.matte = np.empty(shape, np.float32)  # after the ramp
        self._guide = np.empty(shape, np.float32)
        self._k = np.empty(shape, np.float32)
        self._t = [np.empty(shape, np.float32) for _ in range(6)]
        self.small8 = np.empty(shape, np.uint8)
        self._c: list[np.ndarray] | None = None  # the colour guided filter's buffers
        self._scratch = fused.Scratch()

    def reset(self) -> None:
        self.previous = None

    def run(
        self,
        mask: np.ndarray,
        luma_small: np.ndarray | None,
        *,
        radius: int,
        eps: float,
        smoothing: float,
        threshold: float,
        feather: float,
    ) -> None:
        """Guided filter (``luma_small`` the guide; None: none), temporal smoothing, the ramp
        and ``small8``: ``reference.refine`` up to its upsampling."""
        lib = fused.NATIVE
        if lib is None:
            m = mask
            if luma_small is not None:
                self.guided(mask, luma_small, radius, eps)
                m = self.filtered
            self.smooth(m, smoothing)
            self.ramp(threshold, feather)
            self.quantise()
            return
        h, w = self.matte.shape
        mask = np.ascontiguousarray(mask, np.float32)
        first = self.previous is None
        if self.previous is None:
            self.previous = np.empty_like(self.smoothed)
        lib.refine(
            fused.addr(mask),
            None if luma_small is None else fused.addr(luma_small),
            0 if luma_small is None else luma_small.strides[0],
            w,
            h,
            radius,
            eps,
            fused.addr(self.previous),
            int(first),
            smoothing,
            threshold,
            feather,
            fused.addr(self.filtered),
            fused.addr(self.smoothed),
            fused.addr(self.matte),
            fused.addr(self.small8),
            fused.addr(self._scratch.get(5 * h * w + fused.box_scratch(w, h, radius))),
        )

    def guided(self, mask: np.ndarray, luma_small: np.ndarray, radius: int, eps: float) -> None:
        """He et al.'s guided filter (grey guide in [0, 1]) of ``mask`` into ``filtered``."""
        i, p, q = self._guide, mask, self.filtered
        np.multiply(luma_small, np.float32(1.0 / 255.0), out=i, casting="unsafe")
        mean_i, mean_p, corr_i, corr_ip, t1, t2 = self._t
        box_mean_into(i, radius, mean_i)
        box_mean_into(p, radius, mean_p)
        np.multiply(i, i, out=t1)
        box_mean_into(t1, radius, corr_i)
        np.multiply(i, p, out=t1)
        box_mean_into(t1, radius, corr_ip)
        np.multiply(mean_i, mean_i, out=t1)
        np.subtract(corr_i, t1, out=t1)  # var_i
        np.add(t1, np.float32(eps), out=t1)
        np.multiply(mean_i, mean_p, out=t2)
        np.subtract(corr_ip, t2, out=t2)  # cov_ip
        np.divide(t2, t1, out=t1)  # a
        np.multiply(t1, mean_i, out=t2)
        np.subtract(mean_p, t2, out=t2)  # b
        box_mean_into(t1, radius, mean_i)  # mean a
        box_mean_into(t2, radius, mean_p)  # mean b
        np.multiply(mean_i, i, out=q)
        np.add(q, mean_p, out=q)

    def guided_colour(
        self, mask: np.ndarray, rgb_small: np.ndarray, radius: int, eps: float
    ) -> None:
        """He et al.'s guided filter with the colour picture as guide (RGB (3, h, w) in [0, 1])
        of ``mask`` into ``filtered``: an edge between colours of the same luma (brown hair on
        a blue wall) guides the matte too. Per pixel, a = (Σ + εI)⁻¹ cov(I, p), solved in closed
        form (the 3×3 inverse by cofactors)."""
        if self._c is None:
            self._c = [np.empty(mask.shape, np.float32) for _ in range(22)]
        c = self._c
        r_, g_, b_ = rgb_small[0], rgb_small[1], rgb_small[2]
        mr, mg, mb, mp = c[0], c[1], c[2], c[3]
        for src, dst in ((r_, mr), (g_, mg), (b_, mb), (mask, mp)):
            box_mean_into(src, radius, dst)
        t = c[21]
        # Covariances of the guide (6) and of the guide with the mask (3).
        pairs = (
            (r_, r_, mr, mr),
            (r_, g_, mr, mg),
            (r_, b_, mr, mb),
            (g_, g_, mg, mg),
            (g_, b_, mg, mb),
            (b_, b_, mb, mb),
        )
        cov = c[4:10]
        for (x, y, mx, my), out in zip(pairs, cov, strict=True):
            np.multiply(x, y, out=t)
            box_mean_into(t, radius, out)
            np.subtract(out, mx * my, out=out)
        vrr, vrg, vrb, vgg, vgb, vbb = cov
        e = np.float32(eps)
        vrr += e
        vgg += e
        vbb += e
        cp = c[10:13]
        for x, mx, out in zip((r_, g_, b_), (mr, mg, mb), cp, strict=True):
            np.multiply(x, mask, out=t)
            box_mean_into(t, radius, out)
            np.subtract(out, mx * mp, out=out)
        # Cofactors of the symmetric 3×3 and its determinant.
        i00, i01, i02, i11, i12, i22 = c[13:19]
        np.subtract(vgg * vbb, vgb * vgb, out=i00)
        np.subtract(vgb * vrb, vrg * vbb, out=i01)
        np.subtract(vrg * vgb, vgg * vrb, out=i02)
        np.subtract(vrr * vbb, vrb * vrb, out=i11)
        np.subtract(vrb * vrg, vrr * vgb, out=i12)
        np.subtract(vrr * vgg, vrg * vrg, out=i22)
        det = c[19]
        np.multiply(i00, vrr, out=det)
        det += i01 * vrg
        det += i02 * vrb
        cr, cg, cb = cp
        ar, ag, ab = c[13], c[14], c[15]  # reuse: i00, i01, i02 are read before overwritten
        a_r = (i00 * cr + i01 * cg + i02 * cb) / det
        a_g = (i01 * cr + i11 * cg + i12 * cb) / det
        a_b = (i02 * cr + i12 * cg + i22 * cb) / det
        np.copyto(ar, a_r)
        np.copyto(ag, a_g)
        np.copyto(ab, a_b)
        bb = c[20]
        np.subtract(mp, ar * mr + ag * mg + ab * mb, out=bb)
        for x in (ar, ag, ab, bb):
            box_mean_into(x, radius, t)
            np.copyto(x, t)
        q = self.filtered
        np.multiply(ar, r_, out=q)
        q += ag * g_
        q += ab * b_
        q += bb

    def smooth(self, mask: np.ndarray, smoothing: float) -> None:
        m, out = mask, self.smoothed
        if self.previous is None or smoothing <= 0.0:
            np.copyto(out, m)
        else:
            k_min = np.float32(1.0 - 0.85 * smoothing)
            k, prev = self._k, self.previous
            np.subtract(m, prev, out=out)  # Δ
            np.abs(out, out=k)
            np.multiply(k, (1.0 - k_min) * 4.0, out=k)
            np.add(k, k_min, out=k)
            np.minimum(k, 1.0, out=k)
            np.multiply(out, k, out=out)
            np.add(out, prev, out=out)
        if self.previous is None:
            self.previous = np.empty_like(out)
        np.copyto(self.previous, out)

    def ramp(self, threshold: float, feather: float) -> None:
        if feather <= 0.0:
            np.greater_equal(self.smoothed, threshold, out=self._k, casting="unsafe")
            np.copyto(self.matte, self._k)
            return
        np.subtract(self.smoothed, threshold, out=self.matte)
        np.multiply(self.matte, 1.0 / feather, out=self.matte)
        np.add(self.matte, 0.5, out=self.matte)
        np.clip(self.matte, 0.0, 1.0, out=self.matte)

    def quantise(self) -> None:
        """``small8`` from ``matte``: ⌊255·matte + 0.5⌋."""
        np.multiply(self.matte, np.float32(255.0), out=self._t[0])
        np.add(self._t[0], np.float32(0.5), out=self._t[0])
        np.copyto(self.small8, self._t[0], casting="unsafe")


class BackgroundBlur:
    """Blur of the background at a reduced resolution (a pyramid level), halo-free.

    For each plane: take pyramid level ``level`` (2^level smaller) and blur it with
    ``masked_blur`` (two box passes of ``radius``, weighted by the background share 1 − matte so
    the person's colours do not bleed out), rounded to uint8 at that level; the composite
    samples it up to the plane's size (``engine.ops.fused``). Where no background is within the
    blur's reach the pixel is kept as it is (it lies deep under the person, where the matte
    hides it). The blurred weight is computed once per frame for each (size, radius): U and V
    share it. With the compiled loops each plane's blur is one call.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple[int, int], list[np.ndarray]] = {}
        self._weights: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._frame_weights: set[tuple[int, int, int]] = set()
        self._scratch = fused.Scratch()

    def new_frame(self) -> None:
        self._frame_weights.clear()

    def _buffers(self, w: int, h: int) -> list[np.ndarray]:
        bufs = self._bufs.get((w, h))
        if bufs is None:
            bufs = self._bufs[(w, h)] = [np.empty((h, w), np.float32) for _ in range(3)]
            bufs.append(np.empty((h, w), np.uint8))
        return bufs

    def _weight(
        self, matte: np.ndarray, w: int, h: int, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(background share, its blur, where that blur is too small to divide by). With the
        compiled loops the blur is left unclamped and the third is unused."""
        key = (w, h, radius)
        bufs = self._weights.get(key)
        if bufs is None:
            bufs = self._weights[key] = (
                np.empty((h, w), np.float32),
                np.empty((h, w), np.float32),
                np.empty((h, w), bool),
            )
        share, den, empty = bufs
        if key not in self._frame_weights:
            resize_into(matte, share)
            np.subtract(np.float32(1.0), share, out=share)
            lib = fused.NATIVE
            if lib is not None:
                scratch = self._scratch.get(fused.box_scratch(w, h, radius))
                lib.blur_den(fused.addr(share), fused.addr(den), fused.addr(scratch), w, h, radius)
            else:
                box_mean_into(share, radius, den)
                box_mean_into(den, radius, den)
                np.less_equal(den, np.float32(1e-3), out=empty)
                np.maximum(den, np.float32(1e-3), out=den)
            self._frame_weights.add(key)
        return bufs

    def __call__(self, pyramid: Pyramid, level: int, matte: np.ndarray, radius: int) -> np.ndarray:
        """The blurred level (uint8, reused by the next frame)."""
        src = pyramid.level(level)
        h, w = src.shape
        share, den, empty = self._weight(matte, w, h, radius)
        x, num, tmp, small = self._buffers(w, h)
        lib = fused.NATIVE
        if lib is not None:
            scratch = self._scratch.get(h * w + fused.box_scratch(w, h, radius))
            lib.masked_blur(
                fused.addr(src),
                src.strides[0],
                fused.addr(share),
                fused.addr(den),
                w,
                h,
                radius,
                fused.addr(small),
                small.strides[0],
                fused.addr(scratch),
            )
            return small
        np.copyto(x, src, casting="unsafe")
        np.multiply(x, share, out=num)
        box_mean_into(num, radius, tmp)
        box_mean_into(tmp, radius, num)
        # num = blur(x·w) / blur(w). Where no background is within reach (deep inside the
        # person, where the matte hides it anyway) keep the unblurred pixel.
        np.divide(num, den, out=num)
        np.copyto(num, x, where=empty)
        np.add(num, np.float32(0.5), out=num)  # the uint8 conversion truncates: round
        np.clip(num, 0, 255, out=num)
        np.copyto(small, num, casting="unsafe")
        return small


def composite_into(
    fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, out: np.ndarray, scratch: list[np.ndarray]
) -> None:
    """out = fg·a + bg·(1 − a), a = alpha/255, in uint8 (each product rounded: error ≤ 1).

    ``scratch`` holds two uint8 planes of the same size, reused from frame to frame.
    """
    t1, t2 = scratch
    cv2.multiply(fg, alpha, dst=t1, scale=1.0 / 255.0)
    cv2.bitwise_not(alpha, dst=t2)
    cv2.multiply(bg, t2, dst=t2, scale=1.0 / 255.0)
    cv2.add(t1, t2, dst=out)


def matte_to_yuv420p(alpha: np.ndarray, out: FrameBuffer) -> None:
    """Write a grey frame showing the uint8 matte into ``out`` (in ``out``'s range)."""
    if out.full_range:
        np.copyto(out.y, alpha)
    else:
        # 16 + a·219/255 through a lookup table: exact, and no float frame.
        cv2.LUT(alpha, _LIMITED_LUT, dst=out.y)
    out.u.fill(128)
    out.v.fill(128)


_LIMITED_LUT = np.rint(16.0 + np.arange(256) * (219.0 / 255.0)).astype(np.uint8)


def rgb_to_yuv420p(
    rgb: np.ndarray, *, colorspace: str = "bt601", full_range: bool = True
) -> FrameBuffer:
    """uint8 (H, W, 3) RGB → yuv420p (images and backgrounds at the edge, not per frame)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
    mat, offset = rgb_to_yuv(colorspace, full_range)
    m = mat.astype(np.float32)
    h, w = rgb.shape[:2]
    x = rgb.astype(np.float32) * np.float32(1.0 / 255.0)
    y = x @ m[0] + np.float32(offset[0])
    cw, ch = chroma_size(w, h)
    if (2 * ch, 2 * cw) != (h, w):
        x = np.pad(x, ((0, 2 * ch - h), (0, 2 * cw - w), (0, 0)), mode="edge")
    blocks = x.reshape(ch, 2, cw, 2, 3).mean(axis=(1, 3))
    uv = blocks @ m[1:].T + offset[1:].astype(np.float32)

    def q(a: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return FrameBuffer(
        q(y), q(uv[..., 0]), q(uv[..., 1]), colorspace=colorspace, full_range=full_range
    )


def yuv420p_to_rgb(frame: FrameBuffer) -> np.ndarray:
    """yuv420p → uint8 (H, W, 3) RGB, chroma by pixel replication (edge use, not per frame)."""
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    h, w = frame.height, frame.width
    cw, ch = chroma_size(w, h)
    u = cv2.resize(frame.u, (2 * cw, 2 * ch), interpolation=cv2.INTER_NEAREST)[:h, :w]
    v = cv2.resize(frame.v, (2 * cw, 2 * ch), interpolation=cv2.INTER_NEAREST)[:h, :w]
    yuv = np.stack([frame.y, u, v], axis=-1).astype(np.float32) - offset.astype(np.float32)
    rgb = yuv @ (mat.astype(np.float32).T * np.float32(255.0))
    out: np.ndarray = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return out
