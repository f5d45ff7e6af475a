"""The cpu backend's fused passes (``engine.ops.fused``, kernels/cpu_fused.cpp) against the
float64 reference, with the compiled loops and with the OpenCV/NumPy passes standing in."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine.config import EffectConfig, PipelineConfig
from engine.frame import FrameBuffer, chroma_size
from engine.ops import cpu, fused, reference
from engine.pipeline import Pipeline
from engine.samples import composited_clip


def test_compiled_loops_are_built() -> None:
    # ``pip install`` builds them wherever a C++ compiler exists (CI has one): a silent fallback
    # would leave them untested and the cpu path slow.
    if os.environ.get(fused.ENV) == "0":
        pytest.skip(f"{fused.ENV}=0")
    assert fused.NATIVE is not None, fused.REASON


def blob(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A low-resolution 8-bit matte: a person-like blob with soft edges, 0 and 255 inside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((xx - w * 0.5) / (w * 0.22)) ** 2 + ((yy - h * 0.75) / (h * 0.6)) ** 2
    m = np.clip((1.2 - d) * 3.0, 0.0, 1.0) + rng.normal(0, 0.02, (h, w)) * (d < 1.3)
    return np.clip(np.rint(m * 255), 0, 255).astype(np.uint8)


SIZES = [
    ((256, 144), (1280, 720)),  # the landscape matte on a 720p Y plane
    ((256, 144), (640, 360)),  # … and its U/V planes
    ((256, 256), (640, 480)),  # the square matte, 2.5× across and 1.875× down
    ((160, 90), (1920, 1080)),  # a blurred pyramid level
    ((256, 144), (1281, 721)),  # odd sizes
    ((17, 9), (31, 17)),  # under 16 bytes a row
    ((256, 256), (200, 150)),  # larger than the plane: resampled whole
    ((256, 144), (256, 720)),  # only down
]


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_rows_stand_for_the_reference_upsampling(loops, src, dst) -> None:
    small = blob(*src)
    rows = fused.AcrossRows(*dst)(small, flags=True)
    assert (rows.width, rows.height) == dst
    out = np.full((dst[1], dst[0]), 7, np.uint8)
    fused.expand(rows, out)
    want = reference.resize(small, *dst)
    diff = np.abs(out.astype(np.float64) - want)
    assert diff.max() <= 1.5 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_across_flags_say_where_a_row_is_all_0_or_all_255() -> None:
    if fused.NATIVE is None:
        pytest.skip(fused.REASON)
    small = np.zeros((3, 40), np.uint8)
    small[1] = 255
    small[2, :20] = 255
    rows = fused.AcrossRows(200, 10)(small, flags=True)
    assert rows.flags is not None and rows.flags.shape == (3, 7)  # ceil(200 / 32)
    assert (rows.flags[0] == 0).all() and (rows.flags[1] == 255).all()
    assert rows.flags[2, 0] == 255 and rows.flags[2, -1] == 0 and 1 in rows.flags[2]
    for r in range(3):  # the flags describe what was written
        for c in range(7):
            chunk = rows.rows[r, 32 * c : 32 * c + 32]
            kind = 0 if chunk.max() == 0 else 255 if chunk.min() == 255 else 1
            assert rows.flags[r, c] == kind


def background_sources(kind: str, w: int, h: int, rng: np.random.Generator):
    """(Rows, the plane it stands for as the reference makes it)."""
    if kind == "level":  # a blurred pyramid level, 8× smaller
        small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8)), np.uint8)
        rows = fused.AcrossRows(w, h)(small)
        return rows, np.clip(np.rint(reference.resize(small, w, h)), 0, 255).astype(np.uint8)
    if kind == "plane":
        plane = rng.integers(0, 256, (h, w), np.uint8)
        return fused.Rows(plane, h), plane
    return fused.constant_rows(w, h, 77), np.full((h, w), 77, np.uint8)


@pytest.mark.parametrize("kind", ["level", "plane", "constant"])
@pytest.mark.parametrize(("w", "h"), [(1280, 720), (641, 361), (31, 17)])
def test_composite_matches_the_reference(loops, kind: str, w: int, h: int) -> None:
    rng = np.random.default_rng(w + h)
    fg = rng.integers(0, 256, (h, w), np.uint8)
    small = blob(max(2, w // 5), max(2, h // 5), seed=w)
    alpha = fused.AcrossRows(w, h)(small, flags=True)
    alpha_ref = np.clip(np.rint(reference.resize(small, w, h)), 0, 255).astype(np.uint8)
    bg, bg_ref = background_sources(kind, w, h, rng)
    out = np.full((h, w), 3, np.uint8)
    fused.Compositor()(fg, bg, alpha, out)
    want = reference.composite(fg, bg_ref, alpha_ref)
    diff = np.abs(out.astype(int) - want.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.3, (diff.max(), diff.mean())
    # Where the matte is whole the picture is exact: the frame inside, the background outside.
    inside, outside = alpha_ref == 255, alpha_ref == 0
    full = np.empty_like(out)
    fused.expand(alpha, full)
    assert (out[full == 255] == fg[full == 255]).all()
    assert (np.abs(out[full == 0].astype(int) - bg_ref[full == 0]) <= 1).all()
    assert w < 100 or (inside.any() and outside.any())


def test_flagged_runs_give_the_same_picture_as_blending_every_pixel() -> None:
    if fused.NATIVE is None:
        pytest.skip(fused.REASON)
    rng = np.random.default_rng(1)
    w, h = 1280, 720
    fg = rng.integers(0, 256, (h, w), np.uint8)
    alpha = fused.AcrossRows(w, h)(blob(256, 144), flags=True)
    for kind in ("level", "plane", "constant"):
        bg, _ = background_sources(kind, w, h, rng)
        a, b = np.empty_like(fg), np.empty_like(fg)
        fused.Compositor()(fg, bg, alpha, a)
        fused.Compositor()(fg, bg, fused.Rows(alpha.rows, h), b)  # no flags: every pixel
        assert np.array_equal(a, b)


def test_composite_reads_and_writes_planes_with_row_pitch(loops) -> None:
    rng = np.random.default_rng(2)
    w, h = 100, 60
    wide = rng.integers(0, 256, (h, 128), np.uint8)
    fg = wide[:, :w]  # a decoder's plane: rows 128 bytes apart
    out_wide = np.zeros((h, 160), np.uint8)
    alpha = fused.AcrossRows(w, h)(blob(20, 12), flags=True)
    bg = fused.Rows(rng.integers(0, 256, (h, 144), np.uint8)[:, :w], h)
    fused.Compositor()(fg, bg, alpha, out_wide[:, :w])
    dense = np.empty((h, w), np.uint8)
    fused.Compositor()(np.ascontiguousarray(fg), fused.Rows(bg.rows.copy(), h), alpha, dense)
    assert np.array_equal(out_wide[:, :w], dense)
    assert not out_wide[:, w:].any()  # nothing written past the width


def test_composite_refuses_sources_of_another_size() -> None:
    fg = np.zeros((10, 20), np.uint8)
    with pytest.raises(ValueError, match="composite"):
        fused.Compositor()(
            fg, fused.constant_rows(20, 10, 0), fused.constant_rows(21, 10, 0), fg.copy()
        )


def smooth_mask(rng: np.random.Generator, w: int = 256, h: int = 144) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    b = np.exp(-(((xx - w * 0.5) / (w * 0.2)) ** 2 + ((yy - h * 0.6) / (h * 0.35)) ** 2) * 2)
    return np.clip(b * 1.6 - 0.3 + rng.normal(0, 0.03, (h, w)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("guided", [True, False])
@pytest.mark.parametrize(("radius", "feather"), [(4, 0.5), (1, 0.0), (13, 1.0)])
def test_refine_run_matches_the_reference(
    loops, astronaut_rgb: np.ndarray, guided: bool, radius: int, feather: float
) -> None:
    from engine.samples import camera_frames

    frame = cpu.rgb_to_yuv420p(camera_frames(astronaut_rgb, 1280, 720, 1)[0], full_range=False)
    pyramids = cpu.FramePyramids(1280, 720)
    pyramids.set(frame)
    luma = np.empty((144, 256), np.uint8)
    pyramids.y.shrink_into(luma)
    rng = np.random.default_rng(5)
    r = cpu.MatteRefiner(256, 144)
    previous = None
    for _ in range(3):  # the temporal state carries over
        mask = smooth_mask(rng)
        r.run(
            mask,
            luma if guided else None,
            radius=radius,
            eps=1e-3,
            smoothing=0.7,
            threshold=0.5,
            feather=feather,
        )
        smoothed, matte, _, _ = reference.refine(
            mask, previous, luma if guided else None, 16, 16, 8, 8,
            smoothing=0.7, threshold=0.5, feather=feather, radius=radius, eps=1e-3,
        )  # fmt: skip
        previous = smoothed
        np.testing.assert_allclose(r.smoothed, smoothed, atol=1e-4)
        if feather > 0:
            np.testing.assert_allclose(r.matte, matte, atol=2e-4)
        else:  # a hard step: values on the threshold may fall either side
            assert np.mean(r.matte != matte) < 1e-3
        want8 = np.floor(matte * 255 + 0.5)
        assert np.abs(r.small8 - want8).max() <= 1


@pytest.mark.parametrize(("level", "radius"), [(3, 6), (2, 9), (0, 1), (1, 14)])
def test_masked_blur_matches_the_reference(loops, astronaut_rgb, level: int, radius: int) -> None:
    import cv2

    rgb = np.ascontiguousarray(cv2.resize(astronaut_rgb, (640, 480), interpolation=cv2.INTER_AREA))
    frame = cpu.rgb_to_yuv420p(rgb, full_range=False)
    matte = smooth_mask(np.random.default_rng(8))
    p = cpu.Pyramid(640, 480)
    p.set(frame.y)
    blur = cpu.BackgroundBlur()
    blur.new_frame()
    small = blur(p, level, matte, radius)
    src = frame.y.astype(np.float64)
    for _ in range(level):
        src = reference.halve(src)
    weight = 1.0 - reference.resize(matte, src.shape[1], src.shape[0])
    want = np.clip(np.rint(reference.masked_blur(src, weight, radius)), 0, 255)
    diff = np.abs(small.astype(np.float64) - want)
    # The pyramid levels are rounded to 8 bits on the way down (the reference keeps floats).
    assert diff.max() <= 2 and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_box_mean_matches_the_reference() -> None:
    if fused.NATIVE is None:
        pytest.skip(fused.REASON)
    rng = np.random.default_rng(4)
    scratch = fused.Scratch()
    for w, h, r in ((256, 144, 4), (31, 7, 3), (5, 40, 9), (1, 9, 2), (64, 64, 20)):
        plane = rng.random((h, w)).astype(np.float32)
        out = np.empty_like(plane)
        fused.box_mean_into(plane, r, out, scratch)
        np.testing.assert_allclose(out, reference.box_mean(plane, r), atol=2e-6)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    "effect",
    [
        EffectConfig(name="blur"),
        EffectConfig(name="replace"),
        EffectConfig(name="colour"),
        EffectConfig(name="mask"),
        EffectConfig(name="gan", model="cartoon", region="person"),
    ],
    ids=lambda e: e.name + (f"-{e.region}" if e.name == "gan" else ""),
)
@pytest.mark.parametrize(("w", "h"), [(1280, 720), (641, 481)])
def test_pipeline_gives_the_same_picture_with_either_loops(monkeypatch, effect, w, h) -> None:
    if fused.NATIVE is None:
        pytest.skip(fused.REASON)
    frames = composited_clip(w, h, 3).frames
    outs: dict[str, list[FrameBuffer]] = {}
    for mode in ("compiled", "opencv"):
        if mode == "opencv":
            monkeypatch.setattr(fused, "NATIVE", None)
        p = Pipeline(PipelineConfig(effect=effect))
        outs[mode] = []
        for f in frames:
            o = p.process(f)
            outs[mode].append(FrameBuffer(o.y.copy(), o.u.copy(), o.v.copy()))
        alpha = p.alpha
        assert alpha is not None and alpha.shape == (h, w)
        p.close()
    cw, ch = chroma_size(w, h)
    for a, b in zip(outs["compiled"], outs["opencv"], strict=True):
        assert b.u.shape == (ch, cw)
        for pa, pb in ((a.y, b.y), (a.u, b.u), (a.v, b.v)):
            assert psnr(pa, pb) > 40.0, psnr(pa, pb)
