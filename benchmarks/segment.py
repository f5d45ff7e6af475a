"""Segmentation latency: LiveFX's ONNX models on ONNX Runtime next to MediaPipe's own runtime.

Same images (the shipped person photos, fitted to each model's input size), same run, same
machine. Rows:

- ``livefx ort (N thr)``: ``InferenceBackend.run()`` alone: the model as LiveFX runs it on ONNX
  Runtime (the segmenter's CPU graph, ``engine/models/fold.py``).
- ``ort converted graph (1 thr)``: the converted graph as it was before folding; ``ort int8 …``
  (``--int8``): the int8 variants of ``tools/quantize_segmenters.py``, quantised on the spot
  (needs ``onnx``). These rows and ``livefx ort (1 thr)`` run interleaved, call by call, and are
  also given as a ratio to the converted graph's median (<1: faster).
- ``livefx frame→mask``: what the pipeline spends per frame on segmentation: yuv420p frame at model
  size → preprocess → model → mask (the same work MediaPipe's graph does around its model).
- ``mediapipe process()``: ``mp.solutions.selfie_segmentation`` 0.10.21 (TFLite + XNNPACK, its
  ImageToTensor and TensorsToSegmentation calculators), run in-process when mediapipe imports, or
  in the venv given by ``--mediapipe-python`` (mediapipe pins numpy<2).

Prints median and p95 per row and the ratio of MediaPipe's median to each row's (>1: LiveFX
faster). ``--json`` prints the figures as one JSON object instead.

The machine may be shared: compare rows of one run, interleaved rows above all.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.frame import FrameBuffer
from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models.registry import SEGMENTERS, load_model
from engine.ops import cpu
from engine.pipeline.timing import summarise_ns
from engine.samples import PERSON_PHOTOS, fit, sample_rgb

WORKER = Path(__file__).resolve().parent / "mediapipe_worker.py"


CONVERTED = "ort converted graph (1 thr)"
INT8_VARIANTS = ("QDQ u8/s8 MinMax", "QDQ per-ch encoder only")


def time_interleaved(
    fns: dict[str, Callable[[int], None]], n: int, warmup: int
) -> dict[str, list[int]]:
    """Each call of each function timed, the functions alternating call by call (order reversed
    every other round), so that a shared machine's load falls on all of them alike."""
    names = list(fns)
    out: dict[str, list[int]] = {k: [] for k in names}
    for i in range(warmup + n):
        for k in names if i % 2 == 0 else names[::-1]:
            t = time.perf_counter_ns()
            fns[k](i)
            if i >= warmup:
                out[k].append(time.perf_counter_ns() - t)
    return out


def time_calls(fn: Callable[[int], None], n: int, warmup: int) -> list[int]:
    for i in range(warmup):
        fn(i)
    out = []
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        out.append(time.perf_counter_ns() - t)
    return out


def infer_call(b: OnnxRuntimeBackend, inputs: list[np.ndarray]) -> Callable[[int], None]:
    def call(i: int) -> None:
        b.input[0] = inputs[i % len(inputs)]
        b.run()

    return call


def frame_call(
    pre: cpu.Preprocessor, b: OnnxRuntimeBackend, frames: list[FrameBuffer]
) -> Callable[[int], None]:
    pyramids = cpu.FramePyramids(*frames[0].size)

    def call(i: int) -> None:
        frame = frames[i % len(frames)]
        pyramids.set(frame)
        pre(pyramids, b.input, frame.colorspace, frame.full_range)
        b.run()

    return call


def int8_models(model: str) -> dict[str, bytes]:
    """The int8 variants of ``tools/quantize_segmenters.py`` (not shipped: see its docstring)."""
    import importlib.util
    import tempfile

    path = Path(__file__).resolve().parent.parent / "tools" / "quantize_segmenters.py"
    spec = importlib.util.spec_from_file_location("quantize_segmenters", path)
    assert spec is not None and spec.loader is not None
    tool: Any = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # its dataclasses look their module up
    spec.loader.exec_module(tool)
    calib = tool.calibration_frames(model)
    with tempfile.TemporaryDirectory(prefix="livefx-quantise-") as work:
        return {
            f"ort int8 {v.label} (1 thr)": tool.quantise(model, v, calib, work)
            for v in tool.VARIANTS
            if v.label in INT8_VARIANTS
        }


def bench_livefx(
    images: dict[str, list[np.ndarray]], threads: list[int], n: int, warmup: int, int8: bool = False
) -> dict[str, dict[str, list[int]]]:
    rows: dict[str, dict[str, list[int]]] = {}
    for model, frames in images.items():
        spec = SEGMENTERS[model]
        data = load_model(model)
        shape = (1, 3, spec.height, spec.width)
        inputs = [f.transpose(2, 0, 1).astype(np.float32) / 255.0 for f in frames]
        # One thread: LiveFX's graph, the converted graph and the int8 variants, interleaved.
        group = {
            "livefx ort (1 thr)": OnnxRuntimeBackend(data, input_shape=shape, threads=1),
            CONVERTED: OnnxRuntimeBackend(data, input_shape=shape, threads=1, cpu_graph=False),
        }
        for label, q in (int8_models(model) if int8 else {}).items():
            group[label] = OnnxRuntimeBackend(q, input_shape=shape, threads=1)
        timed = time_interleaved({k: infer_call(b, inputs) for k, b in group.items()}, n, warmup)
        for label, times in timed.items():
            rows.setdefault(label, {})[model] = times
        for t in threads:
            if t == 1:
                continue
            b = OnnxRuntimeBackend(data, input_shape=shape, threads=t)
            rows.setdefault(f"livefx ort ({t} thr)", {})[model] = time_calls(
                infer_call(b, inputs), n, warmup
            )
        yuv = [cpu.rgb_to_yuv420p(f, full_range=False) for f in frames]
        call = frame_call(
            cpu.Preprocessor(spec.width, spec.height),
            OnnxRuntimeBackend(data, input_shape=shape, threads=1),
            yuv,
        )
        rows.setdefault("livefx frame→mask (1 thr)", {})[model] = time_calls(call, n, warmup)
    return rows


def bench_mediapipe(
    images: dict[str, list[np.ndarray]], python: str | None, n: int, warmup: int
) -> tuple[dict[str, list[int]] | None, str]:
    if python is None:
        if importlib.util.find_spec("mediapipe") is None:
            return None, "mediapipe not importable and no --mediapipe-python given"
        python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "images.npz")
        arrays: dict[str, Any] = {
            f"{m}/{i}": f for m, fs in images.items() for i, f in enumerate(fs)
        }
        np.savez(path, **arrays)
        proc = subprocess.run(
            [python, str(WORKER), path, str(n), str(warmup)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        return None, f"mediapipe worker failed: {proc.stderr.strip().splitlines()[-1:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    version = result.pop("mediapipe_version")
    return result, f"mediapipe {version}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--repeats", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--mediapipe-python", default=os.environ.get("LIVEFX_MEDIAPIPE_PYTHON"))
    ap.add_argument("--int8", action="store_true", help="add the int8 rows (needs onnx)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    photos = [sample_rgb(p) for p in PERSON_PHOTOS]
    images = {m: [fit(p, s.width, s.height) for p in photos] for m, s in SEGMENTERS.items()}
    rows = bench_livefx(images, args.threads, args.repeats, args.warmup, args.int8)
    mp_rows, mp_note = bench_mediapipe(images, args.mediapipe_python, args.repeats, args.warmup)
    if mp_rows is not None:
        rows["mediapipe process()"] = mp_rows

    table: dict[str, dict[str, dict[str, float]]] = {
        row: {m: summarise_ns(v) for m, v in per_model.items()} for row, per_model in rows.items()
    }
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "mediapipe": mp_note, "rows": table}))
        return 0
    print(f"segmentation latency per image, {args.repeats} calls after {args.warmup} warm-up")
    print(f"machine: {machine}; {mp_note}")
    width = max(28, *(len(r) + 2 for r in table))
    print(
        f"{'row':<{width}}{'model':<11}{'median ms':>10}{'p95 ms':>9}{'vs mediapipe':>14}"
        f"{'vs converted':>14}"
    )
    for row, per_model in table.items():
        for model, s in per_model.items():
            ratio = converted = ""
            ref = table.get("mediapipe process()", {}).get(model)
            if ref and s["median_ms"] > 0:
                ratio = f"{ref['median_ms'] / s['median_ms']:.2f}×"
            conv = table.get(CONVERTED, {}).get(model)
            if conv and (row == CONVERTED or row == "livefx ort (1 thr)" or "int8" in row):
                converted = f"{s['median_ms'] / conv['median_ms']:.3f}"
            print(
                f"{row:<{width}}{model:<11}{s['median_ms']:>10.3f}{s['p95_ms']:>9.3f}{ratio:>14}"
                f"{converted:>14}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
