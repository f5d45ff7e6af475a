"""The GPU path measured: the frame chain per kernel and as graphs (``chain``, the default),
the shipped models on LiveFX's kernels next to PyTorch and ONNX Runtime (``--models``), and the
whole 1080p frame per effect (``--frame``).

Run through ``benchmarks/pipeline.py --backend cuda`` (the chain section) or
``python benchmarks/gpu.py [--models] [--frame] [--no-chain] [--json-out FILE]``. Without a GPU
it says what is missing in one line and exits with status 2. tools/gpu_check.sh runs it all on
a lent GPU machine.

- Bandwidth: a 512 MiB device-to-device copy, bytes read plus written over its time (median).
- Per kernel: each op of the frame's sequence captured ``PER_GRAPH`` times in a row in one CUDA
  graph, the graph replayed between two events, divided by ``PER_GRAPH`` (median of
  ``--repeats``): the kernel's time with graph launch gaps, not the host's launch cost. Bytes =
  the least it must move (each input read once, each output written once); floor = bytes ÷
  the measured bandwidth.
- Chain: the kernels of one frame (no model, no host copies) captured as one CUDA graph and
  replayed between events; and the same with the upload and download (the pinned copies).
- Frame: ``CudaPipeline.process`` wall time per frame (host clock) and the cpu pipeline's on
  the same frames, median and p95.
- Models (``benchmarks/gpu_models.py``): each shipped model at batch 1, 4 and 16 on LiveFX's
  kernels (one CUDA graph; and per layer: bytes, GB/s and its ratio to the copy bandwidth,
  GFLOP/s), on PyTorch fp16 channels-last and fp32 replaying a CUDA graph
  (``benchmarks/torch_peer.py``: the same folded ONNX nodes), and on ONNX Runtime on the CPU;
  the segmenter targets, met or not.
- Whole 1080p frame (``--frame``): per effect (blur, replace, colour, mask, none, and gan where
  the GPU path has it), ``CudaPipeline`` with the models on LiveFX's kernels over frames of the
  composited clip: ``process()`` on the host clock, and the GPU time of the frame's CUDA graph
  (the chain's own cached graph, replayed between events), with and without the upload and
  download; the frame targets, met or not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import EffectConfig, InferenceConfig, PipelineConfig
from engine.samples import composited_clip

PER_GRAPH = 20
RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
FRAME_EFFECTS = ("blur", "replace", "colour", "mask", "none", "gan")
FRAME_TARGETS_US = {"blur": 150.0, "gan": 300.0}  # GPU time of the frame's kernels
HOST_TARGET_MS = {"blur": 0.5}  # host clock per frame, upload and download included


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


# -- the whole frame ----------------------------------------------------------------------------


def frame_configs(names: list[str]) -> tuple[list[tuple[str, EffectConfig]], list[str]]:
    """(label, effect) for each asked effect with a GPU path now, and a line for each without."""
    from engine.pipeline.backend import GPU_EFFECTS

    out: list[tuple[str, EffectConfig]] = []
    skipped = []
    for e in names:
        if e not in GPU_EFFECTS:
            skipped.append(f"{e}: no GPU path yet (engine.pipeline.backend.GPU_EFFECTS), skipped")
        elif e == "gan":
            out += [(f"gan {m}", EffectConfig(name="gan", model=m)) for m in ("cartoon", "enhance")]
        else:
            out.append((e, EffectConfig(name=e)))
    return out, skipped


def _frame_graph(p: Any) -> tuple[Any, bool, str]:
    """The frame's graph as ``process()`` launches it: the chain's cached ``("frame", settings,
    depths, with model)`` graph, the one with the model where there is one. (exe, whether
    this function made it and must destroy it, how it was found)."""
    chain = p.chain
    graphs = getattr(chain, "_graphs", {})
    found = [(k, v) for k, v in graphs.items() if isinstance(k, tuple) and k and k[0] == "frame"]
    with_model = [kv for kv in found if kv[0][-1] is True]
    if with_model or found:
        _key, exe = (with_model or found)[-1]
        return (
            exe,
            False,
            "the chain's cached frame graph" + (" (model included)" if with_model else ""),
        )
    return chain.capture(_frame_ops(p)), True, "frame_ops captured here"


def _frame_ops(p: Any, copies: bool = True) -> list[Any]:
    """The frame's ops (``FrameChain.frame_ops``, with the last frame's settings and the
    segmenter's launches); without the host copies (upload, download, the gate's flags) where
    ``copies`` is False."""
    chain = p.chain
    settings = getattr(p, "_frame_settings", None) or p.chain_settings(p.quality)
    backends = [b for b in getattr(p, "_backends", {}).values() if hasattr(b, "ops")]
    model = partial(backends[0].ops, p.stream) if backends and p.effect.needs_matte else None
    ops = chain.frame_ops(settings, model)
    if not copies:
        ops = [
            op for op in ops if not any(c in op.name for c in ("host → device", "device → host"))
        ]
    return list(ops)


def bench_frame(
    label: str, effect: EffectConfig, frames: list[Any], repeats: int, warmup: int
) -> dict[str, Any]:
    from engine.gpu import driver as cd
    from engine.pipeline.cuda_pipeline import CudaPipeline

    config = PipelineConfig(effect=effect, backend="cuda", model_runtime="kernels")
    p = CudaPipeline(config, model_runtime="kernels")
    out: dict[str, Any] = {"effect": label, "size": [frames[0].width, frames[0].height]}
    try:
        for i in range(warmup):
            p.process(frames[i % len(frames)])
        p.times.clear()
        host = []
        for i in range(repeats):
            t0 = time.perf_counter()
            p.process(frames[i % len(frames)])
            host.append((time.perf_counter() - t0) * 1e3)
        med, p95 = median_p95(host)
        out["host_ms"] = {"median": med, "p95": p95, "n": len(host)}
        out["stages_ms"] = p.times.summary()
        out["quality"] = p.quality.name
        ev = Events(cd, p.stream)

        def replay(exe: Any) -> list[float]:
            def launch() -> None:
                cd.check(cd.cu.cuGraphLaunch(exe, p.stream.handle), "cuGraphLaunch")

            return ev.time_ms(launch, repeats, warmup=max(3, min(10, repeats)))

        chain = p.chain
        assert chain is not None
        exe, own, how = _frame_graph(p)
        try:
            med, p95 = median_p95(replay(exe))
            out["gpu_us"] = {"median": med * 1e3, "p95": p95 * 1e3, "graph": how}
        finally:
            if own:
                cd.check(cd.cu.cuGraphExecDestroy(exe), "cuGraphExecDestroy")
        try:
            ops = _frame_ops(p, copies=False)
            out["kernels"] = len(ops)
            if ops:
                exe = chain.capture(ops)
                try:
                    med, p95 = median_p95(replay(exe))
                finally:
                    cd.check(cd.cu.cuGraphExecDestroy(exe), "cuGraphExecDestroy")
                out["gpu_kernels_us"] = {"median": med * 1e3, "p95": p95 * 1e3}
        except Exception as exc:  # e.g. an effect whose frame is not FrameChain.frame_ops
            out["gpu_kernels_us"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        p.close()
    return out


def frame_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, limit: float, unit: str) -> None:
        met = None if value is None else value <= limit
        out.append({"target": what, "value": value, "limit": limit, "unit": unit, "met": met})

    for r in rows:
        if list(r["size"]) != [1920, 1080]:  # the targets are for the 1080p frame
            continue
        base = r["effect"].split()[0]
        k = r.get("gpu_kernels_us", {}).get("median")
        g = r.get("gpu_us", {}).get("median")
        if base in FRAME_TARGETS_US:
            lim = FRAME_TARGETS_US[base]
            add(f"1080p {r['effect']} frame, model included, kernels ≤ {lim:.0f} µs GPU time",
                k, lim, "µs")  # fmt: skip
            add(f"  same with the upload and download in the graph ≤ {lim:.0f} µs (stricter)",
                g, lim, "µs")  # fmt: skip
        if base in HOST_TARGET_MS:
            lim = HOST_TARGET_MS[base]
            add(f"1080p {r['effect']} frame host clock ≤ {lim} ms (median, copies included)",
                r["host_ms"]["median"], lim, "ms")  # fmt: skip
    return out


def print_frame(rows: list[dict[str, Any]], gpu: str) -> None:
    if not rows:
        return
    w, h = rows[0]["size"]
    print(f"\nwhole frame {w}×{h}, models on LiveFX's kernels, {gpu}")
    print(
        f"  {'effect':<14} {'host ms':>9} {'p95':>9} {'graph µs':>10} {'p95':>10}"
        f" {'kernels µs':>10} {'p95':>10}  quality, graph"
    )
    for r in rows:
        if "error" in r:
            print(f"  {r['effect']:<14} failed: {r['error'][:160]}")
            continue
        hm, g, k = r["host_ms"], r["gpu_us"], r.get("gpu_kernels_us", {})
        ks = f" {k['median']:>10.1f} {k['p95']:>10.1f}" if "median" in k else f" {'-':>10} {'':>10}"
        print(
            f"  {r['effect']:<14} {hm['median']:>9.3f} {hm['p95']:>9.3f} {g['median']:>10.1f}"
            f" {g['p95']:>10.1f}{ks}  {r['quality']}, {g['graph']}"
        )
        if "error" in k:
            print(f"    kernels-only graph: {k['error'][:160]}")


def print_targets(targets: list[dict[str, Any]]) -> None:
    from gpu_models import met_word

    print("\ntargets (issue 12), this run:")
    for t in targets:
        v = "-" if t["value"] is None else f"{t['value']:.2f} {t['unit']}"
        print(f"  {t['target']}: {v} → {met_word(t['met'])}")


# -- main ---------------------------------------------------------------------------------------


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--resolutions", default="1080p", help="chain section (default 1080p)")
    ap.add_argument("--effects", default="blur", help="chain section (default blur)")
    ap.add_argument("-n", "--repeats", type=int, default=100, help="repeats per figure")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-chain", action="store_true", help="skip the chain section")
    ap.add_argument(
        "--models",
        nargs="?",
        const="all",
        default=None,
        help="the models section: all, or some of general,landscape,cartoon,enhance,pose_lite",
    )
    ap.add_argument("--batches", default="1,4,16", help="models section (default 1,4,16)")
    ap.add_argument("--no-layers", action="store_true", help="models: no per-layer figures")
    ap.add_argument("--no-torch-fp32", action="store_true", help="models: PyTorch fp16 only")
    ap.add_argument(
        "--layer-tables",
        default="1,16",
        help="models: print per-layer tables at these batches (the JSON has every batch)",
    )
    ap.add_argument(
        "--frame",
        nargs="?",
        const=",".join(FRAME_EFFECTS),
        default=None,
        help=f"the whole-1080p-frame section for these effects (default {','.join(FRAME_EFFECTS)})",
    )
    ap.add_argument("--frame-size", default="1920x1080")
    ap.add_argument("--frame-warmup", type=int, default=20, help="frames before the timing")
    ap.add_argument("--json-out", "--json", dest="json_out", type=Path, default=None,
                    help="write every figure here (JSON)")  # fmt: skip
    args = ap.parse_args(argv)
    from engine.pipeline.backend import gpu_status

    st = gpu_status()
    if st.missing is not None:
        print(f"benchmarks/gpu.py: no GPU path here: {st.missing}")
        return 2
    if (args.models or args.frame) and st.net is not None:
        print(f"benchmarks/gpu.py: the models cannot run on LiveFX's kernels here: {st.net}")
        return 2
    from engine.gpu.module import Gpu

    gpu = Gpu.shared()
    name = f"{gpu.device.name}, kernels {gpu.module.source}"
    report: dict[str, Any] = {"gpu": name, "results": [], "targets": []}

    def save() -> None:  # after each figure set, so that a run cut short keeps what it had
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=1, default=str))

    if not args.no_chain:
        for res in _list(args.resolutions):
            for effect in _list(args.effects):
                if effect not in ("blur", "replace", "colour"):
                    print(f"{effect}: not in the chain section, skipped")
                    continue
                try:
                    r = bench(res, effect, args.repeats, args.frames, args.threads)
                except Exception as exc:  # the other sections still run
                    print(f"chain {res} {effect}: failed: {type(exc).__name__}: {exc}")
                    report["results"].append(
                        {"resolution": res, "effect": effect, "error": str(exc)}
                    )
                    continue
                report["results"].append(r)
                print_report(r, name)
                save()
    if args.models:
        run_models(gpu, name, args, report, save)
    if args.frame:
        run_frame(name, args, report, save)
    if report["targets"]:
        print_targets(report["targets"])
    save()
    if args.json_out:
        print(f"\nwrote {args.json_out}")
    return 0


def run_models(
    gpu: Any, name: str, args: Any, report: dict[str, Any], save: Callable[[], None]
) -> None:
    import gpu_models as gm

    from engine.gpu import driver as cd

    wanted = None if args.models == "all" else set(_list(args.models))
    cases = [c for c in gm.CASES if wanted is None or c.name in wanted]
    batches = [int(b) for b in _list(args.batches)]
    gpu.device.make_current()
    stream = cd.Stream()
    ev = Events(cd, stream)
    bw = device_bandwidth(cd, stream, ev)
    print(f"\nmodels: {name}; device-to-device copy {bw:.0f} GB/s (read + write)")
    why_no_torch = gm.torch_available()
    if why_no_torch:
        print(f"  PyTorch peer: {why_no_torch}")
    out: dict[str, Any] = {"device_copy_GBps": bw, "cases": []}
    report["models"] = out
    layer_batches = {int(b) for b in _list(args.layer_tables)}
    for case in cases:
        t0 = time.perf_counter()
        try:
            res = gm.bench_case(
                case, batches, args.repeats, ev, stream, gpu, bw,
                layers=not args.no_layers, torch_fp32=not args.no_torch_fp32,
                log=lambda m: print(m, flush=True),
            )  # fmt: skip
        except Exception as exc:
            print(f"{case.label}: failed: {type(exc).__name__}: {exc}")
            out["cases"].append({"model": case.name, "size": [case.width, case.height],
                                 "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            continue
        res["seconds"] = time.perf_counter() - t0
        out["cases"].append(res)
        gm.print_case(res, name, bw, layer_batches)
        report["targets"] += [
            dict(t, target=f"{case.label}: {t['target']}") for t in res["targets"]
        ]
        save()
    stream.close()


def run_frame(name: str, args: Any, report: dict[str, Any], save: Callable[[], None]) -> None:
    w, h = (int(v) for v in args.frame_size.lower().split("x"))
    configs, skipped = frame_configs(_list(args.frame))
    for line in skipped:
        print(line)
    frames = composited_clip(w, h, max(2, args.frames), motion="sway", noise=2.0).frames
    rows: list[dict[str, Any]] = []
    report["frame"] = rows
    for label, effect in configs:
        print(f"  frame {w}×{h}: {label}", flush=True)
        try:
            rows.append(bench_frame(label, effect, frames, args.repeats * 2, args.frame_warmup))
        except Exception as exc:
            rows.append({"effect": label, "size": [w, h], "error": f"{type(exc).__name__}: {exc}"})
        save()
    print_frame(rows, name)
    report["targets"] += frame_targets([r for r in rows if "error" not in r])


if __name__ == "__main__":
    sys.exit(main())
