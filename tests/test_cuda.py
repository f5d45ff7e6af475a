"""The CUDA kernels and the cuda pipeline on a GPU, against the reference and the cpu backend.

Skipped, with the reason, where there is no GPU path (no cuda-python, no driver, no device, no
kernels). Outputs are poisoned before each run (two different byte patterns: a pixel no thread
writes shows as a difference) and every comparison is ‖out − ref‖ / ‖ref‖ or a bound on code
values; a race shows as a result that changes from run to run.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from engine.config import EffectConfig, MatteConfig, ModelConfig, PipelineConfig
from engine.frame import FrameBuffer, chroma_size
from engine.ops import reference
from engine.ops.color import yuv_to_rgb
from engine.pipeline.backend import gpu_status
from engine.samples import composited_clip

STATUS = gpu_status()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(STATUS.missing is not None, reason=f"no GPU path here: {STATUS.missing}"),
]

P = ctypes.c_void_p
POISONS = (0x00, 0xFF)  # float32 0xFFFFFFFF is NaN


def relerr(out: np.ndarray, ref: np.ndarray) -> float:
    out64, ref64 = out.astype(np.float64), ref.astype(np.float64)
    assert np.isfinite(out64).all(), "non-finite output (an unwritten, poisoned element?)"
    return float(np.linalg.norm(out64 - ref64) / max(np.linalg.norm(ref64), 1e-12))


class Dev:
    """Device buffers for one test, a stream, and synchronous launches."""

    def __init__(self, gpu: Any) -> None:
        from engine.gpu import driver as cd

        self.cd, self.cu, self.gpu = cd, cd.cu, gpu
        gpu.device.make_current()
        self.stream = cd.Stream()
        self.bufs: list[Any] = []

    def put(self, arr: np.ndarray) -> int:
        a = np.ascontiguousarray(arr)
        buf = self.cd.DeviceBuffer(a.nbytes)
        self.bufs.append(buf)
        self.cd.check(self.cu.cuMemcpyHtoD(buf.ptr, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")
        return buf.ptr

    def empty(self, nbytes: int) -> int:
        buf = self.cd.DeviceBuffer(nbytes)
        self.bufs.append(buf)
        return buf.ptr

    def poison(self, ptr: int, nbytes: int, byte: int) -> None:
        self.cd.check(self.cu.cuMemsetD8(ptr, byte, nbytes), "cuMemsetD8")

    def get(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        self.stream.synchronize()
        out = np.empty(shape, dtype)
        self.cd.check(self.cu.cuMemcpyDtoH(out.ctypes.data, ptr, out.nbytes), "cuMemcpyDtoH")
        return out

    def launch(self, name: str, grid: Any, block: Any, *args: Any, smem: int = 0) -> None:
        self.gpu.module.launch(name, grid, block, self.stream.handle, *args, smem=smem)
        self.stream.synchronize()

    def close(self) -> None:
        for b in self.bufs:
            b.close()
        self.stream.close()


@pytest.fixture(scope="module")
def gpu() -> Any:
    from engine.gpu.module import Gpu

    return Gpu.shared()


@pytest.fixture()
def dev(gpu: Any) -> Iterator[Dev]:
    d = Dev(gpu)
    yield d
    d.close()


def poisoned_runs(
    dev: Dev, out: int, nbytes: int, run: Any, shape: tuple[int, ...], dtype: Any
) -> np.ndarray:
    """Run twice, the output poisoned with a different byte each time; the two results must
    be identical (every element written, and no race)."""
    results = []
    for byte in POISONS:
        dev.poison(out, nbytes, byte)
        run()
        results.append(dev.get(out, shape, dtype))
    np.testing.assert_array_equal(results[0], results[1])
    return results[0]


# The launch shapes engine/gpu/launch.py gives the chain (imported late, as the GPU modules are).
def grid2(w: int, h: int, z: int = 1) -> tuple[int, int, int]:
    from engine.gpu.launch import grid2 as g

    return g(w, h, z)


def grid1(n: int) -> tuple[int, int, int]:
    from engine.gpu.launch import grid1 as g

    return g(n)


BLOCK = (32, 8, 1)
BLOCK1 = (256, 1, 1)


# -- kernels ---------------------------------------------------------------------------------


@pytest.mark.parametrize("w,h", [(322, 242), (1920, 1080), (6, 2)])
def test_halve(dev: Dev, w: int, h: int) -> None:
    """Two planes (U and V, one after the other) per launch, as the chain halves them."""
    rng = np.random.default_rng(w)
    planes = rng.integers(0, 256, (2, h, w), np.uint8)
    src = dev.put(planes)
    dw, dh = w // 2, h // 2
    n = dw * dh
    out = dev.empty(2 * n * 4)
    got = poisoned_runs(
        dev,
        out,
        2 * n * 4,
        lambda: dev.launch(
            "lfx_halve_u8", grid2(dw, dh, 2), BLOCK, P(src), w, w * h, P(out), dw, dh, n
        ),
        (2, dh, dw),
        np.float32,
    )
    for i in range(2):
        assert relerr(got[i], reference.halve(planes[i])) < 1e-7
    if dw % 2 == 0 and dh % 2 == 0:
        qw, qh = dw // 2, dh // 2
        out2 = dev.empty(2 * qw * qh * 4)
        got2 = poisoned_runs(
            dev,
            out2,
            2 * qw * qh * 4,
            lambda: dev.launch(
                "lfx_halve_f32", grid2(qw, qh, 2), BLOCK, P(out), dw, n, P(out2), qw, qh, qw * qh
            ),
            (2, qh, qw),
            np.float32,
        )
        for i in range(2):
            assert relerr(got2[i], reference.halve(reference.halve(planes[i]))) < 1e-6


@pytest.mark.parametrize("yt", ["u8", "f32"])
@pytest.mark.parametrize("ct", ["u8", "f32"])
@pytest.mark.parametrize("ot", ["f32", "f16"])
@pytest.mark.parametrize("colorspace,full", [("bt601", False), ("bt709", True)])
def test_preprocess(dev: Dev, yt: str, ct: str, ot: str, colorspace: str, full: bool) -> None:
    from engine.gpu.launch import color_matrix

    rng = np.random.default_rng(7)
    yw, yh, dw, dh = 300, 200, 256, 144  # no halvings: the kernel's own resample only
    cw, ch = chroma_size(yw, yh)
    y: np.ndarray = rng.integers(0, 256, (yh, yw)).astype(np.uint8)
    u = rng.integers(0, 256, (ch, cw)).astype(np.uint8 if ct == "u8" else np.float32)
    v = rng.integers(0, 256, (ch, cw)).astype(u.dtype)
    if yt == "f32":  # float levels are not whole numbers
        y = y.astype(np.float32) + rng.random(y.shape, np.float32)
    mat, off = yuv_to_rgb(colorspace, full)
    yuv = np.stack([reference.resize(p, dw, dh) for p in (y, u, v)])
    ref = np.clip(np.einsum("ij,jhw->ihw", mat, yuv - off[:, None, None]), 0, 1)
    py, pu, pv = dev.put(y), dev.put(u), dev.put(v)
    nbytes = 3 * dw * dh * (4 if ot == "f32" else 2)
    out, luma = dev.empty(nbytes), dev.empty(dw * dh)
    cm = color_matrix(colorspace, full)
    got = poisoned_runs(
        dev,
        out,
        nbytes,
        lambda: dev.launch(
            f"lfx_preprocess_{yt}{ct}_{ot}",
            grid2(dw, dh),
            BLOCK,
            P(py),
            yw,
            yw,
            yh,
            P(pu),
            P(pv),
            cw,
            cw,
            ch,
            cm,
            P(out),
            P(luma),
            dw,
            dh,
        ),
        (3, dh, dw),
        np.float32 if ot == "f32" else np.float16,
    )
    assert relerr(got, ref) < (1e-5 if ot == "f32" else 1e-3)
    guide = dev.get(luma, (dh, dw), np.uint8).astype(int)
    assert np.abs(guide - np.clip(np.rint(yuv[0]), 0, 255)).max() <= 1


def box_passes(dev: Dev, src: int, tmp: int, dst: int, w: int, h: int, r: int, z: int) -> None:
    from engine.gpu import launch

    bh, (bx, by, _) = launch.BOX_H_BLOCK, launch.BOX_V_BLOCK
    dev.launch(
        "lfx_box_h",
        ((w + bh - 1) // bh, h, z),
        (bh, 1, 1),
        P(src),
        P(tmp),
        w,
        h,
        r,
        smem=(bh + 2 * r) * 4,
    )
    dev.launch(
        "lfx_box_v",
        ((w + bx - 1) // bx, (h + by - 1) // by, z),
        launch.BOX_V_BLOCK,
        P(tmp),
        P(dst),
        w,
        h,
        r,
        smem=(by + 2 * r) * bx * 4,
    )


@pytest.mark.parametrize("r", [1, 4, 9, 40])
def test_box_mean_batched(dev: Dev, r: int) -> None:
    rng = np.random.default_rng(r)
    w, h, z = 241, 135, 3
    planes = rng.random((z, h, w)).astype(np.float32)
    src, tmp, out = dev.put(planes), dev.empty(planes.nbytes), dev.empty(planes.nbytes)
    got = poisoned_runs(
        dev,
        out,
        planes.nbytes,
        lambda: box_passes(dev, src, tmp, out, w, h, r, z),
        (z, h, w),
        np.float32,
    )
    for i in range(z):
        assert relerr(got[i], reference.box_mean(planes[i], r)) < 1e-6


def test_guided_filter(dev: Dev) -> None:
    from engine.samples import sample_rgb

    w, h, r, eps = 256, 144, 2, 1e-4
    rgb = sample_rgb("astronaut")
    luma = np.rint(reference.resize(rgb[..., 1], w, h)).astype(np.uint8)
    xx = np.mgrid[0:h, 0:w][1]
    mask = (1 / (1 + np.exp(-((xx - w / 2) / 6.0)))).astype(np.float32)  # a soft edge
    ref = reference.guided_filter(luma / 255.0, mask, r, eps)
    n = w * h
    pl, pm = dev.put(luma), dev.put(mask)
    stack, tmp, means = dev.empty(16 * n), dev.empty(16 * n), dev.empty(16 * n)
    ab, mab, out = dev.empty(8 * n), dev.empty(8 * n), dev.empty(4 * n)
    prev, first = dev.empty(4 * n), dev.put(np.array([1], np.int32))

    def run() -> None:
        dev.launch("lfx_guided_products", grid2(w, h), BLOCK, P(pl), w, P(pm), P(stack), w, h)
        box_passes(dev, stack, tmp, means, w, h, r, 4)
        f = 4 * n
        dev.launch(
            "lfx_guided_ab",
            grid1(n),
            BLOCK1,
            P(means),
            P(means + f),
            P(means + 2 * f),
            P(means + 3 * f),
            P(ab),
            P(ab + f),
            n,
            eps,
        )
        box_passes(dev, ab, tmp, mab, w, h, r, 2)
        # First frame (no history), a ramp of width 1 around 0.5: the matte is the filtered
        # mask clipped to [0, 1], and the history holds the filtered mask itself.
        dev.launch(
            "lfx_guided_smooth_ramp",
            grid1(n),
            BLOCK1,
            P(mab),
            P(mab + f),
            P(stack),
            P(prev),
            P(out),
            n,
            P(first),
            0.7,
            0.5,
            1.0,
        )

    got = poisoned_runs(dev, out, 4 * n, run, (h, w), np.float32)
    assert relerr(got, np.clip(ref, 0, 1)) < 1e-3
    assert relerr(dev.get(prev, (h, w), np.float32), ref) < 1e-3


@pytest.mark.parametrize("smoothing,feather", [(0.7, 0.5), (0.0, 0.0), (1.0, 0.1)])
@pytest.mark.parametrize("first", [1, 0])
def test_smooth_ramp(dev: Dev, smoothing: float, feather: float, first: int) -> None:
    rng = np.random.default_rng(3)
    n = 5000
    mask, prev = rng.random(n).astype(np.float32), rng.random(n).astype(np.float32)
    pm, pp, flag, out = (
        dev.put(mask),
        dev.put(prev),
        dev.put(np.array([first], np.int32)),
        dev.empty(4 * n),
    )

    def run() -> None:
        dev.cd.check(dev.cu.cuMemcpyHtoD(pp, prev.ctypes.data, prev.nbytes), "cuMemcpyHtoD")
        dev.launch(
            "lfx_smooth_ramp",
            grid1(n),
            BLOCK1,
            P(pm),
            P(pp),
            P(out),
            n,
            P(flag),
            smoothing,
            0.5,
            feather,
        )

    got = poisoned_runs(dev, out, 4 * n, run, (n,), np.float32)
    smoothed = reference.temporal_smooth(mask, None if first else prev, smoothing)
    ref = reference.matte_curve(smoothed, 0.5, feather)
    if feather == 0.0:
        assert np.mean(got != ref) < 1e-3  # a value on the threshold may round either way
    else:
        assert relerr(got, ref) < 1e-5
    assert relerr(dev.get(pp, (n,), np.float32), smoothed) < 1e-6


@pytest.mark.parametrize("xt", ["u8", "f32"])
@pytest.mark.parametrize("planes", [1, 3])
def test_masked_blur(dev: Dev, xt: str, planes: int) -> None:
    """inputs (x·share of each plane, and share) → two box passes over the stack, one launch
    each → the ratios (one launch); against the reference's masked blur, rounded to uint8."""
    from engine.samples import sample_rgb

    w, h, r = 240, 135, 6
    rgb = sample_rgb("astronaut")
    xs = [reference.resize(rgb[..., c], w, h) for c in range(planes)]
    xs = [np.rint(x).astype(np.uint8) if xt == "u8" else x.astype(np.float32) for x in xs]
    yy, xx = np.mgrid[0:h, 0:w]
    matte = np.clip(1.5 - np.hypot(xx - w / 2, yy - h / 2) / 40.0, 0, 1).astype(np.float32)
    n = w * h
    px = [dev.put(x) for x in xs]
    pm = dev.put(matte)
    stack, tmp = dev.empty(4 * n * (planes + 1)), dev.empty(4 * n * (planes + 1))
    small = dev.empty(n * planes)
    xargs: list[Any] = []
    for m in range(3):
        xargs += [P(px[min(m, planes - 1)]), w]

    def run() -> None:
        dev.launch(
            f"lfx_blur_inputs_{xt}",
            grid2(w, h),
            BLOCK,
            P(pm),
            w,
            w,
            h,
            *xargs,
            planes,
            P(stack),
            w,
            h,
        )
        box_passes(dev, stack, tmp, stack, w, h, r, planes + 1)
        box_passes(dev, stack, tmp, stack, w, h, r, planes + 1)
        dev.launch(
            f"lfx_blur_ratio_{xt}", grid2(w, h), BLOCK, P(stack), *xargs, planes, P(small), w, h
        )

    got = poisoned_runs(dev, small, n * planes, run, (planes, h, w), np.uint8).astype(int)
    for i in range(planes):
        level = np.clip(np.rint(reference.masked_blur(xs[i], 1.0 - matte, r)), 0, 255)
        diff = np.abs(got[i] - level)
        assert np.mean(diff > 1) < 1e-3 and diff.mean() < 0.05


@pytest.mark.parametrize("mode", ["colour", "planes", "levels"])
@pytest.mark.parametrize("w,h", [(1920, 1080), (641, 361)])
def test_finish(dev: Dev, mode: str, w: int, h: int) -> None:
    """The last kernel: both mattes (the low-resolution matte resampled), the background (a
    colour, planes, or uint8 levels upsampled) and the composite of Y, U and V."""
    from engine.gpu.launch import PX, Background

    rng = np.random.default_rng(w + len(mode))
    cw, ch = chroma_size(w, h)
    n_y, n_c = w * h, cw * ch
    mw, mh = 256, 144
    yy, xx = np.mgrid[0:mh, 0:mw]
    matte = np.clip(1.2 - np.hypot(xx - mw / 2, yy - mh / 2) / 50.0, 0, 1).astype(np.float32)
    frame = rng.integers(0, 256, n_y + 2 * n_c, np.uint8)
    pf, pm = dev.put(frame), dev.put(matte)
    sizes = ((w, h), (cw, ch), (cw, ch))
    ref_alpha = [
        np.clip(np.rint(reference.resize(matte * 255.0, pw, ph)), 0, 255) for pw, ph in sizes
    ]
    if mode == "colour":
        colour = (81, 90, 240)
        bg = Background(0, *colour)
        ref_bg = [np.full((ph, pw), c) for (pw, ph), c in zip(sizes, colour, strict=True)]
    elif mode == "planes":
        planes = rng.integers(0, 256, n_y + 2 * n_c, np.uint8)
        pb = dev.put(planes)
        bg = Background(1, 0, 0, 0, P(pb), P(pb + n_y), P(pb + n_y + n_c))
        ref_bg = [
            planes[:n_y].reshape(h, w),
            planes[n_y : n_y + n_c].reshape(ch, cw),
            planes[n_y + n_c :].reshape(ch, cw),
        ]
    else:
        lv = [rng.integers(0, 256, (s[1] // 8, s[0] // 8), np.uint8) for s in sizes]
        pl = [dev.put(x) for x in lv]
        lyh, lyw = lv[0].shape
        lch, lcw = lv[1].shape
        bg = Background(2, 0, 0, 0, P(pl[0]), P(pl[1]), P(pl[2]), lyw, lyh, lcw, lch)
        ref_bg = [
            np.clip(np.rint(reference.resize(x, pw, ph)), 0, 255)
            for x, (pw, ph) in zip(lv, sizes, strict=True)
        ]
    out, ay, auv = dev.empty(n_y + 2 * n_c), dev.empty(n_y), dev.empty(n_c)

    def run() -> None:
        dev.poison(ay, n_y, 0x5A)
        dev.poison(auv, n_c, 0xA5)
        dev.launch(
            "lfx_finish",
            grid2((w + PX - 1) // PX, h),
            BLOCK,
            P(pf),
            w,
            P(pf + n_y),
            P(pf + n_y + n_c),
            cw,
            P(pm),
            mw,
            mh,
            P(ay),
            P(auv),
            P(out),
            P(out + n_y),
            P(out + n_y + n_c),
            w,
            h,
            cw,
            ch,
            bg,
        )

    got = poisoned_runs(dev, out, n_y + 2 * n_c, run, (n_y + 2 * n_c,), np.uint8).astype(int)
    alphas = [dev.get(ay, (h, w), np.uint8), dev.get(auv, (ch, cw), np.uint8)]
    offsets = (0, n_y, n_y + n_c)
    for p, ((pw, ph), off) in enumerate(zip(sizes, offsets, strict=True)):
        a = alphas[min(p, 1)].astype(int)
        assert np.abs(a - ref_alpha[p]).max() <= 1
        f = frame[off : off + pw * ph].reshape(ph, pw)
        bgp = np.asarray(ref_bg[p]).astype(np.uint8)
        ref = reference.composite(f, bgp, ref_alpha[p].astype(np.uint8))
        d = np.abs(got[off : off + pw * ph].reshape(ph, pw) - ref.astype(int))
        assert np.mean(d > 2) < 1e-3 and d.mean() < 0.3  # alpha and background each within 1


def test_nvrtc_build_matches_the_prebuilt_kernels(dev: Dev) -> None:
    """Where no prebuilt binary fits, NVRTC compiles the same sources at start-up."""
    from engine.gpu.launch import BOX_H_BLOCK, BOX_V_BLOCK
    from engine.gpu.module import FATBIN, Module

    if not FATBIN.exists():
        pytest.skip("no prebuilt fatbin to compare with (make kernels)")
    rtc = Module(dev.gpu.device, nvrtc=True)
    assert rtc.source.startswith("NVRTC")
    rng = np.random.default_rng(1)
    planes = rng.random((3, 135, 241)).astype(np.float32)
    src, tmp = dev.put(planes), dev.empty(planes.nbytes)
    outs = []
    for module in (dev.gpu.module, rtc):
        out = dev.empty(planes.nbytes)
        bh = BOX_H_BLOCK
        module.launch(
            "lfx_box_h",
            ((241 + bh - 1) // bh, 135, 3),
            (bh, 1, 1),
            dev.stream.handle,
            P(src),
            P(tmp),
            241,
            135,
            5,
            smem=(bh + 10) * 4,
        )
        module.launch(
            "lfx_box_v",
            ((241 + 31) // 32, (135 + 7) // 8, 3),
            BOX_V_BLOCK,
            dev.stream.handle,
            P(tmp),
            P(out),
            241,
            135,
            5,
            smem=(8 + 10) * 32 * 4,
        )
        outs.append(dev.get(out, planes.shape, np.float32))
    assert relerr(outs[1], outs[0]) < 1e-6


# -- the whole pipeline ----------------------------------------------------------------------


def clip_frames(w: int, h: int, n: int = 4) -> list[FrameBuffer]:
    return composited_clip(w, h, n, motion="sway", noise=2.0).frames


def run_pipeline(config: PipelineConfig, frames: list[FrameBuffer], gpu: Any = None) -> Any:
    from engine.pipeline import Pipeline
    from engine.pipeline.cuda_pipeline import CudaPipeline

    p = CudaPipeline(config, gpu=gpu) if config.backend == "cuda" else Pipeline(config)
    outs, alphas = [], []
    for f in frames:
        o = p.process(f)
        outs.append(np.concatenate([o.y.ravel(), o.u.ravel(), o.v.ravel()]))
        alpha = p.alpha
        alphas.append(None if alpha is None else alpha.copy())
    p.close()
    return outs, alphas


EFFECTS = [
    EffectConfig(name="blur"),
    EffectConfig(name="blur", strength=1.0),
    EffectConfig(name="blur", strength=0.05),
    EffectConfig(name="colour", colour="green"),
    EffectConfig(name="replace"),
    EffectConfig(name="mask"),
    EffectConfig(name="none"),
    EffectConfig(name="gan", model="cartoon"),
    EffectConfig(name="gan", model="enhance", region="person"),
    EffectConfig(name="gan", model="cartoon", gan_size=0),  # the generator at full size
]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(
    "effect", EFFECTS, ids=lambda e: f"{e.name}-{e.strength}-{e.model}-{e.region}-{e.gan_size}"
)
@pytest.mark.parametrize("size", [(1280, 720), (641, 479)])
@pytest.mark.parametrize("runtime", ["kernels", "onnxruntime"])
def test_cuda_pipeline_matches_cpu(
    effect: EffectConfig, size: tuple[int, int], runtime: str
) -> None:
    if runtime != "kernels" and effect.name in ("gan", "none"):
        pytest.skip("gan runs on the kernels runtime only; none runs no model")
    frames = clip_frames(*size)
    off = ModelConfig(person_model="off")  # the body prior is not on the GPU path yet
    cfg = PipelineConfig(effect=effect, backend="cuda", model=off, model_runtime=runtime)
    gpu_out, gpu_alpha = run_pipeline(cfg, frames)
    cpu = PipelineConfig(effect=effect, backend="cpu", model=off)
    cpu_out, cpu_alpha = run_pipeline(cpu, frames)
    for g, c, ga, ca in zip(gpu_out, cpu_out, gpu_alpha, cpu_alpha, strict=True):
        # The cpu backend rounds each pyramid level to uint8, the GPU keeps floats: the model
        # sees slightly different inputs, so the mattes differ by a little along edges.
        if ga is not None and ca is not None:
            assert np.abs(ga.astype(int) - ca.astype(int)).mean() < 2.0
        assert relerr(g, c) < 0.03
        assert np.abs(g.astype(int) - c.astype(int)).mean() < 1.5
        assert psnr(g, c) >= 30.0  # the target is 40 dB: benchmarks/gpu.py reports it
    # The same frames again, on a fresh pipeline: bit for bit (no race, nothing left over).
    again, _ = run_pipeline(cfg, frames)
    for a, b in zip(gpu_out, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cuda_pipeline_writes_every_output_pixel() -> None:
    from engine.gpu import driver as cd
    from engine.pipeline.cuda_pipeline import CudaPipeline

    frames = clip_frames(640, 480, 2)
    results = []
    for byte in POISONS:
        p = CudaPipeline(PipelineConfig(effect=EffectConfig(name="blur"), backend="cuda"))
        p.process(frames[0])
        chain = p.chain
        assert chain is not None
        for ptr, nbytes in (
            (chain.d_out, chain.frame_bytes),
            (chain.d_alpha_uv, chain.chroma[0] * chain.chroma[1]),
            (chain.d_alpha_y, chain.width * chain.height),
            (chain.d_matte, chain.mask_w * chain.mask_h * 4),
        ):
            cd.check(cd.cu.cuMemsetD8(ptr, byte, nbytes), "cuMemsetD8")
        o = p.process(frames[1])
        results.append(np.concatenate([o.y.ravel(), o.u.ravel(), o.v.ravel()]))
        p.close()
    np.testing.assert_array_equal(results[0], results[1])


def test_cuda_pipeline_follows_settings_and_resets() -> None:
    """A new matte setting captures a new graph; reset() drops the temporal state."""
    from engine.pipeline.cuda_pipeline import CudaPipeline

    frames = clip_frames(640, 480, 3)
    cfg = PipelineConfig(effect=EffectConfig(name="colour"), backend="cuda")
    p = CudaPipeline(cfg)
    p.process(frames[0])
    assert p.alpha is not None
    soft = p.alpha.copy()
    p.reconfigure(PipelineConfig(effect=cfg.effect, matte=MatteConfig(feather=0.0), backend="cuda"))
    p.reset()
    p.process(frames[0])
    hard = p.alpha
    assert hard is not None

    def edge_share(a: np.ndarray) -> float:
        return float(np.mean((a > 0) & (a < 255)))

    assert edge_share(hard) < 0.7 * edge_share(soft)
    p.close()


def test_cuda_rejects_effects_without_a_gpu_path() -> None:
    from engine.errors import ConfigError
    from engine.pipeline.cuda_pipeline import CudaPipeline

    with pytest.raises(ConfigError, match="--model-runtime kernels"):
        CudaPipeline(
            PipelineConfig(effect=EffectConfig(name="gan"), backend="cuda"),
            model_runtime="onnxruntime",
        )


def test_kernels_runtime_runs_the_frame_as_one_graph() -> None:
    """No pre/post graphs around a host step: one graph per setting, with the model inside
    (and one without it, for the frames that reuse the last mask)."""
    from engine.pipeline.cuda_pipeline import CudaPipeline

    frames = clip_frames(640, 480, 3)
    p = CudaPipeline(PipelineConfig(effect=EffectConfig(name="blur"), backend="cuda"))
    for f in frames:
        p.process(f)
    assert p.chain is not None
    keys = list(p.chain._graphs)
    assert keys and all(k[0] == "frame" for k in keys)
    assert [name for name, _ in p.stages] == ["ingest", "frame"]
    assert p.session.inferences == 3
    p.close()


def test_sessions_batched_on_the_shared_gpu_worker_get_their_own_frames() -> None:
    """Four sessions' segmenters as one batch on the shared GPU worker (engine.gpu.batch), on
    threads: the frames each session gets with the model inside its own one-graph frame, bit
    for bit, at 1280×720 and an odd size."""
    from engine.gpu.batch import SharedGpuModels
    from engine.pipeline.cuda_pipeline import CudaPipeline
    from tests.sessions import run_sessions

    sizes = [(1280, 720), (1280, 720), (641, 479), (1280, 720)]
    clips = [clip_frames(w, h, 4) for w, h in sizes]
    cfg = PipelineConfig(effect=EffectConfig(name="blur"), backend="cuda")

    def run(models: Any) -> list[list[bytes]]:
        pipes = [CudaPipeline(cfg, models=models) for _ in sizes]
        outs = run_sessions(pipes, clips, lockstep=True, join_s=120)
        assert all(p.batched == (models is not None) for p in pipes)
        for p in pipes:
            p.close()
        return outs

    own = run(None)
    models = SharedGpuModels(wait_ms=2.0)
    assert run(models) == own
    models.close()


def test_tensorrt_pipeline_matches_onnxruntime() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from engine.pipeline.cuda_pipeline import CudaPipeline

    frames = clip_frames(1280, 720, 2)
    cfg = PipelineConfig(effect=EffectConfig(name="blur"), backend="cuda")
    p = CudaPipeline(cfg, tensorrt=True)
    outs = [p.process(f).y.copy() for f in frames]
    p.close()
    ref, _ = run_pipeline(cfg, frames)
    for o, r in zip(outs, ref, strict=True):
        assert relerr(o.ravel(), r[: o.size]) < 0.03  # FP16 engine against fp32 ONNX Runtime
