"""The frame kernels, re-implemented with NumPy for the stand-in driver (tests/gpu_standin.py),
so that the cuda pipeline runs end to end without a GPU, every effect: FrameChain's ops, the
segmenter's and the generator's DeviceNet, engine/gpu/gan.py, graph capture and replay, the
pinned copies.

These are not the CUDA kernels (their math is tested on the host build in
tests/test_gan_kernels_host.py, and on a GPU in tests/test_cuda.py): each is the kernel's
documented job, written plainly, reading its arguments from the launch's parameter array by
the kernel's own signature. A wrong pointer, size, stride, plane count or order in the Python
that builds the graph shows as a wrong picture.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

P, N, F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float  # pointer, int, float


class ColorMatrix(ctypes.Structure):
    _fields_ = [("m", ctypes.c_float * 9), ("off", ctypes.c_float * 3)]


class Background(ctypes.Structure):
    _fields_ = [
        ("mode", ctypes.c_int),
        ("cy", ctypes.c_int),
        ("cu", ctypes.c_int),
        ("cv", ctypes.c_int),
        ("y", ctypes.c_void_p),
        ("u", ctypes.c_void_p),
        ("v", ctypes.c_void_p),
        ("yw", ctypes.c_int),
        ("yh", ctypes.c_int),
        ("cw", ctypes.c_int),
        ("ch", ctypes.c_int),
    ]


PRE = [P, N, N, N, P, P, N, N, N, ColorMatrix, P, P, N, N]  # lfx_gan_pre_*, lfx_preprocess_*


SIGNATURES: dict[str, list[Any]] = {
    "lfx_halve_u8": [P, N, N, P, N, N, N],
    "lfx_halve_f32": [P, N, N, P, N, N, N],
    **{f"lfx_gan_pre_{a}{b}": PRE for a in ("u8", "f32") for b in ("u8", "f32")},
    "lfx_gan_yuv": [P, ColorMatrix, P, N, N],
    "lfx_gan_stack": [P, P, P, N, N],
    "lfx_box_h": [P, P, N, N, N],
    "lfx_box_v": [P, P, N, N, N],
    "lfx_gan_noise": [P, P, N, N],
    "lfx_gan_ab": [P, P, P, N, N, F, F],
    "lfx_gan_up": [P, N, N, P, N, P, N, N, N],
    "lfx_resample_u8_u8": [P, N, N, N, N, P, N, N, N],
    "lfx_resample_u8_f32": [P, N, N, N, N, P, N, N, N],
    **{f"lfx_preprocess_{a}{b}_f32": PRE for a in ("u8", "f32") for b in ("u8", "f32")},
    "lfx_guided_products": [P, N, P, P, N, N],
    "lfx_guided_ab": [P, P, P, P, P, P, N, F],
    "lfx_guided_smooth_ramp": [P, P, P, P, P, N, P, F, F, F],
    "lfx_smooth_ramp": [P, P, P, N, P, F, F, F],
    "lfx_blur_inputs_u8": [P, N, N, N, P, N, P, N, P, N, N, P, N, N],
    "lfx_blur_inputs_f32": [P, N, N, N, P, N, P, N, P, N, N, P, N, N],
    "lfx_blur_ratio_u8": [P, P, N, P, N, P, N, N, P, N, N],
    "lfx_blur_ratio_f32": [P, P, N, P, N, P, N, N, P, N, N],
    "lfx_gate": [P, P, N, P, F, F, P, P],
    "lfx_finish": [P, N, P, P, N, P, N, N, P, P, P, P, P, N, N, N, N, Background],
}


def read_args(name: str, params: int) -> list[Any]:
    types = SIGNATURES[name]
    addrs = (ctypes.c_void_p * len(types)).from_address(params)
    out: list[Any] = []
    for t, a in zip(types, addrs, strict=True):
        v = t.from_buffer_copy(ctypes.string_at(a, ctypes.sizeof(t)))
        out.append(v if t in (ColorMatrix, Background) else v.value)
    return out


def view(ptr: int, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype).reshape(shape)


def taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps with half-pixel centres, clamped (kernels/pixel.cuh's bilinear_tap)."""
    x = np.clip((np.arange(dst, dtype=np.float32) + 0.5) * np.float32(src / dst) - 0.5, 0, src - 1)
    j0 = np.floor(x).astype(int)
    return j0, np.minimum(j0 + 1, src - 1), (x - j0).astype(np.float32)


def bilinear(p: np.ndarray, dw: int, dh: int) -> np.ndarray:
    sh, sw = p.shape
    x0, x1, fx = taps(sw, dw)
    y0, y1, fy = taps(sh, dh)
    p = p.astype(np.float32)
    top = p[y0][:, x0] * (1 - fx) + p[y0][:, x1] * fx
    bot = p[y1][:, x0] * (1 - fx) + p[y1][:, x1] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


def u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def run(name: str, grid: tuple[int, int, int], a: list[Any]) -> None:
    z = grid[2]
    if name.startswith("lfx_halve_"):
        src, stride, src_plane, dst, dw, dh, dst_plane = a
        t = np.uint8 if name.endswith("u8") else np.float32
        for k in range(z):
            s = view(src + k * src_plane * np.dtype(t).itemsize, t, (2 * dh, stride))
            s = s[:, : 2 * dw].astype(np.float32)
            d = view(dst + k * dst_plane * 4, np.float32, (dh, dw))
            d[...] = (s[0::2, 0::2] + s[0::2, 1::2] + s[1::2, 0::2] + s[1::2, 1::2]) * 0.25
    elif name.startswith("lfx_gan_pre_"):
        y, ys, yw, yh, u, v, cs, cw, ch, c, small, rgb, dw, dh = a
        ty = np.uint8 if name[len("lfx_gan_pre_") :].startswith("u8") else np.float32
        tc = np.uint8 if name.endswith("u8") else np.float32
        planes = [
            view(y, ty, (yh, ys))[:, :yw],
            view(u, tc, (ch, cs))[:, :cw],
            view(v, tc, (ch, cs))[:, :cw],
        ]
        sm = view(small, np.uint8, (3, dh, dw))
        for k, p in enumerate(planes):
            sm[k] = u8(bilinear(p, dw, dh))
        m, off = np.array(c.m, np.float32).reshape(3, 3), np.array(c.off, np.float32)
        yuv = sm.reshape(3, -1).astype(np.float32) - off[:, None]
        view(rgb, np.float32, (3, dh * dw))[...] = np.clip(m @ yuv, 0, 1)
    elif name == "lfx_gan_yuv":
        rgb, c, out, w, h = a
        m, off = np.array(c.m, np.float32).reshape(3, 3), np.array(c.off, np.float32)
        v = m @ view(rgb, np.float32, (3, w * h)) + (off + 0.5)[:, None]
        view(out, np.uint8, (3, w * h))[...] = np.clip(v, 0, 255).astype(np.uint8)
    elif name == "lfx_gan_stack":
        small, styled, stack, w, h = a
        i = view(small, np.uint8, (z, h, w)).astype(np.float32)
        q = view(styled, np.uint8, (z, h, w)).astype(np.float32)
        view(stack, np.float32, (z, 4, h, w))[...] = np.stack([i, q, i * q, i * i], axis=1)
    elif name in ("lfx_box_h", "lfx_box_v"):
        src, dst, w, h, r = a
        s = view(src, np.float32, (z, h, w)).copy()
        axis = 2 if name == "lfx_box_h" else 1
        n = s.shape[axis]
        idx = np.abs(np.arange(-r, n + r))
        idx = np.where(idx >= n, 2 * (n - 1) - idx, idx)  # reflect-101
        padded = np.take(s, idx, axis=axis)
        out = sum(np.take(padded, np.arange(k, k + n), axis=axis) for k in range(2 * r + 1))
        view(dst, np.float32, (z, h, w))[...] = out / np.float32(2 * r + 1)
    elif name == "lfx_gan_noise":
        small, sums, w, h = a
        planes = view(small, np.uint8, (grid[0], h, w)).astype(np.float32)
        k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
        for j, p in enumerate(planes):
            r = sum(
                k[dy, dx] * p[dy : h - 2 + dy, dx : w - 2 + dx]
                for dy in range(3)
                for dx in range(3)
            )
            view(sums + 4 * j, np.float32, (1,))[0] = np.abs(r).sum()
    elif name == "lfx_gan_ab":
        means, sums, ab, w, h, eps, noise_eps = a
        m = view(means, np.float32, (z, 4, h, w))
        s = view(sums, np.float32, (z,))
        out = view(ab, np.float32, (z, 2, h, w))
        for k in range(z):
            e = eps
            if noise_eps > 0:
                sigma = np.sqrt(np.pi / 2) * s[k] / ((w - 2) * (h - 2)) / 6
                e = max(eps, noise_eps * sigma**2)
            mi, mq, miq, mii = m[k]
            aa = (miq - mi * mq) / (mii - mi * mi + np.float32(e))
            out[k, 0], out[k, 1] = aa, mq - aa * mi
    elif name == "lfx_gan_up":
        ab, gw, gh, full, full_plane, out, out_plane, pw, ph = a
        lo = view(ab, np.float32, (z, 2, gh, gw))
        for k in range(z):
            f = view(full + k * full_plane, np.uint8, (ph, pw)).astype(np.float32)
            o = view(out + k * out_plane, np.uint8, (ph, pw))
            o[...] = u8(bilinear(lo[k, 0], pw, ph) * f + bilinear(lo[k, 1], pw, ph))
    elif name.startswith("lfx_resample_u8_"):
        src, ss, sw, sh, src_plane, dst, dw, dh, dst_plane = a
        t = np.uint8 if name.endswith("u8") else np.float32
        for k in range(z):
            s = view(src + k * src_plane * np.dtype(t).itemsize, t, (sh, ss))[:, :sw]
            view(dst + k * dst_plane, np.uint8, (dh, dw))[...] = u8(bilinear(s, dw, dh))
    else:
        run_refine_and_composite(name, grid, a)


def smooth_ramp(
    m: np.ndarray, prev: np.ndarray, first: int, smoothing: float, threshold: float, feather: float
) -> np.ndarray:
    """Temporal smoothing against ``prev`` (updated) and the threshold/feather ramp."""
    s = m
    if not first and smoothing > 0:
        k_min = 1 - 0.85 * smoothing
        k = np.minimum(1, k_min + (1 - k_min) * np.abs(m - prev) * 4)
        s = prev + k * (m - prev)
    prev[...] = s
    if feather <= 0:
        return (s >= threshold).astype(np.float32)
    return np.clip((s - threshold) / feather + 0.5, 0, 1).astype(np.float32)


def run_refine_and_composite(name: str, grid: tuple[int, int, int], a: list[Any]) -> None:
    if name.startswith("lfx_preprocess_"):
        y, ys, yw, yh, u, v, cs, cw, ch, c, out, luma, dw, dh = a
        kinds = name[len("lfx_preprocess_") : -len("_f32")]
        ty = np.uint8 if kinds.startswith("u8") else np.float32
        tc = np.uint8 if kinds.endswith("u8") else np.float32
        Y = bilinear(view(y, ty, (yh, ys))[:, :yw], dw, dh)
        U = bilinear(view(u, tc, (ch, cs))[:, :cw], dw, dh)
        V = bilinear(view(v, tc, (ch, cs))[:, :cw], dw, dh)
        m, off = np.array(c.m, np.float32).reshape(3, 3), np.array(c.off, np.float32)
        yuv = np.stack([Y, U, V]).reshape(3, -1) - off[:, None]
        view(out, np.float32, (3, dh * dw))[...] = np.clip(m @ yuv, 0, 1)
        if luma:
            view(luma, np.uint8, (dh, dw))[...] = u8(Y)
    elif name == "lfx_guided_products":
        luma, ls, mask, stack, w, h = a
        g = view(luma, np.uint8, (h, ls))[:, :w].astype(np.float32) / 255
        p = view(mask, np.float32, (h, w))
        view(stack, np.float32, (4, h, w))[...] = np.stack([g, p, g * g, g * p])
    elif name == "lfx_guided_ab":
        mi, mp, mii, mip, pa, pb, n, eps = a
        mi, mp, mii, mip = (view(q, np.float32, (n,)) for q in (mi, mp, mii, mip))
        aa = (mip - mi * mp) / (mii - mi * mi + np.float32(eps))
        view(pa, np.float32, (n,))[...] = aa
        view(pb, np.float32, (n,))[...] = mp - aa * mi
    elif name in ("lfx_guided_smooth_ramp", "lfx_smooth_ramp"):
        if name == "lfx_guided_smooth_ramp":
            ma, mb, gi, prev, matte, n, first, sm, th, fe = a
            m = view(ma, np.float32, (n,)) * view(gi, np.float32, (n,)) + view(mb, np.float32, (n,))
        else:
            mask, prev, matte, n, first, sm, th, fe = a
            m = view(mask, np.float32, (n,)).copy()
        f = int(view(first, np.int32, (1,))[0])
        out = smooth_ramp(m, view(prev, np.float32, (n,)), f, sm, th, fe)
        view(matte, np.float32, (n,))[...] = out
    elif name.startswith("lfx_blur_inputs_"):
        matte, ms, mw, mh, x0, xs0, x1, xs1, x2, xs2, n, stack, w, h = a
        t = np.uint8 if name.endswith("u8") else np.float32
        share = 1 - bilinear(view(matte, np.float32, (mh, ms))[:, :mw], w, h)
        st = view(stack, np.float32, (n + 1, h, w))
        for k, (x, xs) in enumerate(((x0, xs0), (x1, xs1), (x2, xs2))[:n]):
            st[k] = view(x, t, (h, xs))[:, :w].astype(np.float32) * share
        st[n] = share
    elif name.startswith("lfx_blur_ratio_"):
        stack, x0, xs0, x1, xs1, x2, xs2, n, small, w, h = a
        t = np.uint8 if name.endswith("u8") else np.float32
        st = view(stack, np.float32, (n + 1, h, w))
        den = st[n]
        sm = view(small, np.uint8, (n, h, w))
        for k, (x, xs) in enumerate(((x0, xs0), (x1, xs1), (x2, xs2))[:n]):
            xv = view(x, t, (h, xs))[:, :w].astype(np.float32)
            with np.errstate(divide="ignore", invalid="ignore"):
                sm[k] = u8(np.where(den > 1e-3, st[k] / den, xv))
    elif name == "lfx_finish":
        finish(a)
    elif name == "lfx_gate":
        luma, last, n, flags, static_delta, scene_delta, gate, first = a
        cur, ref = view(luma, np.uint8, (n,)), view(last, np.uint8, (n,))
        delta = float(np.abs(cur.astype(np.float32) - ref.astype(np.float32)).sum() / n)
        has_mask, reuse, skip_static, _ = view(flags, np.int32, (4,))
        scene = bool(has_mask) and delta > scene_delta
        run = not has_mask or scene or not (reuse or (skip_static and delta < static_delta))
        g = view(gate, np.int32, (3,))
        g[0], g[1] = run, scene
        g[2:3].view(np.float32)[0] = delta
        if scene:
            view(first, np.int32, (1,))[0] = 1
        if run:
            ref[...] = cur
    else:  # pragma: no cover - SIGNATURES and these lists go together
        raise NotImplementedError(name)


def finish(a: list[Any]) -> None:
    fy, fys, fu, fv, fcs, matte, mw, mh, ay, auv, oy, ou, ov, w, h, cw, ch, bg = a
    m = view(matte, np.float32, (mh, mw))
    for p, (f, fs, alpha, out, pw, ph) in enumerate(
        ((fy, fys, ay, oy, w, h), (fu, fcs, auv, ou, cw, ch), (fv, fcs, auv, ov, cw, ch))
    ):
        al = u8(bilinear(m, pw, ph) * 255)
        view(alpha, np.uint8, (ph, pw))[...] = al
        if bg.mode == 0:
            b = np.full((ph, pw), (bg.cy, bg.cu, bg.cv)[p], np.float32)
        elif bg.mode == 1:
            b = view((bg.y, bg.u, bg.v)[p], np.uint8, (ph, pw)).astype(np.float32)
        else:
            lw, lh = (bg.yw, bg.yh) if p == 0 else (bg.cw, bg.ch)
            b = u8(bilinear(view((bg.y, bg.u, bg.v)[p], np.uint8, (lh, lw)), pw, ph)).astype(
                np.float32
            )
        fg = view(f, np.uint8, (ph, fs))[:, :pw].astype(np.float32)
        k = al.astype(np.float32) / 255
        view(out, np.uint8, (ph, pw))[...] = u8(k * fg + (1 - k) * b)
