"""The cpu ops against the float64 reference, on random and real frames."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InputError
from engine.frame import FrameBuffer, chroma_size
from engine.ops import cpu, fused, reference
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


def test_bilinear_matrix_rows_sum_to_one() -> None:
    for src, dst in [(1280, 256), (720, 144), (7, 3), (100, 100), (3, 10), (257, 256)]:
        w = reference.bilinear_matrix(src, dst)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
        assert (w >= 0).all()


def test_halvings_average_every_pixel() -> None:
    # 1280 → 256: two exact halvings (to 320), then bilinear; every input pixel has weight.
    assert reference.halvings(1280, 720, 256, 144) == 2
    assert reference.halvings(641, 480, 256, 256) == 0  # odd: no exact halving
    plane = np.zeros((720, 1280))
    plane[::7, ::3] = 255.0  # a sparse pattern bilinear alone would mostly skip
    small = reference.resize(plane, 256, 144)
    assert abs(small.mean() - plane.mean()) < 0.5


def preprocess_cpu(frame: FrameBuffer, mw: int, mh: int) -> np.ndarray:
    pyramids = cpu.FramePyramids(frame.width, frame.height)
    pyramids.set(frame)
    out = np.full((1, 3, mh, mw), np.nan, np.float32)  # poisoned: an unwritten value fails
    cpu.Preprocessor(mw, mh)(pyramids, out, frame.colorspace, frame.full_range)
    return out[0]


@pytest.mark.parametrize(
    ("w", "h", "mw", "mh"),
    [(1280, 720, 256, 144), (640, 480, 256, 256), (1920, 1080, 256, 144), (641, 361, 256, 144),
     (160, 120, 256, 256), (300, 100, 256, 256)],
)  # fmt: skip
def test_preprocess_matches_reference_on_random_frames(w, h, mw, mh) -> None:
    rng = np.random.default_rng(w * 7 + h)
    frame = random_frame(rng, w, h)
    out = preprocess_cpu(frame, mw, mh)
    ref = reference.preprocess(frame, mw, mh)
    assert np.isfinite(out).all()
    # uint8 rounding at each halving and the resample: ≤ ~2 levels through the matrix.
    assert np.abs(out - ref).max() <= 4.0 / 255.0


def test_preprocess_matches_reference_on_a_real_photo(astronaut_rgb: np.ndarray) -> None:
    frame = cpu.rgb_to_yuv420p(astronaut_rgb, full_range=False)
    out = preprocess_cpu(frame, 256, 144)
    ref = reference.preprocess(frame, 256, 144)
    assert np.abs(out - ref).max() <= 3.0 / 255.0
    assert np.abs(out - ref).mean() <= 0.6 / 255.0  # rounding to code values, not a shift


def test_preprocess_respects_plane_strides() -> None:
    rng = np.random.default_rng(1)
    dense = random_frame(rng, 320, 240)
    # The same pixels inside wider rows, as FFmpeg lays planes out (line_size > width).
    planes = (dense.y, dense.u, dense.v)
    wide = [np.full((p.shape[0], p.shape[1] + 64), 255, np.uint8) for p in planes]
    for big, p in zip(wide, planes, strict=True):
        big[:, : p.shape[1]] = p
    strided = FrameBuffer(*(b[:, : p.shape[1]] for b, p in zip(wide, planes, strict=True)))
    np.testing.assert_array_equal(
        preprocess_cpu(dense, 256, 256), preprocess_cpu(strided, 256, 256)
    )


SIZES = [((144, 256), (720, 1280)), ((720, 1280), (144, 256)), ((479, 641), (240, 320)),
         ((100, 60), (37, 300))]  # fmt: skip


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_resize_matches_reference(src, dst) -> None:
    rng = np.random.default_rng(src[0])
    plane = rng.integers(0, 256, src, dtype=np.uint8)
    out = np.empty(dst, np.uint8)
    cpu.resize_into(plane, out)
    # uint8 rounding after each halving and after the final resample.
    assert np.abs(out.astype(np.float64) - reference.resize(plane, dst[1], dst[0])).max() <= 2.0
    f32 = plane.astype(np.float32)
    outf = np.empty(dst, np.float32)
    cpu.resize_into(f32, outf)
    assert np.abs(outf - reference.resize(f32, dst[1], dst[0])).max() <= 1e-3


def smooth_mask(rng: np.random.Generator, w: int = 256, h: int = 144) -> np.ndarray:
    """A plausible low-resolution mask: a blurred blob with noise, in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((xx - w * 0.5) / (w * 0.2)) ** 2 + ((yy - h * 0.6) / (h * 0.35)) ** 2) * 2)
    m = np.clip(blob * 1.6 - 0.3 + rng.normal(0, 0.03, (h, w)), 0, 1)
    return m.astype(np.float32)


def test_temporal_smoothing_and_ramp_match_reference() -> None:
    rng = np.random.default_rng(3)
    r = cpu.MatteRefiner(256, 144)
    prev_ref = None
    for _ in range(4):
        m = smooth_mask(rng)
        r.smooth(m, 0.6)
        ref = reference.temporal_smooth(m, prev_ref, 0.6)
        np.testing.assert_allclose(r.smoothed, ref, atol=1e-5)
        prev_ref = ref
        for threshold, feather in ((0.5, 0.5), (0.3, 0.0), (0.7, 1.0)):
            r.ramp(threshold, feather)
            np.testing.assert_allclose(
                r.matte, reference.matte_curve(ref, threshold, feather), atol=1e-5
            )


def test_smoothing_follows_large_changes_at_once() -> None:
    prev = np.zeros((4, 4))
    new = np.full((4, 4), 0.9)  # the person arrived: no ghosting, no lag
    np.testing.assert_allclose(reference.temporal_smooth(new, prev, 1.0), new)
    small = np.full((4, 4), 0.04)  # flicker: damped to k_min of it
    got = reference.temporal_smooth(small, prev, 1.0)
    assert 0.0 < got.max() < 0.04 * 0.5


@pytest.mark.parametrize("guided", [True, False])
@pytest.mark.parametrize(("w", "h"), [(1280, 720), (641, 481)])
def test_refine_matches_reference(astronaut_rgb: np.ndarray, guided: bool, w: int, h: int) -> None:
    from engine.samples import camera_frames

    frame = cpu.rgb_to_yuv420p(camera_frames(astronaut_rgb, w, h, 1)[0], full_range=False)
    rng = np.random.default_rng(5)
    pyramids = cpu.FramePyramids(w, h)
    pyramids.set(frame)
    luma = np.empty((144, 256), np.uint8)
    pyramids.y.shrink_into(luma)
    r = cpu.MatteRefiner(256, 144)
    cw, ch = chroma_size(w, h)
    previous = None
    for _ in range(3):  # the temporal state carries over
        mask = smooth_mask(rng)
        m = mask
        if guided:
            r.guided(mask, luma, 1, 1e-4)
            m = r.filtered
        r.smooth(m, 0.7)
        r.ramp(0.5, 0.5)
        r.quantise()
        alpha_y = np.full((h, w), 7, np.uint8)
        alpha_uv = np.full((ch, cw), 7, np.uint8)
        for plane in (alpha_y, alpha_uv):  # as the pipeline brings it to each plane's size
            fused.expand(fused.AcrossRows(plane.shape[1], plane.shape[0])(r.small8), plane)
        smoothed, matte, ref_y, ref_uv = reference.refine(
            mask, previous, luma if guided else None, w, h, cw, ch,
            smoothing=0.7, threshold=0.5, feather=0.5, radius=1, eps=1e-4,
        )  # fmt: skip
        previous = smoothed
        np.testing.assert_allclose(r.smoothed, smoothed, atol=1e-4)
        np.testing.assert_allclose(r.matte, matte, atol=2e-4)
        for got, want in ((alpha_y, ref_y), (alpha_uv, ref_uv)):
            diff = np.abs(got.astype(int) - want.astype(int))
            assert diff.max() <= 2 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_guided_filter_snaps_the_mask_to_the_picture() -> None:
    # A sharp step in the picture between x=31 and x=32, and a soft mask edge centred at x=34
    # that is flat across the picture's step: the guided filter puts a step where the picture has
    # one (the mask's edge now follows the picture), and stays flat elsewhere.
    x = np.arange(64)
    guide = np.tile((x >= 32).astype(np.float64) * 0.6 + 0.2, (32, 1))
    mask = np.tile(np.clip((x - 34) / 4 + 0.5, 0, 1), (32, 1))
    out = reference.guided_filter(guide, mask, 1, 1e-4)
    row = out[16]
    assert mask[16, 32] - mask[16, 31] == 0.0
    assert row[32] - row[31] > 0.1
    assert np.abs(row[:28]).max() < 1e-6 and np.abs(row[40:] - 1).max() < 1e-6
    r = cpu.MatteRefiner(64, 32)
    r.guided(mask.astype(np.float32), np.rint(guide * 255).astype(np.uint8), 1, 1e-4)
    np.testing.assert_allclose(r.filtered, out, atol=1e-2)


@pytest.mark.parametrize(("level", "radius"), [(3, 4), (1, 2), (0, 1)])
def test_background_blur_matches_reference(astronaut_rgb: np.ndarray, level, radius) -> None:
    frame = cpu.rgb_to_yuv420p(cv2_resize(astronaut_rgb, 640, 480), full_range=False)
    matte = smooth_mask(np.random.default_rng(8))
    p = cpu.Pyramid(640, 480)
    p.set(frame.y)
    out = np.full((480, 640), 3, np.uint8)
    blur = cpu.BackgroundBlur()
    blur.new_frame()
    cpu.resize_into(blur(p, level, matte, radius), out)
    src = frame.y.astype(np.float64)
    for _ in range(level):
        src = reference.halve(src)
    weight = 1.0 - reference.resize(matte, src.shape[1], src.shape[0])
    small = np.clip(np.rint(reference.masked_blur(src, weight, radius)), 0, 255)
    want = reference.resize(small, 640, 480)
    diff = np.abs(out.astype(np.float64) - want)
    assert diff.max() <= 4 and diff.mean() < 0.6


def cv2_resize(rgb: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA))


def test_masked_blur_keeps_the_person_out_of_the_background() -> None:
    # A bright person on a dark background: a plain blur bleeds light into the background
    # around the person; the masked blur does not.
    x = np.zeros((60, 100))
    x[:, 40:60] = 250.0
    weight = np.ones_like(x)
    weight[:, 40:60] = 0.0
    masked = reference.masked_blur(x, weight, 4)
    plain = reference.box_blur(x, 4)
    assert plain[:, 38].mean() > 50 and masked[:, 38].max() < 1e-6


@pytest.mark.parametrize(("w", "h"), [(1280, 720), (31, 17)])
def test_composite_matches_reference(w, h) -> None:
    rng = np.random.default_rng(w)
    fg, bg, alpha = (rng.integers(0, 256, (h, w), dtype=np.uint8) for _ in range(3))
    alpha[0, :3] = (0, 255, 128)
    out = np.empty((h, w), np.uint8)
    cpu.composite_into(fg, bg, alpha, out, [np.empty_like(out), np.empty_like(out)])
    want = reference.composite(fg, bg, alpha)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1
    assert out[0, 0] == bg[0, 0] and out[0, 1] == fg[0, 1]  # exact at the ends


def test_cover_fit_matches_reference(astronaut_rgb: np.ndarray) -> None:
    for w, h in ((1280, 720), (300, 400), (2000, 300)):
        x, y, cw, ch = reference.cover_crop(512, 512, w, h)
        out = np.empty((h, w, 3), np.uint8)
        cpu.resize_into(np.ascontiguousarray(astronaut_rgb[y : y + ch, x : x + cw]), out)
        want = reference.cover_fit(astronaut_rgb, w, h)
        assert np.abs(out.astype(np.float64) - want).max() <= 1.0


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
