"""Per-stage latency of the pipeline for each effect and resolution, next to the usual way.

Frames: the astronaut cut-out composited over a background photo, moving (``sway``), with camera
noise — real photos with a person, not noise. Each resolution's frames are made once and cycled.
LiveFX runs on one thread (OpenCV and ONNX Runtime both set to 1) unless ``--threads`` says
otherwise. The usual way (``usual_way_worker.py``: MediaPipe's runtime + full-resolution OpenCV
Gaussian blur + NumPy float blend, default threads) runs on the same frames in the same run, in
MediaPipe's own venv (``--mediapipe-python``; ``make bench`` makes it).

For each ``gan:MODEL`` effect the same generator also runs the usual way, in this process with
LiveFX's thread count, alternating with LiveFX frame by frame: OpenCV's full-size I420→RGB, a
float NCHW copy, ``InferenceSession.run``, and back to I420.

Prints a table per resolution (median and p95 ms per stage and in total) and the ratios of the
usual ways' medians to LiveFX's; ``--json`` prints everything as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import EffectConfig, InferenceConfig, PipelineConfig
from engine.frame import FrameBuffer
from engine.pipeline import Pipeline, make_pipeline
from engine.pipeline.timing import summarise_ns
from engine.samples import composited_clip

RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
EFFECTS = ("none", "mask", "blur", "replace", "colour", "gan:cartoon", "gan:enhance")
WORKER = Path(__file__).resolve().parent / "usual_way_worker.py"


def bench_livefx(
    frames: list[FrameBuffer], effect: str, threads: int, repeats: int, warmup: int
) -> dict[str, dict[str, float]]:
    config = PipelineConfig(
        effect=EffectConfig(name=effect), inference=InferenceConfig(threads=threads), backend="cpu"
    )
    return time_pipeline(frames, config, repeats, warmup)


def time_pipeline(
    frames: list[FrameBuffer], config: PipelineConfig, repeats: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Per-stage summary of ``repeats`` frames after ``warmup``, cycling through ``frames``."""
    p = make_pipeline(config)
    for i in range(warmup):
        p.process(frames[i % len(frames)])
    p.times.clear()
    for i in range(repeats):
        p.process(frames[i % len(frames)])
    p.close()
    return p.times.summary()


def i420(frame: FrameBuffer) -> np.ndarray:
    """yuv420p planes stacked as OpenCV's I420 layout (h·3/2 rows of w bytes)."""
    h, w = frame.height, frame.width
    out = np.empty((h * 3 // 2, w), np.uint8)
    out[:h] = frame.y
    out[h:].reshape(-1)[: frame.u.size] = frame.u.reshape(-1)
    out[h:].reshape(-1)[frame.u.size :] = frame.v.reshape(-1)
    return out


def bench_usual(
    frames: dict[str, list[FrameBuffer]], python: str, repeats: int, warmup: int, sigma: float
) -> tuple[dict[str, dict[str, dict[str, float]]] | None, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frames.npz")
        arrays: dict[str, Any] = {
            f"{res}/{i}": i420(f) for res, fs in frames.items() for i, f in enumerate(fs)
        }
        np.savez(path, **arrays)
        proc = subprocess.run(
            [python, str(WORKER), path, str(repeats), str(warmup), str(sigma)],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return None, f"usual way failed: {tail[0]}"
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    ksizes = {res: stages.pop("ksize")[0] for res, stages in raw.items()}
    kernels = ", ".join(f"{res} {k}×{k}" for res, k in ksizes.items())
    return {
        res: {stage: summarise_ns(v) for stage, v in stages.items()} for res, stages in raw.items()
    }, f"usual way: mediapipe 0.10.21 + OpenCV GaussianBlur ({kernels}) + NumPy float blend"


def bench_gan_pair(
    frames: list[FrameBuffer], model: str, threads: int, repeats: int, warmup: int
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """LiveFX's gan effect and the same generator the usual way, interleaved frame by frame (so
    that both see the same machine): OpenCV's full-size I420→RGB, a float NCHW copy,
    ``InferenceSession.run`` with fresh outputs, the output back to uint8 and to I420."""
    import time

    import onnxruntime as ort

    from engine.models.registry import load_generator

    p = Pipeline(
        PipelineConfig(
            effect=EffectConfig(name="gan", model=model), inference=InferenceConfig(threads=threads)
        )
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    session = ort.InferenceSession(
        load_generator(model)[0], opts, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    packed = [i420(f) for f in frames]
    usual = []
    for i in range(warmup + repeats):
        if i == warmup:
            p.times.clear()
        p.process(frames[i % len(frames)])
        t0 = time.perf_counter_ns()
        rgb = cv2.cvtColor(packed[i % len(packed)], cv2.COLOR_YUV2RGB_I420)
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        (y,) = session.run(None, {name: x})
        out = np.clip(y[0].transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        cv2.cvtColor(out, cv2.COLOR_RGB2YUV_I420)
        if i >= warmup:
            usual.append(time.perf_counter_ns() - t0)
    return p.times.summary(), {"total": summarise_ns(usual)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="480p,720p,1080p")
    ap.add_argument("--effects", default=",".join(EFFECTS))
    ap.add_argument("--frames", type=int, default=24, help="distinct frames per resolution")
    ap.add_argument("-n", "--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV and ONNX Runtime threads")
    ap.add_argument("--usual-repeats", type=int, default=40)
    ap.add_argument(
        "--usual-ksize",
        type=int,
        default=0,
        help="the usual way's Gaussian kernel size; default: the σ of LiveFX's blur at the "
        "default strength (the same look)",
    )
    ap.add_argument("--mediapipe-python", default=os.environ.get("LIVEFX_MEDIAPIPE_PYTHON"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--backend",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the GPU chain per kernel, as graphs, and per frame next to the cpu "
        "(benchmarks/gpu.py; default resolution 1080p, effect blur)",
    )
    ap.add_argument("--json-out", type=Path, default=None, help="cuda: write the results here")
    args = ap.parse_args(argv)
    if args.backend == "cuda":
        import gpu

        res = args.resolutions if args.resolutions != ap.get_default("resolutions") else "1080p"
        eff = args.effects if args.effects != ap.get_default("effects") else "blur"
        gpu_args = ["--resolutions", res, "--effects", eff, "--threads", str(args.threads)]
        gpu_args += ["-n", str(min(args.repeats, 100))]
        if args.json_out:
            gpu_args += ["--json", str(args.json_out)]
        return int(gpu.main(gpu_args))

    cv2.setNumThreads(args.threads)
    resolutions = [r.strip() for r in args.resolutions.split(",") if r.strip()]
    effects = [e.strip() for e in args.effects.split(",") if e.strip()]
    frames = {
        res: composited_clip(*RESOLUTIONS[res], args.frames, motion="sway", noise=2.0).frames
        for res in resolutions
    }
    results: dict[str, dict[str, Any]] = {}
    for res in resolutions:
        results[res] = {}
        for e in effects:
            if e.startswith("gan:"):  # with the same generator run the usual way, same threads
                results[res][e], results[res][f"usual {e}"] = bench_gan_pair(
                    frames[res], e.partition(":")[2], args.threads, args.repeats, args.warmup
                )
            else:
                results[res][e] = bench_livefx(
                    frames[res], e, args.threads, args.repeats, args.warmup
                )
    usual_note = "usual way not run (no --mediapipe-python)"
    if args.mediapipe_python:
        # The same blur as LiveFX's default: σ = strength · 6 % of the short side.
        sigma = -float(args.usual_ksize) if args.usual_ksize else EffectConfig().strength * 0.06
        usual, usual_note = bench_usual(frames, args.mediapipe_python, args.usual_repeats, 5, sigma)
        if usual is not None:
            for res in resolutions:
                results[res]["usual way"] = usual[res]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "threads": args.threads, "results": results}))
        return 0
    print(
        f"pipeline latency per frame, {args.repeats} frames after {args.warmup} warm-up "
        f"(usual way: {args.usual_repeats}); LiveFX threads: {args.threads}"
    )
    print(f"machine: {machine}\n{usual_note}")
    for res in resolutions:
        w, h = RESOLUTIONS[res]
        print(f"\n{res} ({w}×{h})   median / p95 ms")
        for row, stages in results[res].items():
            total = stages["total"]
            parts = "  ".join(
                f"{k} {v['median_ms']:.2f}/{v['p95_ms']:.2f}"
                for k, v in stages.items()
                if k != "total"
            )
            print(f"  {row:<18} total {total['median_ms']:6.2f} / {total['p95_ms']:6.2f}   {parts}")
        usual_row = results[res].get("usual way")
        if usual_row and "blur" in results[res]:
            ratio = usual_row["total"]["median_ms"] / results[res]["blur"]["total"]["median_ms"]
            print(f"  usual way ÷ LiveFX blur (median): {ratio:.1f}×")
        for row in list(results[res]):
            if row.startswith("usual gan:"):
                mine = results[res][row.removeprefix("usual ")]["total"]["median_ms"]
                ratio = results[res][row]["total"]["median_ms"] / mine
                print(f"  {row} ÷ LiveFX {row.removeprefix('usual ')} (median): {ratio:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
