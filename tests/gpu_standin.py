"""A stand-in for cuda-python's driver module, for machines with no GPU: device memory is host
memory, and a launch of one of the net kernels (``lfx_net_*``) runs the host build of the same
per-element code (build/liblfx_host.so), instantiated as the GPU's is (fp16 weights), on the
struct bytes the launch was given.

It is not a GPU. What it proves is the part of the GPU executor that is Python: that
``engine.gpu.net`` packs each launch's ``Step`` and ``Ptrs`` structs and device addresses right,
in the right order, through ``Module.launch`` and ``cuLaunchKernel``'s parameter array, and
through stream capture and graph replay. Any other kernel name raises. Used by
tests/test_gpu_standin.py in a child process (``python -m tests.gpu_standin``), so that the fake
module never meets the real one.
"""

from __future__ import annotations

import ctypes
import enum
import sys
import time
import types
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

OK = 0


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_NOT_FOUND = 500


class StandIn(types.ModuleType):
    """The calls engine.gpu makes, on host memory."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        super().__init__("cuda.bindings.driver")
        self.lib = lib
        self.CUresult = CUresult
        self.CUdevice_attribute = types.SimpleNamespace(
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR=75,
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR=76,
        )
        self.CUstream_flags = types.SimpleNamespace(CU_STREAM_NON_BLOCKING=1)
        self.CUstreamCaptureMode = types.SimpleNamespace(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL=1)
        self.CUfunction_attribute = types.SimpleNamespace(
            CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES=8
        )
        self.memory: dict[int, np.ndarray] = {}
        self.capturing: dict[Any, list[Callable[[], None]]] = {}
        self.launches: list[str] = []

    # -- device, context, stream --------------------------------------------------------------

    def cuInit(self, flags: int) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuGetErrorName(self, status: Any) -> tuple[CUresult, bytes]:
        return CUresult.CUDA_SUCCESS, str(status).encode()

    def cuDeviceGetCount(self) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, 1

    def cuDeviceGet(self, ordinal: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, ordinal

    def cuDevicePrimaryCtxRetain(self, dev: int) -> tuple[CUresult, str]:
        return CUresult.CUDA_SUCCESS, "context"

    def cuCtxSetCurrent(self, ctx: Any) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuDeviceGetName(self, n: int, dev: int) -> tuple[CUresult, bytes]:
        return CUresult.CUDA_SUCCESS, b"stand-in (the host build)\0"

    def cuDeviceGetAttribute(self, attr: int, dev: int) -> tuple[CUresult, int]:
        return CUresult.CUDA_SUCCESS, 9 if attr == 75 else 0

    def cuStreamCreate(self, flags: int) -> tuple[CUresult, object]:
        return CUresult.CUDA_SUCCESS, object()

    def cuStreamSynchronize(self, stream: Any) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamDestroy(self, stream: Any) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    # -- memory --------------------------------------------------------------------------------

    def cuMemAlloc(self, nbytes: int) -> tuple[CUresult, int]:
        buf = np.empty(nbytes + 256, np.uint8)
        ptr = (buf.ctypes.data + 255) // 256 * 256  # cudaMalloc's alignment
        self.memory[ptr] = buf
        return CUresult.CUDA_SUCCESS, ptr

    def cuMemFree(self, ptr: int) -> tuple[CUresult]:
        self.memory.pop(int(ptr), None)
        return (CUresult.CUDA_SUCCESS,)

    def _run(self, stream: Any, fn: Callable[[], None]) -> tuple[CUresult]:
        if stream is not None and stream in self.capturing:
            self.capturing[stream].append(fn)
        else:
            fn()
        return (CUresult.CUDA_SUCCESS,)

    def cuMemcpyHtoD(self, dst: int, src: int, n: int) -> tuple[CUresult]:
        ctypes.memmove(int(dst), int(src), n)
        return (CUresult.CUDA_SUCCESS,)

    cuMemcpyDtoH = cuMemcpyHtoD

    def cuMemcpyHtoDAsync(self, dst: int, src: int, n: int, stream: Any) -> tuple[CUresult]:
        return self._run(stream, lambda: ctypes.memmove(int(dst), int(src), n))

    cuMemcpyDtoHAsync = cuMemcpyHtoDAsync

    def cuMemcpyDtoDAsync(self, dst: int, src: int, n: int, stream: Any) -> tuple[CUresult]:
        return self._run(stream, lambda: ctypes.memmove(int(dst), int(src), n))

    # -- events: the host clock at the point the stream reaches them (the stand-in runs
    # everything as it is issued) --------------------------------------------------------------

    def cuEventCreate(self, flags: int) -> tuple[CUresult, list[float]]:
        return CUresult.CUDA_SUCCESS, [0.0]

    def cuEventRecord(self, event: list[float], stream: Any) -> tuple[CUresult]:
        return self._run(stream, lambda: event.__setitem__(0, time.perf_counter()))

    def cuEventSynchronize(self, event: list[float]) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuEventElapsedTime(self, a: list[float], b: list[float]) -> tuple[CUresult, float]:
        return CUresult.CUDA_SUCCESS, (b[0] - a[0]) * 1e3

    def cuEventDestroy(self, event: list[float]) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamWaitEvent(self, stream: Any, event: list[float], flags: int) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)  # what was issued before the event has run already

    def cuMemsetD8(self, ptr: int, value: int, n: int) -> tuple[CUresult]:
        ctypes.memset(int(ptr), value, n)
        return (CUresult.CUDA_SUCCESS,)

    # -- modules, launches, graphs -------------------------------------------------------------

    def cuModuleLoadData(self, image: bytes) -> tuple[CUresult, str]:
        return CUresult.CUDA_SUCCESS, "module"

    def cuModuleGetFunction(self, module: Any, name: bytes) -> tuple[CUresult, str]:
        return CUresult.CUDA_SUCCESS, name.decode()

    def cuMemHostAlloc(self, nbytes: int, flags: int) -> tuple[CUresult, int]:
        return self.cuMemAlloc(nbytes)

    cuMemFreeHost = cuMemFree

    def cuMemsetD32Async(self, ptr: int, value: int, n: int, stream: Any) -> tuple[CUresult]:
        words = np.full(n, value, np.uint32)
        return self._run(stream, lambda: ctypes.memmove(int(ptr), words.ctypes.data, 4 * n))

    def cuFuncSetAttribute(self, fn: str, attr: int, value: int) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    def cuLaunchKernel(self, fn: str, *dims_smem_stream_params_extra: Any) -> tuple[CUresult]:
        gx, gy, gz, _, _, _, _, stream, params, _ = dims_smem_stream_params_extra
        from tests import gpu_standin_frame as frame

        if fn in frame.SIGNATURES:
            args = frame.read_args(fn, params)  # copied now, as the driver does

            def run_frame() -> None:
                self.launches.append(fn)
                frame.run(fn, (gx, gy, gz), args)

            return self._run(stream, run_frame)
        if not fn.startswith("lfx_net_"):
            raise NotImplementedError(f"the stand-in has no {fn}")
        from engine.inference.net.plan import NetPtrs, NetStep

        # The parameter array holds the address of each argument: copy them now, as the driver
        # does at a launch and at capture.
        args = (ctypes.c_void_p * 2).from_address(params)
        step = NetStep.from_buffer_copy(ctypes.string_at(args[0], ctypes.sizeof(NetStep)))
        ptrs = NetPtrs.from_buffer_copy(ctypes.string_at(args[1], ctypes.sizeof(NetPtrs)))
        want = f"lfx_net_{_KINDS[step.kind]}"
        if want != fn:
            raise AssertionError(f"{fn} launched with a {want} step")
        if gz != step.n:
            raise AssertionError(f"{fn}: grid z {gz} for a batch of {step.n}")

        def run() -> None:
            self.launches.append(fn)
            if self.lib.lfx_net_step_f16w(ctypes.byref(step), ctypes.byref(ptrs)) != 0:
                raise AssertionError(f"{fn}: the host build refused the step")

        return self._run(stream, run)

    def cuStreamBeginCapture(self, stream: Any, mode: int) -> tuple[CUresult]:
        self.capturing[stream] = []
        return (CUresult.CUDA_SUCCESS,)

    def cuStreamEndCapture(self, stream: Any) -> tuple[CUresult, list[Callable[[], None]]]:
        return CUresult.CUDA_SUCCESS, self.capturing.pop(stream)

    def cuGraphInstantiate(self, graph: Any, flags: int) -> tuple[CUresult, Any]:
        return CUresult.CUDA_SUCCESS, list(graph)

    def cuGraphDestroy(self, graph: Any) -> tuple[CUresult]:
        return (CUresult.CUDA_SUCCESS,)

    cuGraphExecDestroy = cuGraphDestroy

    def cuGraphLaunch(self, exe: list[Callable[[], None]], stream: Any) -> tuple[CUresult]:
        for fn in exe:
            fn()
        return (CUresult.CUDA_SUCCESS,)


_KINDS = {
    1: "conv",
    2: "convt",
    3: "pool",
    4: "gap",
    5: "se",
    6: "eltwise",
    7: "resize",
    8: "d2s",
    9: "pad",
    10: "concat",
}


def install(lib: ctypes.CDLL) -> StandIn:
    """Put the stand-in where ``from cuda.bindings import driver`` finds it (before engine.gpu
    is imported)."""
    fake = StandIn(lib)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.driver = fake  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    sys.modules.update({"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.driver": fake})
    return fake


def standin_gpu(lib: ctypes.CDLL) -> tuple[StandIn, Any]:
    """The stand-in installed, and an ``engine.gpu.module.Gpu`` on it."""
    import tempfile

    fake = install(lib)
    from engine.gpu import driver as cd
    from engine.gpu.module import Gpu, Module

    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "livefx.fatbin"
        image.write_bytes(b"stand-in")
        gpu = Gpu.__new__(Gpu)
        gpu.device = cd.Device()
        gpu.module = Module(gpu.device, fatbin=image)
    return fake, gpu


def bench_main(argv: list[str]) -> int:
    """``benchmarks/gpu.py`` run through on the stand-in with the arguments given: every
    section's code (graphs, events, the copy bandwidth, the per-layer graphs, the frame's
    graph, the tables and the JSON) runs, so that a lent GPU's minutes are not spent on a
    mistake in Python. Its figures are the host build's, not a GPU's."""
    import engine.pipeline.backend as backend
    from engine.inference.net.host import library

    _, gpu = standin_gpu(library())
    from engine.gpu.module import Gpu

    Gpu._shared = gpu
    ok = backend.GpuStatus(None, gpu.device.name, gpu.module.source)
    backend.gpu_status = lambda: ok  # type: ignore[assignment]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import gpu as benchmark  # benchmarks/gpu.py

    return int(benchmark.main(argv))


def main() -> int:
    """Every op case and the shipped segmenters through engine.gpu.net on the stand-in,
    against the host build run directly (engine.inference.net.host): the same numbers."""

    from engine.inference.net import load_net
    from engine.inference.net.host import HostNet, library

    lib = library()
    fake, gpu = standin_gpu(lib)
    from engine.gpu import driver as cd
    from engine.gpu import memory
    from engine.gpu.net import DeviceNet, GpuSegmenter
    from engine.models.registry import load_model
    from tests import test_net_ops

    stream = cd.Stream()
    rng = np.random.default_rng(5)
    failures = []
    for name, case in sorted(test_net_ops.CASES.items()):
        g, outputs, _ = case()
        plan = load_net(g.model(outputs), name).plan(g.shape)
        x = rng.uniform(0, 1, g.shape).astype(np.float32)
        want = HostNet(plan, lib).run(x)
        net = DeviceNet(gpu, plan)
        net.poison(0xFF)
        got = net.run(x, stream)
        for o in outputs:
            if not np.array_equal(got[o], want[o]):
                failures.append(f"{name}: {o} differs")
        print(f"{name}: {len(plan.steps)} launches, outputs equal")
    # A segmenter the way the cuda pipeline runs it: its launches captured in a graph.
    for model, shape in (("general", (1, 3, 256, 256)), ("landscape", (2, 3, 144, 256))):
        seg = GpuSegmenter(gpu, load_model(model), model, shape)
        x = rng.uniform(0, 1, shape).astype(np.float32)
        cd.check(fake.cuMemsetD8(seg.net.arena.ptr, 0xFF, seg.net.arena.nbytes), "memset")
        ctypes.memmove(seg.d_input, x.ctypes.data, x.nbytes)
        ctypes.memset(seg.gate.ptr, 1, 1)  # the frame's gate open: the model runs
        exe = memory.capture(stream, seg.ops(stream))
        before = len(fake.launches)
        memory.launch_graph(exe, stream, "model")
        mask = np.empty(seg.output.shape, np.float32)
        ctypes.memmove(mask.ctypes.data, seg.d_output, mask.nbytes)
        want = HostNet(seg.plan, lib).run(x)["mask"]
        if len(fake.launches) - before != len(seg.plan.steps) or not np.array_equal(mask, want):
            failures.append(f"{model}: the captured graph's mask differs")
        print(f"{model} {shape}: graph of {len(seg.plan.steps)} launches, mask equal")
        seg.close()
    failures += pipeline_frames(gpu)
    failures += gate_frames(gpu)
    failures += reconfigured_frames(gpu)
    failures += batched_frames(gpu)
    for f in failures:
        print("FAIL", f)
    return 1 if failures else 0


def pipeline_frames(gpu: Any) -> list[str]:
    """The cuda pipeline on the stand-in against the cpu pipeline, every effect: every op of
    the frame's graph (or, with ONNX Runtime, both graphs and the host copies between)."""
    from engine.config import EffectConfig, ModelConfig, PipelineConfig
    from engine.pipeline import Pipeline
    from engine.pipeline.cuda_pipeline import CudaPipeline
    from engine.samples import composited_clip

    failures = []
    cases = [
        # The generators run on the net kernels' host build (one thread per output element, on
        # one core), so the GAN cases take a small generator size; the frames stay large. In
        # turn: Y guided and U, V resampled; Y, U, V guided; every plane resampled (full size).
        ((640, 360), EffectConfig(name="gan", model="cartoon", gan_size=180), "kernels"),
        ((1920, 1080), EffectConfig(name="gan", model="enhance", gan_size=144), "kernels"),
        ((321, 239), EffectConfig(name="gan", model="cartoon", gan_size=0), "kernels"),
        (
            (1280, 720),
            EffectConfig(name="gan", model="enhance", region="person", gan_size=180),
            "kernels",
        ),
        ((1280, 720), EffectConfig(name="blur"), "kernels"),
        ((641, 479), EffectConfig(name="blur", strength=1.0), "kernels"),
        ((1280, 720), EffectConfig(name="colour"), "kernels"),
        ((1280, 720), EffectConfig(name="replace"), "kernels"),
        ((641, 479), EffectConfig(name="mask"), "kernels"),
        ((1280, 720), EffectConfig(name="none"), "kernels"),
        ((1280, 720), EffectConfig(name="blur"), "onnxruntime"),
    ]
    import tempfile

    from engine.samples import write_clip

    tmp = tempfile.mkdtemp()
    video = write_clip(f"{tmp}/background.mp4", "cameraman", 320, 240, 6)
    cases.append(((640, 480), EffectConfig(name="replace", background=str(video)), "kernels"))
    for (w, h), effect, runtime in cases:
        frames = composited_clip(w, h, 2, noise=2.0).frames
        cfg = PipelineConfig(
            effect=effect, model=ModelConfig(person_model="off"), model_runtime=runtime
        )
        gpu_p = CudaPipeline(replace(cfg, backend="cuda"), gpu=gpu)
        cpu_p = Pipeline(replace(cfg, backend="cpu"))
        worst = 99.0
        for f in frames + (frames if effect.background else []):  # a video moves each frame
            g = gpu_p.process(f)
            c = cpu_p.process(f)
            for a, b in ((g.y, c.y), (g.u, c.u), (g.v, c.v)):
                mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
                worst = min(worst, 99.0 if mse == 0 else 10 * np.log10(255**2 / mse))
        graphs = list(gpu_p.chain._graphs) if gpu_p.chain else []
        gpu_p.close()
        cpu_p.close()
        label = f"{effect.name} {w}×{h} {runtime}" + (" video" if effect.background else "")
        if effect.name == "gan":
            label += f" {effect.model} region {effect.region} gan_size {effect.gan_size}"
        print(f"{label}: {len(graphs)} graph(s), worst plane PSNR {worst:.1f} dB against cpu")
        if worst < 35.0 or len(graphs) != (1 if runtime == "kernels" else 2):
            failures.append(f"{label}: PSNR {worst:.1f} dB, graphs {graphs}")
    return failures


def gate_frames(gpu: Any) -> list[str]:
    """The frame's gate on the device against the cpu pipeline's static-frame and scene-cut
    tests: the same frames run the model, reuse its mask and cut the scene, at the quality
    levels that allow it (skip-static; every second frame and skip-static)."""
    from engine.config import EffectConfig, ModelConfig, PipelineConfig
    from engine.pipeline import Pipeline
    from engine.pipeline.cuda_pipeline import CudaPipeline
    from engine.samples import composited_clip

    a = composited_clip(640, 480, 4, noise=0.0, background="rocket").frames
    b = composited_clip(640, 480, 3, noise=0.0, background="coffee", seed=1).frames
    frames = [a[0], a[0], a[0], a[1], a[2], b[0], b[0], b[1], a[3], a[3]]
    failures = []
    for level in (0, 1, 3):
        cfg = PipelineConfig(
            effect=EffectConfig(name="blur"), model=ModelConfig(person_model="off")
        )
        gpu_p = CudaPipeline(replace(cfg, backend="cuda"), gpu=gpu)
        cpu_p = Pipeline(replace(cfg, backend="cpu"))
        for p in (gpu_p, cpu_p):
            p.budget.index = level  # no budget set: the level stays
        for f in frames:
            gpu_p.process(f)
            cpu_p.process(f)
        counts = [
            (p.session.inferences, p.session.reused, p.session.scene_cuts) for p in (gpu_p, cpu_p)
        ]
        name = gpu_p.quality.name
        gpu_p.close()
        cpu_p.close()
        print(f"gate at {name}: (inferences, reused, scene cuts) cuda {counts[0]}, cpu {counts[1]}")
        if counts[0] != counts[1]:
            failures.append(f"gate at {name}: {counts}")
    return failures


def reconfigured_frames(gpu: Any) -> list[str]:
    """A live session switching generators (same size, same settings key: a user's copy of
    enhance after cartoon) gets the new generator's picture, not a stale graph's."""
    import shutil
    import tempfile

    from engine.config import EffectConfig, ModelConfig, PipelineConfig
    from engine.models.registry import GENERATORS
    from engine.pipeline import Pipeline
    from engine.pipeline.cuda_pipeline import CudaPipeline
    from engine.samples import composited_clip

    mine = Path(tempfile.mkdtemp()) / "mine.onnx"
    shutil.copy(GENERATORS["enhance"].path, mine)
    frames = composited_clip(640, 360, 2, noise=2.0).frames
    off = ModelConfig(person_model="off")
    first = PipelineConfig(effect=EffectConfig(name="gan", model="cartoon"), model=off)
    then = PipelineConfig(effect=EffectConfig(name="gan", model=str(mine)), model=off)
    gpu_p = CudaPipeline(replace(first, backend="cuda"), gpu=gpu)
    cpu_p = Pipeline(replace(first, backend="cpu"))
    gpu_p.process(frames[0])
    cpu_p.process(frames[0])
    gpu_p.reconfigure(replace(then, backend="cuda"))
    cpu_p.reconfigure(replace(then, backend="cpu"))
    g, c = gpu_p.process(frames[1]), cpu_p.process(frames[1])
    mse = float(np.mean((g.y.astype(float) - c.y.astype(float)) ** 2))
    db = 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)
    gpu_p.close()
    cpu_p.close()
    print(f"gan reconfigured cartoon → {mine.name}: Y PSNR {db:.1f} dB against cpu")
    return [] if db >= 35.0 else [f"reconfigured generator: {db:.1f} dB"]


def batched_frames(gpu: Any) -> list[str]:
    """Three sessions' cuda pipelines on threads with their segmenter on the shared GPU worker
    (engine.gpu.batch: their inputs copied into one batch, one graph, the masks copied back)
    against the same sessions each with the model inside its own one-graph frame: the same
    frames, bit for bit, and the worker did batch."""
    from engine.config import EffectConfig, ModelConfig, PipelineConfig
    from engine.gpu.batch import SharedGpuModels
    from engine.pipeline.cuda_pipeline import CudaPipeline
    from engine.samples import composited_clip
    from tests.sessions import run_sessions

    effects = [EffectConfig(name="blur"), EffectConfig(name="colour"), EffectConfig(name="mask")]
    clips = [composited_clip(320, 240, 3, noise=2.0, seed=k).frames for k in range(3)]
    off = ModelConfig(person_model="off")

    def run(models: Any) -> list[list[bytes]]:
        pipes = [
            CudaPipeline(
                PipelineConfig(effect=e, model=off, backend="cuda"), gpu=gpu, models=models
            )
            for e in effects
        ]
        # The sessions' frames come together: a batch.
        outs = run_sessions(pipes, clips, lockstep=True, join_s=300)
        if models is not None and not all(p.batched for p in pipes):
            raise AssertionError("a pipeline did not take the shared GPU worker")
        for p in pipes:
            p.close()
        return outs

    own = run(None)
    # The stand-in's frame kernels are NumPy, far slower than a GPU's, so the three sessions'
    # inputs come further apart than the server's 2 ms wait: the wait is scaled with them.
    import engine.inference.batch as batching

    batching.WAIT_MS = 50.0
    models = SharedGpuModels(gpu, wait_ms=50.0)
    stats: list[dict[str, Any]] = []
    orig_close = models.release

    def keep_stats(key: Any) -> None:  # the runner's figures before the last session ends it
        stats[:] = models.stats() or stats
        orig_close(key)

    models.release = keep_stats  # type: ignore[method-assign]
    shared = run(models)
    largest = max((st["largest_batch"] for st in stats), default=0)
    same = shared == own
    print(f"batched on the shared GPU worker: largest batch {largest}, frames equal: {same}")
    failures = []
    if not same:
        failures.append("shared GPU worker: frames differ from each session's own model")
    if largest < 2:
        failures.append(f"shared GPU worker did not batch: {stats}")
    return failures


if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else main())
