"""int8 static quantisation of the selfie segmenters with ``onnxruntime.quantization``: every
variant tried, its masks against fp32 on held-out frames, and its speed against fp32 in one run.

Calibration frames (deterministic, ``engine.samples``): the astronaut cut-out over the ``rocket``
and ``coffee`` backgrounds, swaying and crossing the frame, 32 frames. Held-out frames, other
people and backgrounds than those: the cameraman photo (a different person; seen through a
panning camera, and mirrored), the astronaut photo with its own background, the cut-out over
``hubble`` with more noise, the ``cat-front``, ``two-people`` and ``cup-held`` scenes over
``hubble`` and flat colours: 84 frames per model. Frames are 1280×720 (landscape) or 960×720
(general), area-resized to the model's input.

A variant passes when its mask thresholded at 0.5 has IoU ≥ 0.99 with fp32's on every held-out
frame. Speed: ``OnnxRuntimeBackend`` calls on one thread, the variants and fp32 (the converted
graph and the CPU graph LiveFX runs) alternating call by call; median, p95 and the ratio to the
converted graph's median.

Result on this machine (docs/decisions.md): no variant passes, and none is faster than fp32.
Nothing here ships; the script is kept so that the table can be made again. Needs ``onnx`` (the
dev extra). ONNX Runtime's quantiser writes scratch files into the working directory: it runs in
a temporary one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from onnxruntime.quantization import CalibrationDataReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import samples
from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models.registry import SEGMENTERS, load_cpu_graph, load_model

FRAME_SIZE = {"landscape": (1280, 720), "general": (960, 720)}


def model_input(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    small = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def calibration_frames(name: str) -> np.ndarray:
    """32 model inputs: the cut-out over ``rocket`` (sway) and ``coffee`` (fast)."""
    spec, (w, h) = SEGMENTERS[name], FRAME_SIZE[name]
    a = samples.composited_clip(w, h, 64, motion="sway", background="rocket", seed=1, keep_rgb=True)
    b = samples.composited_clip(w, h, 64, motion="fast", background="coffee", seed=2, keep_rgb=True)
    return np.concatenate(
        [model_input(f, spec.width, spec.height) for f in a.rgb[::4] + b.rgb[1::4]]
    )


def held_out_frames(name: str) -> dict[str, np.ndarray]:
    """Model inputs of other people and backgrounds than the calibration's, 12 per set."""
    spec, (w, h) = SEGMENTERS[name], FRAME_SIZE[name]
    cam = samples.sample_rgb("cameraman")
    sets = {
        "cameraman": samples.camera_frames(cam, w, h, 12),
        "cameraman-mirrored": [
            np.ascontiguousarray(f[:, ::-1])
            for f in samples.camera_frames(cam, w, h, 12, motion=0.5)
        ],
        "astronaut-photo": samples.camera_frames(samples.sample_rgb("astronaut"), w, h, 12),
        "hubble-fast": samples.composited_clip(
            w, h, 12, motion="fast", background="hubble", noise=4.0, seed=7, keep_rgb=True
        ).rgb,
        "cat-front": samples.scene_clip(
            "cat-front", w, h, 12, background="hubble", seed=8, keep_rgb=True
        ).rgb,
        "two-people": samples.scene_clip(
            "two-people", w, h, 12, background="#2a4d7a", seed=9, keep_rgb=True
        ).rgb,
        "cup-held": samples.scene_clip(
            "cup-held", w, h, 12, motion="static", background="#c8c0b0", seed=10, keep_rgb=True
        ).rgb,
    }
    return {
        k: np.concatenate([model_input(f, spec.width, spec.height) for f in v])
        for k, v in sets.items()
    }


@dataclass
class Variant:
    label: str
    fmt: str = "qdq"  # qdq | qoperator
    activations: str = "u8"
    weights: str = "s8"
    per_channel: bool = False
    reduce_range: bool = False
    method: str = "minmax"  # minmax | entropy | percentile
    exclude: tuple[str, ...] = ()  # groups: first, head, se, resize, decoder
    op_types: tuple[str, ...] = ()
    pre_process: bool = False
    folded: bool = False  # quantise the CPU graph instead of the converted one
    extra: dict[str, Any] = field(default_factory=dict)


VARIANTS = [
    Variant("QDQ u8/s8 MinMax"),
    Variant("QDQ u8/s8 per-channel", per_channel=True),
    Variant("QDQ u8/s8 reduce_range", reduce_range=True),
    Variant("QDQ s8/s8", activations="s8"),
    Variant("QDQ u8/u8", weights="u8"),
    Variant("QOperator u8/s8", fmt="qoperator"),
    Variant("QDQ u8/s8 quant_pre_process", pre_process=True),
    Variant("QDQ u8/s8 Entropy", method="entropy"),
    Variant("QDQ u8/s8 Percentile", method="percentile"),
    Variant("QDQ Conv only, excl. first/head", op_types=("Conv",), exclude=("first", "head")),
    Variant("QDQ excl. first/head", exclude=("first", "head")),
    Variant("QDQ excl. first/head/SE/resize", exclude=("first", "head", "se", "resize")),
    Variant(
        "QDQ per-ch excl. first/head/SE/resize",
        per_channel=True,
        exclude=("first", "head", "se", "resize"),
    ),
    Variant(
        "QDQ per-ch encoder only",
        per_channel=True,
        exclude=("first", "head", "se", "resize", "decoder"),
    ),
    Variant(
        "QDQ per-ch encoder only, CPU graph",
        per_channel=True,
        exclude=("first", "head", "se", "resize", "decoder"),
        folded=True,
    ),
]


def excluded_nodes(model: Any, groups: tuple[str, ...]) -> list[str]:
    nodes = list(model.graph.node)
    names = [n.name for n in nodes]
    out: set[str] = set()
    if "first" in groups:
        out.add(names[0])
    if "head" in groups:
        out.update(n.name for n in nodes if n.op_type == "ConvTranspose")
        out.add(names[-1])
    if "se" in groups:
        pools = ("ReduceMean", "GlobalAveragePool", "AveragePool", "Sigmoid", "Mul")
        out.update(n.name for n in nodes if n.op_type in pools)
    if "resize" in groups:
        out.update(n.name for n in nodes if n.op_type == "Resize")
    if "decoder" in groups:  # everything from the first upsampling on
        first = next(
            i for i, n in enumerate(nodes) if n.op_type == "Resize" and "_gate" not in n.name
        )
        out.update(names[first:])
    return sorted(out)


class Reader(CalibrationDataReader):
    """One calibration frame per call."""

    def __init__(self, frames: np.ndarray, input_name: str) -> None:
        self.frames, self.input_name, self.i = frames, input_name, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.frames):
            return None
        self.i += 1
        return {self.input_name: self.frames[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


@contextlib.contextmanager
def inside(path: str) -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(cwd)


def quantise(name: str, v: Variant, calib: np.ndarray, work: str) -> bytes:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = load_cpu_graph(name) if v.folded else load_model(name)
    model = onnx.load_from_string(source)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    src = os.path.join(work, "source.onnx")
    onnx.save(model, src)
    if v.pre_process:
        quant_pre_process(src, os.path.join(work, "pre.onnx"))
        src = os.path.join(work, "pre.onnx")
    out = os.path.join(work, "quantised.onnx")
    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    reader = Reader(calib, model.graph.input[0].name)
    # The quantiser logs a pre-processing hint per call and prints its histogram steps: to
    # stderr, at most, so that a caller's stdout (a JSON line) stays clean.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with inside(work), contextlib.redirect_stdout(sys.stderr):
            quantize_static(
                src,
                out,
                reader,
                quant_format=QuantFormat.QDQ if v.fmt == "qdq" else QuantFormat.QOperator,
                op_types_to_quantize=list(v.op_types) or None,
                per_channel=v.per_channel,
                reduce_range=v.reduce_range,
                activation_type=types[v.activations],
                weight_type=types[v.weights],
                nodes_to_exclude=excluded_nodes(model, v.exclude),
                calibrate_method=methods[v.method],
                extra_options=v.extra,
            )
    finally:
        root.setLevel(level)
    return Path(out).read_bytes()


def masks(b: OnnxRuntimeBackend, frames: np.ndarray) -> np.ndarray:
    out = []
    for x in frames:
        b.input[...] = x
        out.append(b.run().copy())
    return np.stack(out)


def compare(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, Any]:
    ious, per_set, diffs, worst = [], {}, [], 0.0
    for k, r in ref.items():
        g = got[k]
        a, b = (r > 0.5).reshape(len(r), -1), (g > 0.5).reshape(len(g), -1)
        union = (a | b).sum(axis=1)
        inter = (a & b).sum(axis=1)
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        ious.extend(iou.tolist())
        per_set[k] = float(iou.min())
        diffs.append(np.abs(r - g).mean())
        worst = max(worst, float(np.abs(r - g).max()))
    return {
        "iou_min": min(ious),
        "iou_mean": float(np.mean(ious)),
        "mean_abs": float(np.mean(diffs)),
        "max_abs": worst,
        "per_set": per_set,
    }


def interleaved(
    backends: dict[str, OnnxRuntimeBackend], inputs: np.ndarray, n: int, warmup: int
) -> dict[str, np.ndarray]:
    names = list(backends)
    times: dict[str, list[int]] = {k: [] for k in names}
    for i in range(warmup + n):
        for k in names if i % 2 == 0 else names[::-1]:
            b = backends[k]
            b.input[...] = inputs[i % len(inputs)]
            t = time.perf_counter_ns()
            b.run()
            if i >= warmup:
                times[k].append(time.perf_counter_ns() - t)
    return {k: np.array(v) / 1e6 for k, v in times.items()}


def run_model(name: str, variants: list[Variant], n: int, warmup: int, work: str) -> None:
    spec = SEGMENTERS[name]
    shape = (1, 3, spec.height, spec.width)
    calib, held = calibration_frames(name), held_out_frames(name)
    fp32 = OnnxRuntimeBackend(load_model(name), input_shape=shape, cpu_graph=False)
    ref = {k: masks(fp32, v) for k, v in held.items()}
    backends = {
        "fp32 (converted graph)": fp32,
        "fp32 CPU graph (shipped)": OnnxRuntimeBackend(load_model(name), input_shape=shape),
    }
    cpu = backends["fp32 CPU graph (shipped)"]
    quality = {
        "fp32 CPU graph (shipped)": compare(ref, {k: masks(cpu, v) for k, v in held.items()})
    }
    for v in variants:
        b = OnnxRuntimeBackend(quantise(name, v, calib, work), input_shape=shape)
        quality[v.label] = compare(ref, {k: masks(b, x) for k, x in held.items()})
        backends[v.label] = b
        print(f"  {name}: {v.label} made", file=sys.stderr, flush=True)
    times = interleaved(backends, calib[:8], n, warmup)
    base = float(np.median(times["fp32 (converted graph)"]))
    print(
        f"\n{name} ({spec.width}×{spec.height}): {sum(len(x) for x in held.values())} held-out "
        f"frames; {n} calls each, interleaved, after {warmup} warm-up; one thread"
    )
    print(
        f"{'variant':<40}{'IoU min':>8}{'IoU mean':>9}{'mean |Δ|':>9}{'max |Δ|':>8}"
        f"{'median ms':>10}{'p95 ms':>8}{'ratio':>7}  pass"
    )
    for label, t in times.items():
        med, p95 = float(np.median(t)), float(np.percentile(t, 95))
        q = quality.get(label)
        if q is None:
            cols = f"{'—':>8}{'—':>9}{'—':>9}{'—':>8}"
            ok = ""
        else:
            cols = f"{q['iou_min']:>8.4f}{q['iou_mean']:>9.4f}"
            cols += f"{q['mean_abs']:>9.4f}{q['max_abs']:>8.3f}"
            ok = "yes" if q["iou_min"] >= 0.99 and med < base else "no"
        print(f"{label:<40}{cols}{med:>10.3f}{p95:>8.3f}{med / base:>7.3f}  {ok}")
    print("worst held-out set (IoU min per set):")
    for label, q in quality.items():
        sets = ", ".join(f"{k} {v:.3f}" for k, v in q["per_set"].items())
        print(f"  {label}: {sets}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--models", default="landscape,general")
    ap.add_argument("--only", help="comma-separated variant labels (default: all)")
    ap.add_argument("-n", "--repeats", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    args = ap.parse_args(argv)
    variants = VARIANTS
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        variants = [v for v in VARIANTS if v.label in wanted]
    with tempfile.TemporaryDirectory(prefix="livefx-quantise-") as work:
        for name in args.models.split(","):
            run_model(name.strip(), variants, args.repeats, args.warmup, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
