"""The GAN effect's GPU math (kernels/gan.cuh) compiled by the host compiler, against the cpu
backend's own steps (engine.ops.cpu.Preprocessor, RgbToYuv420p, engine.ops.guided's
GuidedUpsampler) on real photos. No GPU needed: these run in CI."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from engine.ops import cpu
from engine.ops.color import rgb_to_yuv, yuv_to_rgb
from engine.ops.guided import GuidedUpsampler
from engine.samples import sample_rgb

F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
U8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
INT, FLT = ctypes.c_int, ctypes.c_float


@pytest.fixture(scope="module")
def lib(net_lib: ctypes.CDLL) -> ctypes.CDLL:  # the same library: build/liblfx_host.so
    net_lib.lfx_gan_pre.argtypes = [
        F32,
        INT,
        INT,
        INT,
        F32,
        F32,
        INT,
        INT,
        INT,
        F32,
        F32,
        U8,
        F32,
        INT,
        INT,
    ]
    net_lib.lfx_gan_yuv.argtypes = [F32, F32, F32, U8, INT, INT]
    net_lib.lfx_gan_guided_up.argtypes = [U8, U8, INT, INT, U8, INT, INT, FLT, FLT, INT, F32, U8]
    return net_lib


def frame(name: str, w: int, h: int, colorspace: str = "bt709", full_range: bool = False):  # type: ignore[no-untyped-def]
    import cv2

    rgb = cv2.resize(sample_rgb(name), (w, h), interpolation=cv2.INTER_AREA)
    return cpu.rgb_to_yuv420p(rgb, colorspace=colorspace, full_range=full_range)


@pytest.mark.parametrize("full_range", [False, True])
def test_gan_pre_matches_the_cpu_preprocessor(lib: ctypes.CDLL, full_range: bool) -> None:
    f = frame("astronaut", 200, 150, full_range=full_range)
    dw, dh = 148, 100  # no exact halving between: one bilinear step, as the kernel's caller
    pyr = cpu.FramePyramids(200, 150)
    pyr.set(f)
    pre = cpu.Preprocessor(dw, dh)
    want = np.empty((3, dh, dw), np.float32)
    pre(pyr, want, f.colorspace, f.full_range)
    m, off = yuv_to_rgb(f.colorspace, f.full_range)
    small = np.empty((3, dh, dw), np.uint8)
    rgb = np.empty((3, dh, dw), np.float32)
    y, u, v = (np.ascontiguousarray(p, np.float32) for p in (f.y, f.u, f.v))
    cw, ch = f.u.shape[1], f.u.shape[0]
    m9 = np.asarray(m, np.float32).ravel().copy()
    lib.lfx_gan_pre(
        y, 200, 200, 150, u, v, cw, cw, ch, m9, np.asarray(off, np.float32), small, rgb, dw, dh
    )
    d = np.abs(small.astype(int) - pre.small.astype(int))
    assert d.max() <= 1 and d.mean() < 0.1  # cv2's 8-bit bilinear is fixed point
    same = (d == 0).all(axis=0)
    assert np.abs(rgb - want)[:, same].max() < 1e-5  # the colour matrix on equal planes


def test_gan_yuv_matches_rgb_to_yuv420p_planes(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(2)
    rgb = rng.uniform(-0.1, 1.1, (3, 37, 53)).astype(np.float32)  # a generator overshoots
    for cs, fr in (("bt601", False), ("bt709", True)):
        want = cpu.RgbToYuv420p().planes(rgb, cs, fr)
        m, off = rgb_to_yuv(cs, fr)
        got = np.empty((3, 37, 53), np.uint8)
        lib.lfx_gan_yuv(
            rgb, np.asarray(m, np.float32).ravel().copy(), np.asarray(off, np.float32), got, 53, 37
        )
        d = np.abs(got.astype(int) - want.astype(int))
        assert d.max() <= 1 and np.mean(d == 0) > 0.999


@pytest.mark.parametrize(("eps", "noise_eps"), [(4.0, 0.0), (1.0, 1.0)])
@pytest.mark.parametrize("sizes", [((160, 90), (640, 360)), ((100, 76), (301, 227))])
def test_gan_guided_upsampling_matches_the_cpu(
    lib: ctypes.CDLL, eps: float, noise_eps: float, sizes: tuple[tuple[int, int], tuple[int, int]]
) -> None:
    """cartoon's setting (eps 4) and enhance's (eps raised to the frame's noise)."""
    import cv2

    (gw, gh), (pw, ph) = sizes
    full = frame("cameraman", pw, ph).y.copy()
    low_in = cv2.resize(full, (gw, gh), interpolation=cv2.INTER_AREA)
    noise = np.random.default_rng(3).normal(0, 6, low_in.shape)
    low_out = np.clip(cv2.GaussianBlur(low_in, (5, 5), 1.5) + noise, 0, 255).astype(np.uint8)
    up = GuidedUpsampler(eps=eps, noise_eps=noise_eps)
    want = np.empty((ph, pw), np.uint8)
    up(low_in, low_out, full, want)
    got = np.empty((ph, pw), np.uint8)
    work = np.empty(7 * gw * gh, np.float32)
    lib.lfx_gan_guided_up(low_in, low_out, gw, gh, full, pw, ph, eps, noise_eps, 2, work, got)
    d = np.abs(got.astype(int) - want.astype(int))
    assert d.max() <= 2 and np.mean(d == 0) > 0.99
    if noise_eps:
        assert up.last_eps > eps  # the frame's noise did raise it (so the kernel's path ran)
