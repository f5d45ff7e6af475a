"""The cpu ops against the float64 reference, on random and real frames."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InputError
from engine.frame import FrameBuffer, chroma_size
from engine.ops import cpu, reference
from engine.ops.color import rgb_to_yuv, yuv_to_rgb


def random_frame(rng: np.random.Generator, w: int, h: int, **kw) -> FrameBuffer:
    cw, ch = chroma_size(w, h)
    return FrameBuffer(
        rng.integers(16, 236, (h, w), dtype=np.uint8),
        rng.integers(16, 241, (ch, cw), dtype=np.uint8),
        rng.integers(16, 241, (ch, cw), dtype=np.uint8),
        **kw,
    )


@pytest.mark.parametrize(
    ("colorspace", "full_range", "white", "black"),
    [
        ("bt601", False, (235, 128, 128), (16, 128, 128)),
        ("bt709", True, (255, 128, 128), (0, 128, 128)),
    ],
)
def test_colour_matrices_map_white_and_black(colorspace, full_range, white, black) -> None:
    m, off = yuv_to_rgb(colorspace, full_range)
    np.testing.assert_allclose(m @ (np.array(white) - off), [1, 1, 1], atol=1e-12)
    np.testing.assert_allclose(m @ (np.array(black) - off), [0, 0, 0], atol=1e-12)
    inv, off2 = rgb_to_yuv(colorspace, full_range)
    np.testing.assert_allclose(
        inv @ np.array([1.0, 0.0, 0.0]) + off2, inv @ [1, 0, 0] + off, atol=0
    )
    # BT.601 limited: pure red is (81, 90, 240) in 8-bit code values (ITU-R BT.601 tables).
    if colorspace == "bt601":
        inv6, off6 = rgb_to_yuv("bt601", False)
        np.testing.assert_allclose(np.rint(inv6 @ [1, 0, 0] + off6), [81, 90, 240])


def test_resample_matrix_rows_sum_to_one() -> None:
    for src, dst in [(1280, 256), (720, 144), (7, 3), (100, 100), (3, 10), (257, 256)]:
        w = reference.resample_matrix(src, dst)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        assert (w >= 0).all()


@pytest.mark.parametrize(
    ("w", "h", "mw", "mh"),
    [(1280, 720, 256, 144), (640, 480, 256, 256), (1920, 1080, 256, 144), (641, 361, 256, 144),
     (160, 120, 256, 256), (300, 100, 256, 256)],
)  # fmt: skip
def test_preprocess_matches_reference_on_random_frames(w, h, mw, mh) -> None:
    rng = np.random.default_rng(w * 7 + h)
    frame = random_frame(rng, w, h)
    out = np.full((1, 3, mh, mw), np.nan, np.float32)  # poisoned: an unwritten value fails
    cpu.Preprocessor(mw, mh)(frame, out)
    ref = reference.preprocess(frame, mw, mh)
    assert np.isfinite(out).all()
    # uint8 resampling in OpenCV rounds to a code value: ≤ ~1.5 levels through the matrix.
    assert np.abs(out[0] - ref).max() <= 3.0 / 255.0


def test_preprocess_matches_reference_on_a_real_photo(astronaut_rgb: np.ndarray) -> None:
    frame = cpu.rgb_to_yuv420p(astronaut_rgb, full_range=False)
    out = np.empty((3, 144, 256), np.float32)
    cpu.Preprocessor(256, 144)(frame, out)
    ref = reference.preprocess(frame, 256, 144)
    assert np.abs(out - ref).max() <= 2.0 / 255.0
    assert np.abs(out - ref).mean() <= 0.6 / 255.0  # rounding to code values, not a shift


def test_preprocess_respects_plane_strides() -> None:
    rng = np.random.default_rng(1)
    dense = random_frame(rng, 320, 240)
    # The same pixels inside wider rows, as FFmpeg lays planes out (line_size > width).
    wide = [np.zeros((p.shape[0], p.shape[1] + 64), np.uint8) for p in (dense.y, dense.u, dense.v)]
    for big, p in zip(wide, (dense.y, dense.u, dense.v), strict=True):
        big[:, : p.shape[1]] = p
        big[:, p.shape[1] :] = 255
    strided = FrameBuffer(
        *(b[:, : p.shape[1]] for b, p in zip(wide, (dense.y, dense.u, dense.v), strict=True))
    )
    a = np.empty((3, 256, 256), np.float32)
    b = np.empty((3, 256, 256), np.float32)
    pre = cpu.Preprocessor(256, 256)
    pre(dense, a)
    pre(strided, b)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("w", "h"), [(1280, 720), (641, 479), (100, 60)])
def test_mask_upsample_matches_reference(w, h) -> None:
    rng = np.random.default_rng(w)
    small = rng.random((144, 256), dtype=np.float32)
    small[:40] = 0.0
    small[100:] = 1.0
    out = np.full((h, w), 77, np.uint8)
    cpu.MaskUpsampler()(small.copy(), out)
    ref = reference.upsample_mask(small, w, h) * 255.0
    assert np.abs(out.astype(np.float64) - ref).max() <= 2.0


def test_mask_upsample_leaves_its_input_alone() -> None:
    small = np.linspace(0, 1, 144 * 256, dtype=np.float32).reshape(144, 256)
    before = small.copy()
    cpu.MaskUpsampler()(small, np.empty((720, 1280), np.uint8))
    np.testing.assert_array_equal(small, before)


@pytest.mark.parametrize("full_range", [True, False])
@pytest.mark.parametrize(("w", "h"), [(64, 48), (63, 47)])
def test_rgb_yuv_conversions_match_reference(astronaut_rgb, full_range, w, h) -> None:
    rgb = np.ascontiguousarray(astronaut_rgb[100 : 100 + h, 200 : 200 + w])
    a = cpu.rgb_to_yuv420p(rgb, full_range=full_range)
    b = reference.rgb_to_yuv420p(rgb, full_range=full_range)
    for pa, pb in zip((a.y, a.u, a.v), (b.y, b.u, b.v), strict=True):
        assert np.abs(pa.astype(int) - pb.astype(int)).max() <= 1
    back = cpu.yuv420p_to_rgb(a)
    ref_back = reference.yuv420p_to_rgb(a)
    assert np.abs(back.astype(int) - ref_back.astype(int)).max() <= 1
    # Round trip: luma exact to quantisation; chroma is 4:2:0, so compare a smooth region's mean.
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 12


@pytest.mark.parametrize("full_range", [True, False])
def test_matte_frame_matches_reference(full_range: bool) -> None:
    alpha = np.arange(256, dtype=np.uint8).repeat(3).reshape(48, 16)
    out = FrameBuffer.allocate(16, 48, full_range=full_range)
    cpu.matte_to_yuv420p(alpha, out)
    ref = reference.matte_to_yuv420p(alpha, colorspace="bt601", full_range=full_range)
    np.testing.assert_array_equal(out.y, ref.y)
    assert (out.u == 128).all() and (out.v == 128).all()
    grey = reference.yuv420p_to_rgb(out)[..., 0].astype(int)
    # Full range shows the matte exactly; limited range has 220 levels for 256 values.
    assert np.abs(grey - alpha).max() <= (0 if full_range else 1)


def test_framebuffer_rejects_zero_and_mismatched_sizes() -> None:
    with pytest.raises(InputError, match="zero-sized"):
        FrameBuffer.allocate(0, 10)
    with pytest.raises(InputError, match="U plane"):
        FrameBuffer(
            np.zeros((4, 4), np.uint8), np.zeros((1, 1), np.uint8), np.zeros((2, 2), np.uint8)
        )
