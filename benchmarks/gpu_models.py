"""The models section of ``benchmarks/gpu.py``: each shipped model on LiveFX's net kernels, per
model and per layer, next to the peers a user would pick instead, in the same run.

- LiveFX: a ``DeviceNet``'s launches captured as one CUDA graph, replayed between two CUDA
  events (median and p95 of the repeats); per layer, each step's launch captured ``per_graph``
  times in a row in one graph and the replay divided by ``per_graph`` (as the chain's per-kernel
  figures), with the bytes it must move (``engine.gpu.net.step_bytes``), the GB/s that makes,
  its ratio to the measured device-to-device copy bandwidth, its multiply-adds and GFLOP/s.
- PyTorch (``benchmarks/torch_peer.py``: the same folded ONNX nodes as PyTorch calls, cuDNN
  with ``benchmark=True``): fp16 channels-last and fp32, warmed up on a side stream, captured
  in a ``torch.cuda.CUDAGraph``, replays timed with ``torch.cuda.Event``.
- ONNX Runtime on the CPU: its default threads and one thread (host clock).

Each runtime's batch-1 output is compared with ONNX Runtime's (max absolute difference), so the
figures are of the same computation. Inputs are frames of the composited clip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from engine.samples import composited_clip

PER_GRAPH = 20
LONG_US = 2000.0  # a model slower than this per batch: fewer launches per per-layer graph
FIGURE_BUDGET_MS = 250.0  # GPU time spent on one figure's repeats, at most (fewer repeats)
LAYER_BUDGET_MS = 100.0  # the same for one layer's figure
LAYER_REPEATS = 100  # at most, per layer
SEGMENTERS = ("general", "landscape")


@dataclass(frozen=True)
class ModelCase:
    name: str  # general | landscape | cartoon | enhance | pose_lite
    kind: str  # segmenter | generator | body
    height: int
    width: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.width}×{self.height}"

    def load(self) -> bytes:
        from engine.models.registry import load_body_model, load_generator, load_model

        if self.kind == "segmenter":
            return load_model(self.name)
        if self.kind == "body":
            return load_body_model(self.name.removeprefix("pose_"))
        return load_generator(self.name)[0]


CASES = [
    ModelCase("general", "segmenter", 256, 256),
    ModelCase("landscape", "segmenter", 144, 256),
    ModelCase("cartoon", "generator", 360, 640),  # the 1080p frame's default GAN size
    ModelCase("cartoon", "generator", 1080, 1920),
    ModelCase("enhance", "generator", 360, 640),
    ModelCase("enhance", "generator", 1080, 1920),
    ModelCase("pose_lite", "body", 256, 256),
]


def summary_us(ms: list[float], per: int = 1) -> dict[str, float]:
    a = np.asarray(ms, np.float64) * 1e3 / per
    return {
        "median_us": float(np.median(a)),
        "p95_us": float(np.percentile(a, 95)),
        "min_us": float(a.min()),
        "n": len(ms),
    }


def repeats_for(est_ms: float, want: int, least: int = 10, budget_ms: float = 0.0) -> int:
    """``want`` repeats, fewer (never under ``least``, nor over ``want``) where that would spend
    more than ``budget_ms`` (default ``FIGURE_BUDGET_MS``) of GPU time."""
    budget = budget_ms or FIGURE_BUDGET_MS
    return max(min(least, want), min(want, int(budget / max(est_ms, 1e-3))))


@lru_cache(maxsize=4)
def _two_frames(h: int, w: int) -> np.ndarray:
    clip = composited_clip(w, h, 2, keep_rgb=True, seed=3)
    rgb = np.stack(clip.rgb[:2]).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


def pictures(batch: int, h: int, w: int) -> np.ndarray:
    """NCHW float32 in [0, 1]: two frames of the composited clip, repeated over the batch."""
    return np.ascontiguousarray(_two_frames(h, w)[np.arange(batch) % 2])


def max_err(got: list[np.ndarray], want: list[np.ndarray]) -> float:
    return max(
        float(np.abs(np.asarray(g, np.float32) - w).max()) for g, w in zip(got, want, strict=True)
    )


# -- LiveFX ----------------------------------------------------------------------------------


def bench_livefx(
    gpu: Any, ev: Any, stream: Any, plan: Any, x: np.ndarray, repeats: int, bw_gbps: float,
    layers: bool, want: list[np.ndarray] | None,
) -> dict[str, Any]:  # fmt: skip
    """One planned model: the whole graph, and per layer when ``layers``."""
    from engine.gpu import driver as cd
    from engine.gpu import memory
    from engine.gpu.net import DeviceNet, step_bytes

    cu = cd.cu
    gpu.device.make_current()
    dn = DeviceNet(gpu, plan)
    try:
        out: dict[str, Any] = {"steps": len(plan.steps), "arena_bytes": dn.arena.nbytes}
        if want is not None:  # the outputs against ONNX Runtime, NaN poison first
            dn.poison(0xFF)
            got = dn.run(x, stream)
            out["max_abs_err_vs_onnxruntime"] = max_err([got[o] for o in plan.outputs], want)
        else:
            a = np.ascontiguousarray(x, np.float32)
            cd.check(cu.cuMemcpyHtoD(dn.ptr(plan.input), a.ctypes.data, a.nbytes), "cuMemcpyHtoD")
        ops = dn.ops(stream)

        def replay(exe: Any) -> Callable[[], None]:
            return lambda: memory.launch_graph(exe, stream, plan.name)

        exe = memory.capture(stream, ops)
        try:
            est = float(np.median(ev.time_ms(replay(exe), 3, warmup=3)))
            n = repeats_for(est, repeats)
            out["graph"] = summary_us(ev.time_ms(replay(exe), n, warmup=5))
        finally:
            cd.check(cu.cuGraphExecDestroy(exe), "cuGraphExecDestroy")
        whole_us = out["graph"]["median_us"]
        out["macs"] = int(sum(st.macs for st in plan.steps))
        out["bytes"] = int(sum(step_bytes(plan, st) for st in plan.steps))
        if not layers:
            return out
        per_graph = PER_GRAPH if whole_us < LONG_US else max(1, int(PER_GRAPH * LONG_US / whole_us))
        rows = []
        for i, (st, op) in enumerate(zip(plan.steps, ops, strict=True)):
            exe = memory.capture(stream, [op] * per_graph)
            try:
                est = float(np.median(ev.time_ms(replay(exe), 2, warmup=2)))
                n = repeats_for(est, min(repeats, LAYER_REPEATS), budget_ms=LAYER_BUDGET_MS)
                t = summary_us(ev.time_ms(replay(exe), n, warmup=3), per_graph)
            finally:
                cd.check(cu.cuGraphExecDestroy(exe), "cuGraphExecDestroy")
            nbytes = step_bytes(plan, st)
            sec = t["median_us"] * 1e-6
            gbps = nbytes / sec / 1e9 if sec > 0 else 0.0
            rows.append(
                {
                    "step": i,
                    "kernel": st.kernel,
                    "what": st.what,
                    **t,
                    "per_graph": per_graph,
                    "bytes": nbytes,
                    "GBps": gbps,
                    "of_copy_bw": gbps / bw_gbps if bw_gbps > 0 else None,
                    "macs": int(st.macs),
                    "GFLOPs": 2 * st.macs / sec / 1e9 if sec > 0 else 0.0,
                }
            )
        out["layers"] = rows
        out["layers_sum_us"] = float(sum(r["median_us"] for r in rows))
        return out
    finally:
        dn.close()


# -- PyTorch ---------------------------------------------------------------------------------


def torch_available() -> str | None:
    """Why the PyTorch peer cannot run here (None: it can)."""
    try:
        import torch
    except ImportError as exc:
        return f"PyTorch is not installed: {exc}"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def bench_torch(
    folded: Any, name: str, x: np.ndarray, half: bool, repeats: int,
    want: list[np.ndarray] | None,
) -> dict[str, Any]:  # fmt: skip
    """The peer module in fp16 channels-last (``half``) or fp32, as one replayed CUDA graph."""
    import torch
    from torch_peer import peer  # benchmarks/torch_peer.py, beside this file

    torch.backends.cudnn.benchmark = True
    dtype = torch.float16 if half else torch.float32
    dev = torch.device("cuda")
    net = peer(folded, dev, dtype, channels_last=half, name=name)
    xt = torch.from_numpy(x).to(dev, dtype)
    if half:
        xt = xt.contiguous(memory_format=torch.channels_last)
    out: dict[str, Any] = {
        "dtype": "fp16" if half else "fp32",
        "channels_last": half,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_conv": bool(torch.backends.cudnn.allow_tf32),
        "torch": torch.__version__,
    }
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(side):
        for _ in range(3):  # cuDNN's algorithm search and the allocator, outside the capture
            ys = net(xt)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    if want is not None:
        out["max_abs_err_vs_onnxruntime"] = max_err([y.float().cpu().numpy() for y in ys], want)
    del ys
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_out = net(xt)
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def timed(n: int, warmup: int) -> list[float]:
        ms = []
        for i in range(warmup + n):
            a.record()
            graph.replay()
            b.record()
            b.synchronize()
            if i >= warmup:
                ms.append(float(a.elapsed_time(b)))
        return ms

    est = float(np.median(timed(3, 3)))
    out["graph"] = summary_us(timed(repeats_for(est, repeats), 5))
    del static_out  # the graph's output, kept alive through the replays
    return out


# -- ONNX Runtime ----------------------------------------------------------------------------


def bench_onnxruntime(
    model: bytes, x: np.ndarray, threads: int, repeats: int, budget_s: float = 1.0
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Host clock of ``InferenceSession.run`` (``threads`` 0: its default, one per core)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    outs = sess.run(None, feed)
    sess.run(None, feed)
    ms: list[float] = []
    start = time.perf_counter()
    while len(ms) < repeats and (len(ms) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        sess.run(None, feed)
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"threads": threads or "default", **summary_us(ms)}, [np.asarray(o) for o in outs]


# -- one model at every batch ------------------------------------------------------------------


def bench_case(
    case: ModelCase, batches: list[int], repeats: int, ev: Any, stream: Any, gpu: Any,
    bw_gbps: float, *, layers: bool = True, torch_fp32: bool = True, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    from engine.inference.net import load_net

    model = case.load()
    net = load_net(model, case.name)
    why_no_torch = torch_available()
    cheap = case.height * case.width <= 640 * 360
    res: dict[str, Any] = {"model": case.name, "kind": case.kind, "size": [case.width, case.height]}
    runs: list[dict[str, Any]] = []
    want: list[np.ndarray] | None = None
    for batch in batches:
        x = pictures(batch, case.height, case.width)
        shape = (batch, 3, case.height, case.width)
        # ONNX Runtime: batch 1 (one thread too where cheap), batch 4 where cheap
        threads_list = (
            ((0, 1) if cheap else (0,)) if batch == 1 else ((0,) if batch == 4 and cheap else ())
        )
        for threads in threads_list:
            try:
                r, outs = bench_onnxruntime(model, x, threads, repeats)
            except Exception as exc:  # a peer failing is a line in the table, not the end
                runs.append({"runtime": "onnxruntime-cpu", "batch": batch, "error": str(exc)})
                continue
            if batch == 1 and threads == 0:
                want = outs
            runs.append({"runtime": f"onnxruntime-cpu-{r['threads']}", "batch": batch, **r})
        ref = want if batch == 1 else None
        plan = net.plan(shape)
        log(f"  {case.label} batch {batch}: LiveFX ({len(plan.steps)} steps)")
        try:
            r = bench_livefx(gpu, ev, stream, plan, x, repeats, bw_gbps, layers, ref)
            runs.append({"runtime": "livefx", "batch": batch, **r["graph"], **r})
        except Exception as exc:
            runs.append(
                {"runtime": "livefx", "batch": batch, "error": f"{type(exc).__name__}: {exc}"}
            )
        if why_no_torch is None:
            folded = net.graph.fold(shape)
            for half in (True, False) if torch_fp32 else (True,):
                label = "torch-fp16-nhwc" if half else "torch-fp32"
                log(f"  {case.label} batch {batch}: PyTorch {label}")
                try:
                    r = bench_torch(folded, case.name, x, half, repeats, ref)
                    _torch_cleanup()  # the graph, its pool and the module, given back
                    runs.append({"runtime": label, "batch": batch, **r["graph"], **r})
                except Exception as exc:
                    runs.append(
                        {"runtime": label, "batch": batch, "error": f"{type(exc).__name__}: {exc}"}
                    )
                    _torch_cleanup()
        gpu.device.make_current()
    for r in runs:
        r.pop("graph", None)
    res["runs"] = runs
    if why_no_torch is not None:
        res["torch_skipped"] = why_no_torch
    res["targets"] = targets(case, runs)
    return res


def _torch_cleanup() -> None:
    try:
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    except Exception:
        pass


# -- targets and tables ------------------------------------------------------------------------


def _find(runs: list[dict[str, Any]], runtime: str, batch: int) -> dict[str, Any] | None:
    for r in runs:
        if r["runtime"] == runtime and r["batch"] == batch and "median_us" in r:
            return r
    return None


def targets(case: ModelCase, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's model targets (segmenters only), met or not, from this run's figures."""
    if case.name not in SEGMENTERS:
        return []
    out: list[dict[str, Any]] = []

    def add(what: str, value: float | None, limit: float, unit: str = "µs") -> None:
        met = None if value is None else value <= limit
        out.append({"target": what, "value": value, "limit": limit, "unit": unit, "met": met})

    b1, b16 = _find(runs, "livefx", 1), _find(runs, "livefx", 16)
    add("segmenter at batch 1 ≤ 60 µs (median)", b1["median_us"] if b1 else None, 60.0)
    add(
        "segmenter at batch 16 ≤ 10 µs per frame (median ÷ 16)",
        b16["median_us"] / 16 if b16 else None,
        10.0,
    )
    for batch in sorted({r["batch"] for r in runs}):
        lf, pt = _find(runs, "livefx", batch), _find(runs, "torch-fp16-nhwc", batch)
        ratio = lf["median_us"] / pt["median_us"] if lf and pt else None
        add(f"faster than PyTorch fp16 + cuDNN, CUDA graph, batch {batch} (LiveFX ÷ PyTorch)",
            ratio, 1.0, "×")  # fmt: skip
    return out


def met_word(met: bool | None) -> str:
    return "not measured" if met is None else ("met" if met else "NOT MET")


def print_case(res: dict[str, Any], gpu_name: str, bw_gbps: float, layer_batches: set[int]) -> None:
    w, h = res["size"]
    print(f"\n{res['model']} {w}×{h} ({res['kind']}), {gpu_name}")
    if res.get("torch_skipped"):
        print(f"  PyTorch peer skipped: {res['torch_skipped']}")
    print(
        f"  {'runtime':<26}{'batch':>6}{'median µs':>12}{'p95 µs':>11}{'µs/frame':>11}"
        f"{'LiveFX ÷':>10}{'err vs ORT':>12}"
    )
    runs = res["runs"]
    for r in runs:
        if "error" in r:
            print(f"  {r['runtime']:<26}{r['batch']:>6}  failed: {r['error'][:160]}")
            continue
        lf = _find(runs, "livefx", r["batch"])
        ratio = f"{lf['median_us'] / r['median_us']:.2f}" if lf and r["runtime"] != "livefx" else ""
        err = r.get("max_abs_err_vs_onnxruntime")
        err_s = f"{err:.2e}" if err is not None else ""
        print(
            f"  {r['runtime']:<26}{r['batch']:>6}{r['median_us']:>12.1f}{r['p95_us']:>11.1f}"
            f"{r['median_us'] / r['batch']:>11.1f}{ratio:>10}{err_s:>12}"
        )
    for r in runs:
        if r["runtime"] == "livefx" and "layers" in r and r["batch"] in layer_batches:
            print_layers(r, bw_gbps)
    for t in res["targets"]:
        v = "-" if t["value"] is None else f"{t['value']:.2f} {t['unit']}"
        print(f"  target: {t['target']}: {v} → {met_word(t['met'])}")


def print_layers(r: dict[str, Any], bw_gbps: float) -> None:
    print(
        f"  per layer, batch {r['batch']} (each launch ×{r['layers'][0]['per_graph']} in one "
        f"graph, ÷{r['layers'][0]['per_graph']}; copy bandwidth {bw_gbps:.0f} GB/s):"
    )
    print(
        f"    {'#':>3} {'kernel':<16}{'µs':>9}{'p95':>8}{'bytes':>12}{'GB/s':>8}{'÷copy':>7}"
        f"{'MMACs':>9}{'GFLOP/s':>9}  nodes"
    )
    for row in r["layers"]:
        of = row["of_copy_bw"]
        print(
            f"    {row['step']:>3} {row['kernel'].removeprefix('lfx_net_'):<16}"
            f"{row['median_us']:>9.2f}{row['p95_us']:>8.2f}{row['bytes']:>12}{row['GBps']:>8.0f}"
            f"{(f'{of:.2f}' if of is not None else '-'):>7}{row['macs'] / 1e6:>9.2f}"
            f"{row['GFLOPs']:>9.0f}  {row['what'][:60]}"
        )
    print(
        f"    sum of layers {r['layers_sum_us']:.1f} µs; whole graph {r['median_us']:.1f} µs "
        f"({r['macs'] / 1e6:.1f} MMACs, {r['bytes']} bytes at the least)"
    )
