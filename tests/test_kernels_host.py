"""The CUDA kernels' pixel math (kernels/pixel.cuh), compiled by the host compiler, against the
reference on random inputs and on real photos. No GPU needed: these run in CI."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.frame import FrameBuffer, chroma_size
from engine.ops import cpu, reference
from engine.ops.color import rgb_to_yuv, yuv_to_rgb
from engine.samples import composited_clip, sample_rgb

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "build" / "liblfx_host.so"
F32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
U8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
INT = ctypes.c_int
FLT = ctypes.c_float


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    sources = [ROOT / "kernels" / "host_api.cpp", ROOT / "kernels" / "pixel.cuh"]
    if not LIB.exists() or LIB.stat().st_mtime < max(s.stat().st_mtime for s in sources):
        if shutil.which("g++") is None:
            pytest.skip("no host C++ compiler (g++) to build kernels/host_api.cpp")
        subprocess.run(
            ["make", "--no-print-directory", str(LIB.relative_to(ROOT))], cwd=ROOT, check=True
        )
    lib = ctypes.CDLL(str(LIB))
    sig = {
        "lfx_halve_u8": [U8, INT, F32, INT, INT],
        "lfx_halve_f32": [F32, INT, F32, INT, INT],
        "lfx_halvings": [INT, INT, INT, INT],
        "lfx_preprocess": [F32, INT, INT, INT, F32, F32, INT, INT, INT, F32, F32, F32, INT, INT],
        "lfx_smooth_ramp": [F32, F32, F32, INT, INT, FLT, FLT, FLT],
        "lfx_upsample_matte": [F32, INT, INT, U8, INT, INT, INT],
        "lfx_composite": [U8, U8, U8, U8, INT],
        "lfx_box_mean": [F32, F32, F32, INT, INT, INT],
        "lfx_masked_ratio": [F32, F32, F32, F32, INT],
        "lfx_guided_filter": [F32, F32, F32, F32, INT, INT, INT, FLT],
        "lfx_rgb01_to_yuv": [F32, F32, F32, F32, INT],
        "lfx_blur_up": [F32, F32, F32, INT, INT, U8, U8, INT, INT],
    }
    for name, args in sig.items():
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = INT if name == "lfx_halvings" else None
    return lib


def shrink(lib: ctypes.CDLL, plane: np.ndarray, dw: int, dh: int) -> np.ndarray:
    """The exact halvings before the bilinear step, as the kernels' ingest does them."""
    h, w = plane.shape
    p = np.ascontiguousarray(plane)
    out = p.astype(np.float32)
    for _ in range(lib.lfx_halvings(w, h, dw, dh)):
        w, h = w // 2, h // 2
        nxt = np.empty((h, w), np.float32)
        if p.dtype == np.uint8:
            lib.lfx_halve_u8(p, p.shape[1], nxt, w, h)
        else:
            lib.lfx_halve_f32(p, p.shape[1], nxt, w, h)
        p = out = nxt
    return out


def host_preprocess(lib: ctypes.CDLL, frame: FrameBuffer, dw: int, dh: int) -> np.ndarray:
    y = shrink(lib, frame.y, dw, dh)
    u, v = shrink(lib, frame.u, dw, dh), shrink(lib, frame.v, dw, dh)
    mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
    out = np.empty((3, dh, dw), np.float32)
    m9, off = mat.astype(np.float32).ravel(), offset.astype(np.float32)
    lib.lfx_preprocess(y, y.shape[1], y.shape[1], y.shape[0], u, v, u.shape[1], u.shape[1],
                       u.shape[0], m9, off, out, dw, dh)  # fmt: skip
    return out


def random_frame(
    rng: np.random.Generator, w: int, h: int, colorspace: str, full: bool
) -> FrameBuffer:
    cw, ch = chroma_size(w, h)
    return FrameBuffer(
        rng.integers(0, 256, (h, w), dtype=np.uint8),
        rng.integers(0, 256, (ch, cw), dtype=np.uint8),
        rng.integers(0, 256, (ch, cw), dtype=np.uint8),
        colorspace=colorspace,
        full_range=full,
    )


def test_halvings_follow_the_reference(lib: ctypes.CDLL) -> None:
    for w, h, tw, th in [(1280, 720, 256, 144), (640, 480, 256, 256), (1920, 1080, 160, 120),
                         (641, 480, 64, 64), (512, 512, 256, 256), (8, 8, 1, 1)]:  # fmt: skip
        assert lib.lfx_halvings(w, h, tw, th) == reference.halvings(w, h, tw, th)


@pytest.mark.parametrize(("colorspace", "full"), [("bt601", True), ("bt709", False)])
def test_preprocess_on_random_frames(lib: ctypes.CDLL, colorspace: str, full: bool) -> None:
    rng = np.random.default_rng(1)
    for w, h, dw, dh in [(640, 480, 256, 256), (1280, 720, 256, 144), (333, 217, 64, 40),
                         (96, 64, 200, 120)]:  # fmt: skip
        frame = random_frame(rng, w, h, colorspace, full)
        got = host_preprocess(lib, frame, dw, dh)
        want = reference.preprocess(frame, dw, dh)
        assert float(np.abs(got - want).max()) < 2e-5


def test_preprocess_on_real_photos(lib: ctypes.CDLL) -> None:
    frames = [cpu.rgb_to_yuv420p(sample_rgb("astronaut"))]
    frames += composited_clip(1280, 720, 2, motion="sway", noise=2.0).frames
    for frame in frames:
        for dw, dh in [(256, 256), (256, 144), (640, 360)]:
            got = host_preprocess(lib, frame, dw, dh)
            assert float(np.abs(got - reference.preprocess(frame, dw, dh)).max()) < 2e-5


def test_smooth_ramp_over_a_sequence(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(2)
    for smoothing, threshold, feather in [(0.7, 0.5, 0.5), (0.0, 0.3, 0.2), (1.0, 0.6, 0.0)]:
        prev = np.zeros((144, 256), np.float32)
        ref_prev: np.ndarray | None = None
        base = rng.random((144, 256))
        for t in range(5):
            mask = np.clip(base + rng.normal(0, 0.05 if t % 2 else 0.4, base.shape), 0, 1)
            mask = mask.astype(np.float32)
            matte = np.empty_like(prev)
            lib.lfx_smooth_ramp(
                mask, prev, matte, mask.size, int(t == 0), smoothing, threshold, feather
            )
            ref_prev = reference.temporal_smooth(mask, ref_prev, smoothing)
            want = reference.matte_curve(ref_prev, threshold, feather)
            assert float(np.abs(prev - ref_prev).max()) < 1e-5
            if feather > 0:
                assert float(np.abs(matte - want).max()) < 1e-4
            else:  # a hard step: only values within float error of the threshold may differ
                near = np.abs(ref_prev - threshold) < 1e-5
                assert np.array_equal(matte[~near], want[~near])


def test_upsample_matte_to_frame_sizes(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(3)
    matte = rng.random((144, 256)).astype(np.float32)
    for w, h in [(1280, 720), (640, 360), (1920, 1080), (333, 217)]:
        out = np.full((h, w + 7), 7, np.uint8)  # poisoned, with a stride wider than the plane
        lib.lfx_upsample_matte(matte, 256, 144, out, w + 7, w, h)
        want = np.clip(np.rint(reference.resize(matte.astype(np.float64) * 255.0, w, h)), 0, 255)
        diff = np.abs(out[:, :w].astype(int) - want.astype(int))
        assert diff.max() <= 1 and diff.mean() < 1e-3  # ±1 only at float-rounding ties
        assert np.all(out[:, w:] == 7)  # nothing written past the plane


def test_composite_on_a_real_frame(lib: ctypes.CDLL) -> None:
    clip = composited_clip(640, 480, 1, motion="sway", noise=2.0)
    fg = clip.frames[0].y.copy()
    bg = np.ascontiguousarray(cpu.rgb_to_yuv420p(sample_rgb("astronaut")[:480, :512]).y)
    bg = np.ascontiguousarray(np.pad(bg, ((0, 0), (0, 128)), mode="edge"))
    alpha = np.ascontiguousarray(clip.alphas[0])  # the person's true matte: soft edges
    out = np.empty_like(fg)
    lib.lfx_composite(fg, bg, alpha, out, fg.size)
    diff = np.abs(out.astype(int) - reference.composite(fg, bg, alpha).astype(int))
    assert diff.max() <= 1 and diff.mean() < 1e-3


def test_box_mean_and_masked_blur(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(5)
    photo = cpu.rgb_to_yuv420p(sample_rgb("astronaut")).y.astype(np.float32)
    for plane, r in [(photo, 7), (rng.random((37, 53)).astype(np.float32), 3),
                     (rng.random((20, 30)).astype(np.float32), 25)]:  # fmt: skip
        h, w = plane.shape
        tmp, got = np.empty_like(plane), np.empty_like(plane)
        lib.lfx_box_mean(plane, tmp, got, w, h, r)
        want = reference.box_mean(plane, r) if r < min(h, w) else None
        if want is not None:
            assert float(np.abs(got - want).max()) < 1e-3 * max(1.0, float(np.abs(want).max()))
    # The masked blur: two box passes of x·w and of w, then the ratio.
    weight = (rng.random(photo.shape) > 0.3).astype(np.float32)
    h, w = photo.shape

    def blur(p: np.ndarray) -> np.ndarray:
        a, b, c = np.empty_like(p), np.empty_like(p), np.empty_like(p)
        lib.lfx_box_mean(np.ascontiguousarray(p), a, b, w, h, 4)
        lib.lfx_box_mean(b, a, c, w, h, 4)
        return c

    num, den = blur(photo * weight), blur(weight)
    got = np.empty_like(photo)
    lib.lfx_masked_ratio(num, den, photo, got, photo.size)
    want = reference.masked_blur(photo, weight, 4)
    assert float(np.abs(got - want).max()) < 0.05  # 8-bit values, float32 sums
    # The ratio rounded to uint8 at the level and upsampled to the plane, in one pass.
    for ow, oh in [(4 * w - 3, 4 * h + 1), (w + 7, h)]:
        up, small8 = np.empty((oh, ow), np.uint8), np.empty((h, w), np.uint8)
        lib.lfx_blur_up(num, den, photo, w, h, small8, up, ow, oh)
        small = np.clip(np.rint(want), 0, 255)
        ref = np.clip(np.rint(reference.resize(small, ow, oh)), 0, 255)
        diff = np.abs(up.astype(int) - ref)
        assert diff.max() <= 1 and diff.mean() < 0.05


def test_guided_filter_on_a_real_frame(lib: ctypes.CDLL) -> None:
    frame = composited_clip(1280, 720, 1, motion="sway", noise=2.0).frames[0]
    # The guide: the luma at the mask's size, as the refine stage takes it.
    luma = np.clip(np.rint(reference.resize(frame.y, 256, 144)), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(7)
    mask = np.clip(
        reference.resize(frame.y, 256, 144) / 255.0 + rng.normal(0, 0.1, (144, 256)), 0, 1
    )
    g32 = (luma.astype(np.float32) / 255.0).copy()
    m32 = mask.astype(np.float32)
    for r, eps in [(1, 1e-4), (4, 1e-3)]:
        out, work = np.empty_like(m32), np.empty((7, 144, 256), np.float32)
        lib.lfx_guided_filter(g32, m32, out, work, 256, 144, r, eps)
        want = reference.guided_filter(luma / 255.0, m32, r, eps)
        assert float(np.abs(out - want).max()) < 1e-4  # float32 variances of nearby values


def test_rgb_to_yuv_matches_the_colour_module(lib: ctypes.CDLL) -> None:
    rng = np.random.default_rng(6)
    rgb = rng.random((1000, 3)).astype(np.float32)
    for colorspace, full in [("bt601", True), ("bt709", False)]:
        inv, offset = rgb_to_yuv(colorspace, full)
        got = np.empty_like(rgb)
        lib.lfx_rgb01_to_yuv(
            rgb, inv.astype(np.float32).ravel(), offset.astype(np.float32), got, 1000
        )
        want = rgb.astype(np.float64) @ inv.T + offset
        assert float(np.abs(got - want).max()) < 1e-3
