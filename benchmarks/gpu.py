"""The GPU chain at one resolution: each kernel's time against its bandwidth floor, the whole
chain as CUDA graphs, the pinned copies, and the cuda pipeline's frame time next to the cpu's.

Run through ``benchmarks/pipeline.py --backend cuda`` (or ``python benchmarks/gpu.py``).

- Bandwidth: a 512 MiB device-to-device copy, bytes read plus written over its time (median).
- Per kernel: each op of the frame's sequence captured ``PER_GRAPH`` times in a row in one CUDA
  graph, the graph replayed between two events, divided by ``PER_GRAPH`` (median of
  ``--repeats``): the kernel's time with graph launch gaps, not the host's launch cost. Bytes =
  the least it must move (each input read once, each output written once); floor = bytes ÷
  the measured bandwidth.
- Chain: the kernels of one frame (no model, no host copies) captured as one CUDA graph and
  replayed between events; and the same with the upload and download (the pinned copies).
- Frame: ``CudaPipeline.process`` wall time per frame (host clock, the model on ONNX Runtime
  unless TensorRT is there) and the cpu pipeline's on the same frames, median and p95.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import EffectConfig, InferenceConfig, PipelineConfig
from engine.samples import composited_clip

PER_GRAPH = 20
RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


class Events:
    def __init__(self, cd: Any, stream: Any) -> None:
        self.cd, self.cu, self.stream = cd, cd.cu, stream
        self.a = cd.check(self.cu.cuEventCreate(0), "cuEventCreate")
        self.b = cd.check(self.cu.cuEventCreate(0), "cuEventCreate")

    def time_ms(self, fn: Any, repeats: int, warmup: int = 3) -> list[float]:
        out = []
        for i in range(warmup + repeats):
            self.cd.check(self.cu.cuEventRecord(self.a, self.stream.handle), "cuEventRecord")
            fn()
            self.cd.check(self.cu.cuEventRecord(self.b, self.stream.handle), "cuEventRecord")
            self.cd.check(self.cu.cuEventSynchronize(self.b), "cuEventSynchronize")
            ms = self.cd.check(self.cu.cuEventElapsedTime(self.a, self.b), "cuEventElapsedTime")
            if i >= warmup:
                out.append(float(ms))
        return out


def median_p95(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs)
    return float(np.median(a)), float(np.percentile(a, 95))


def device_bandwidth(cd: Any, stream: Any, ev: Events, nbytes: int = 512 << 20) -> float:
    """GB/s of a device-to-device copy, counting bytes read and written."""
    src, dst = cd.DeviceBuffer(nbytes), cd.DeviceBuffer(nbytes)
    cd.check(cd.cu.cuMemsetD8(src.ptr, 7, nbytes), "cuMemsetD8")
    times = ev.time_ms(
        lambda: cd.check(
            cd.cu.cuMemcpyDtoDAsync(dst.ptr, src.ptr, nbytes, stream.handle), "cuMemcpyDtoDAsync"
        ),
        repeats=20,
    )
    src.close()
    dst.close()
    return 2 * nbytes / (float(np.median(times)) * 1e-3) / 1e9


def bench(res: str, effect: str, repeats: int, frames_n: int, threads: int) -> dict[str, Any]:
    from engine.gpu import driver as cd
    from engine.pipeline.cuda_pipeline import CudaPipeline

    w, h = RESOLUTIONS[res]
    frames = composited_clip(w, h, frames_n, motion="sway", noise=2.0).frames
    config = PipelineConfig(
        effect=EffectConfig(name=effect),
        inference=InferenceConfig(threads=threads),
        backend="cuda",
    )
    p = CudaPipeline(config)
    for f in frames:  # a real mask in the chain's buffers, graphs captured
        p.process(f)
    chain = p.chain
    assert chain is not None
    stream = chain.stream
    ev = Events(cd, stream)
    bw = device_bandwidth(cd, stream, ev)
    settings = p.chain_settings(p.quality)
    ops = chain.pre_ops(settings) + chain.post_ops(settings)
    rows = []

    def graph_ms(graph: Any, n: int, warmup: int = 5) -> list[float]:
        def launch() -> None:
            cd.check(cd.cu.cuGraphLaunch(graph, stream.handle), "cuGraphLaunch")

        return ev.time_ms(launch, n, warmup)

    for op in ops:
        g = chain.capture([op] * PER_GRAPH)
        med, p95 = median_p95([t / PER_GRAPH for t in graph_ms(g, repeats)])
        cd.check(cd.cu.cuGraphExecDestroy(g), "cuGraphExecDestroy")
        floor_us = op.nbytes / (bw * 1e9) * 1e6
        rows.append(
            {
                "op": op.name,
                "us": med * 1e3,
                "p95_us": p95 * 1e3,
                "bytes": op.nbytes,
                "floor_us": floor_us,
                "over_floor": med * 1e3 / floor_us if floor_us > 0 else None,
            }
        )
    host = ("upload", "download", "model input", "mask (host")
    kernels = [op for op in ops if not op.name.startswith(host)]
    graph = chain.capture(kernels)
    chain_med, chain_p95 = median_p95(graph_ms(graph, repeats * 4, warmup=10))
    full = chain.capture([op for op in ops if not op.name.startswith(host[2:])])
    full_med, full_p95 = median_p95(graph_ms(full, repeats * 4, warmup=10))
    for g in (graph, full):
        cd.check(cd.cu.cuGraphExecDestroy(g), "cuGraphExecDestroy")
    kernel_bytes = sum(op.nbytes for op in kernels)
    p.close()
    cpu_cfg = PipelineConfig(effect=config.effect, inference=config.inference, backend="cpu")
    from pipeline import time_pipeline  # benchmarks/pipeline.py, beside this file

    gpu_frames = time_pipeline(frames, config, repeats, 10)
    cpu_frames = time_pipeline(frames, cpu_cfg, max(20, repeats // 4), 5)
    return {
        "resolution": res,
        "size": [w, h],
        "effect": effect,
        "device_copy_GBps": bw,
        "ops": rows,
        "chain_graph_us": {"median": chain_med * 1e3, "p95": chain_p95 * 1e3},
        "chain_kernels": len(kernels),
        "chain_bytes": kernel_bytes,
        "chain_floor_us": kernel_bytes / (bw * 1e9) * 1e6,
        "chain_with_copies_us": {"median": full_med * 1e3, "p95": full_p95 * 1e3},
        "frame_ms": {"cuda": gpu_frames, "cpu": cpu_frames},
    }


def print_report(r: dict[str, Any], gpu: str) -> None:
    w, h = r["size"]
    print(f"\n{r['resolution']} ({w}×{h}), effect {r['effect']}, {gpu}")
    print(f"device-to-device copy: {r['device_copy_GBps']:.0f} GB/s (read + write)")
    print(f"  {'op':<34}{'median µs':>10}{'p95 µs':>9}{'bytes':>11}{'floor µs':>10}{'× floor':>9}")
    for row in r["ops"]:
        ratio = f"{row['over_floor']:.1f}" if row["over_floor"] else "-"
        print(
            f"  {row['op']:<34}{row['us']:>10.2f}{row['p95_us']:>9.2f}{row['bytes']:>11}"
            f"{row['floor_us']:>10.3f}{ratio:>9}"
        )
    c = r["chain_graph_us"]
    print(
        f"chain without the model or copies, one graph of {r['chain_kernels']} kernels: "
        f"{c['median']:.1f} µs median, {c['p95']:.1f} µs p95; bandwidth floor "
        f"{r['chain_floor_us']:.2f} µs ({r['chain_bytes']} bytes)"
    )
    c = r["chain_with_copies_us"]
    print(f"same with the upload and download: {c['median']:.1f} µs median, {c['p95']:.1f} µs p95")
    g, cpu = r["frame_ms"]["cuda"]["total"], r["frame_ms"]["cpu"]["total"]
    stages = "  ".join(
        f"{k} {v['median_ms']:.2f}" for k, v in r["frame_ms"]["cuda"].items() if k != "total"
    )
    print(
        f"frame (host clock): cuda {g['median_ms']:.2f} / {g['p95_ms']:.2f} ms ({stages}); "
        f"cpu {cpu['median_ms']:.2f} / {cpu['p95_ms']:.2f} ms; cpu ÷ cuda (median) "
        f"{cpu['median_ms'] / g['median_ms']:.1f}×"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="1080p")
    ap.add_argument("--effects", default="blur")
    ap.add_argument("-n", "--repeats", type=int, default=100)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    from engine.gpu.module import Gpu

    gpu = Gpu.shared()
    name = f"{gpu.device.name}, kernels {gpu.module.source}"
    results = []
    for res in [r.strip() for r in args.resolutions.split(",") if r.strip()]:
        for effect in [e.strip() for e in args.effects.split(",") if e.strip()]:
            if effect not in ("blur", "replace", "colour"):
                print(f"{effect}: no GPU path, skipped")
                continue
            r = bench(res, effect, args.repeats, args.frames, args.threads)
            results.append(r)
            print_report(r, name)
    if args.json:
        args.json.write_text(json.dumps({"gpu": name, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
