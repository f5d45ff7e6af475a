"""The GPU path's Python on a stand-in driver (tests/gpu_standin.py: host memory; the net
kernels' host build instantiated as the GPU's; the frame kernels re-implemented with NumPy in
tests/gpu_standin_frame.py), in a child process. No GPU: this checks in CI what is Python in the
GPU path (structs, device addresses, parameter arrays, buffer sizes and strides, the order of
the frame's ops, graph capture and replay, the pinned copies) for every effect against the cpu
pipeline; the CUDA kernels themselves run only on a GPU (tests/test_gpu_net.py,
tests/test_cuda.py), their math on the host build (test_net_host.py, test_gan_kernels_host.py,
test_kernels_host.py)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_gpu_executor_launches_replayed_by_the_host_build(net_lib) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tests.gpu_standin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "general (1, 3, 256, 256): graph of 66 launches, mask equal" in r.stdout
    assert "landscape (2, 3, 144, 256): graph of 66 launches, mask equal" in r.stdout
    assert r.stdout.count("outputs equal") == 5
    frames = [ln for ln in r.stdout.splitlines() if "worst plane PSNR" in ln]
    assert len(frames) == 12, r.stdout  # every effect; both model runtimes; a video background
    assert r.stdout.count("gate at ") == 3  # static frames and scene cuts as the cpu decides
    assert "gan reconfigured cartoon → mine.onnx" in r.stdout  # not a stale generator's graph
    # Sessions' segmenters batched on the shared GPU worker: the frames of their own graphs.
    # Three sessions meet within the worker's 2 ms wait most of the time, but a busy machine may
    # split them: any batch of two or more proves the batched graph's frames.
    batched = re.search(
        r"batched on the shared GPU worker: largest batch (\d+), frames equal: (\w+)", r.stdout
    )
    assert batched, r.stdout
    assert int(batched[1]) >= 2 and batched[2] == "True", batched[0]


def test_gpu_benchmark_runs_through_on_the_standin(net_lib, tmp_path) -> None:
    """benchmarks/gpu.py's every section (per-kernel graphs, the copy bandwidth, a model whole
    and per layer against ONNX Runtime, the whole frame's graph for a segmenter effect and the
    GAN), small, on the stand-in: a lent GPU's minutes are not lost to the benchmark's Python."""
    import json

    out = tmp_path / "bench.json"
    args = ["--resolutions", "480p", "--effects", "blur", "-n", "1", "--frames", "2",
            "--models", "general", "--batches", "1", "--layer-tables", "1",
            "--frame", "blur,gan", "--frame-size", "160x96", "--frame-warmup", "1",
            "--json-out", str(out)]  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "tests.gpu_standin", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "failed" not in r.stdout, r.stdout
    report = json.loads(out.read_text())
    assert "error" not in json.dumps(report), r.stdout
    chain = report["results"][0]
    assert chain["chain_kernels"] > 10 and all(op["us"] > 0 for op in chain["ops"])
    (case,) = report["models"]["cases"]
    (livefx,) = [run for run in case["runs"] if run["runtime"] == "livefx"]
    assert livefx["max_abs_err_vs_onnxruntime"] < 1e-3
    assert len(livefx["layers"]) == livefx["steps"] == 66
    frames = {row["effect"]: row for row in report["frame"]}
    assert set(frames) == {"blur", "gan cartoon", "gan enhance"}
    assert all(row["gpu_us"]["median"] > 0 for row in frames.values())


def test_host_build_fp16_weights_path_matches_fp32_path(net_lib) -> None:
    """The GPU's instantiation (fp16 bits, widened per use) and the host tests' (fp16 values
    as fp32) give the same bits."""
    import ctypes

    import numpy as np

    from engine.inference.net import load_net
    from engine.inference.net.plan import NetPtrs
    from engine.models.registry import load_generator

    plan = load_net(load_generator("cartoon")[0], "cartoon").plan((1, 3, 36, 44))
    x = np.random.default_rng(0).uniform(0, 1, plan.input_shape).astype(np.float32)
    outs = []
    for fn, weights in (
        (net_lib.lfx_net_step, plan.w16.view(np.float16).astype(np.float32)),
        (net_lib.lfx_net_step_f16w, plan.w16.copy()),
    ):
        arena = np.full(plan.arena_floats, np.nan, np.float32)
        off = plan.offset(plan.input)
        arena[off : off + x.size] = x.ravel()
        base = arena.ctypes.data
        for st in plan.steps:
            r = base + 4 * plan.offset(st.r) if st.r else None
            s = base + 4 * plan.offset(st.s) if st.s else None
            src, dst = base + 4 * plan.offset(st.x), base + 4 * plan.offset(st.y)
            p = NetPtrs(src, r, s, weights.ctypes.data, plan.f32.ctypes.data, dst)
            assert fn(ctypes.byref(st.struct()), ctypes.byref(p)) == 0
        o = plan.offset("output")
        outs.append(arena[o : o + x.size].copy())
    assert np.isfinite(outs[0]).all()
    assert np.array_equal(outs[0], outs[1])


def test_kernels_compile_under_nvrtc() -> None:
    """The fallback where no prebuilt binary fits a device: NVRTC compiles kernels/livefx.cu
    (with the net and GAN kernels it includes) for sm_90. Needs cuda-python and libnvrtc (the
    gpu extra, or the nvidia-cuda-nvrtc wheel), not a GPU."""
    import pytest

    from engine.errors import BackendError

    try:
        from engine.gpu.module import compile_nvrtc

        cubin = compile_nvrtc((9, 0))
    except BackendError as exc:
        pytest.skip(str(exc))
    assert len(cubin) > 100_000
    for name in (b"lfx_net_conv", b"lfx_gan_up", b"lfx_gate", b"lfx_finish"):
        assert name in cubin
