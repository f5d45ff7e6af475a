"""The shared inference worker on the GPU: one segmenter on the net kernels for every session's
cuda pipeline, its sessions' inputs run as one batch, one graph launch per batch.

A session's frame (``CudaPipeline`` with ``models``) runs as two graphs on its own stream with
the model between them, never waiting on the host in the middle:

    session stream:  [pre graph: upload … preprocess → d_input]  ● ready ──┐          ┌─ wait
    worker stream:                          wait ready, d_input → slot i ─┴ [batch graph]
                                             slot i → d_output ● done ─────────────────┘
    session stream:                                     [post graph: refine … download]

``GpuBatchedSegmenter.enqueue`` (the session's pool worker) records ``ready`` on the session's
stream and hands the request to the worker thread (or, with one session attached, issues it on
its own thread), which gathers the requests waiting (up to ``wait_ms`` while other sessions are
still to come, as the CPU's ``engine.inference.batch``), issues the copies and the graph of
the smallest planned batch (1, 2, 4, 8, 16) that holds them, and records ``done``; the
session's stream waits for ``done`` before its post graph. The net kernels compute each
batch item alone (``gridDim.z``), so a session's mask is the same, bit for bit, at any batch
size (``tests/test_gpu_net.py``).

The frame's gate (static frame, scene cut) is not in this path: the budget's ``infer_every`` is
decided on the host (as with TensorRT), and a static frame's model runs in the batch anyway.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from engine.errors import BackendError, ModelError
from engine.gpu import driver as cd
from engine.gpu import memory
from engine.gpu.module import Gpu
from engine.inference.batch import Batcher, Runners

log = logging.getLogger(__name__)
cu = cd.cu

BATCHES = (1, 2, 4, 8, 16)
WAIT_MS = 2.0
EVENTS = 64  # the worker's ring of batch-done events
EVENT_DISABLE_TIMING = 2  # CU_EVENT_DISABLE_TIMING


def _event() -> Any:
    return cd.check(cu.cuEventCreate(EVENT_DISABLE_TIMING), "cuEventCreate")


class GpuBatchRunner(Batcher):
    """One segmenter at one input size on the GPU, shared by the sessions' cuda pipelines."""

    def __init__(
        self, gpu: Gpu, model: bytes, label: str, shape: tuple[int, int, int], wait_ms: float
    ) -> None:
        from engine.inference.net import load_net

        self.gpu, self.label, self.shape = gpu, label, tuple(shape)
        self.net = load_net(model, label)
        c, h, w = shape
        probe = self.net.plan((1, c, h, w))
        if probe.shapes[probe.outputs[0]] != (1, 1, h, w):
            raise ModelError(f"{label}: mask {probe.shapes[probe.outputs[0]]} is not {w}×{h}")
        self.in_bytes, self.out_bytes = 4 * c * h * w, 4 * h * w
        gpu.device.make_current()
        self.stream = cd.Stream()
        self._events = [_event() for _ in range(EVENTS)]
        self._ring = 0
        self._nets: dict[int, Any] = {}  # batch → DeviceNet
        self._graphs: dict[int, Any] = {}  # batch → instantiated graph
        super().__init__(f"gpu {label} {w}×{h}", BATCHES[-1], wait_ms)
        self.start()

    def _graph(self, batch: int) -> tuple[Any, Any]:
        """The DeviceNet planned for ``batch`` and its launches as one graph (made once)."""
        if batch not in self._nets:
            from engine.gpu.net import DeviceNet

            c, h, w = self.shape
            net = DeviceNet(self.gpu, self.net.plan((batch, c, h, w)))
            self._nets[batch] = net
            self._graphs[batch] = memory.capture(self.stream, net.ops(self.stream))
        return self._nets[batch], self._graphs[batch]

    def on_worker(self) -> None:
        self.gpu.device.make_current()

    def serve(self, segs: list[Any]) -> None:
        """The inputs into one batch, its graph, the masks back; ``done`` recorded after."""
        batch = next(b for b in BATCHES if b >= len(segs))
        net, exe = self._graph(batch)
        s = self.stream.handle
        d_in, d_out = net.ptr(net.plan.input), net.ptr(net.plan.outputs[0])
        for i, seg in enumerate(segs):
            cd.check(cu.cuStreamWaitEvent(s, seg.ready, 0), "cuStreamWaitEvent")
            cd.check(
                cu.cuMemcpyDtoDAsync(d_in + i * self.in_bytes, seg.d_input, self.in_bytes, s),
                "cuMemcpyDtoDAsync",
            )
        memory.launch_graph(exe, self.stream, f"{self.label} batch {batch}")
        for i, seg in enumerate(segs):
            cd.check(
                cu.cuMemcpyDtoDAsync(seg.d_output, d_out + i * self.out_bytes, self.out_bytes, s),
                "cuMemcpyDtoDAsync",
            )
        # A ring of events: a session waits on its batch's (a re-record is of a later batch on
        # the same stream, so a late wait is never too early).
        self._ring += 1
        done = self._events[self._ring % len(self._events)]
        cd.check(cu.cuEventRecord(done, s), "cuEventRecord")
        for seg in segs:
            seg.done = done

    def close(self) -> None:
        self.stop()
        self.stream.synchronize()
        memory.destroy_graphs(self._graphs)
        for net in self._nets.values():
            net.close()
        self._nets.clear()
        for ev in self._events:
            cu.cuEventDestroy(ev)
        self.stream.close()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "input": list(self.shape), "device": "cuda", "batching": True}


class GpuBatchedSegmenter:
    """A session's side of a ``GpuBatchRunner``: its model input and mask on the device (the
    frame chain writes ``d_input``, reads ``d_output``) and ``enqueue()`` between its two graphs
    (the ``model_io`` contract of the TensorRT backend). ``run()`` (tools, tests): the host's
    ``input`` through the batch, ``output`` back."""

    name = "kernels (shared, batched)"

    def __init__(self, runner: GpuBatchRunner, stream: cd.Stream, release: Any) -> None:
        c, h, w = runner.shape
        self.runner, self.stream, self._release = runner, stream, release
        self._in, self._out = cd.DeviceBuffer(runner.in_bytes), cd.DeviceBuffer(runner.out_bytes)
        self.d_input, self.d_output = self._in.ptr, self._out.ptr
        self.ready = _event()
        self.done: Any = None  # the event of the batch that took the last input
        self.input = np.zeros((1, c, h, w), np.float32)
        self.output = np.zeros((1, 1, h, w), np.float32)
        self.gate = None  # no device gate on this path

    def enqueue(self) -> None:
        s = self.stream.handle
        cd.check(cu.cuEventRecord(self.ready, s), "cuEventRecord")
        self.runner.submit(self)
        cd.check(cu.cuStreamWaitEvent(s, self.done, 0), "cuStreamWaitEvent")

    def run(self) -> np.ndarray:
        a = np.ascontiguousarray(self.input, np.float32)
        cd.check(cu.cuMemcpyHtoD(self.d_input, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")
        self.enqueue()
        self.stream.synchronize()
        cd.check(cu.cuMemcpyDtoH(self.output.ctypes.data, self.d_output, self.output.nbytes),
                 "cuMemcpyDtoH")  # fmt: skip
        return self.output

    def close(self) -> None:
        if self._in.handle is None:
            return
        self.stream.synchronize()
        self._in.close()
        self._out.close()
        cu.cuEventDestroy(self.ready)
        self._release()


class SharedGpuModels(Runners):
    """The GPU's shared segmenters, by model and input size; a runner ends with its last
    session."""

    def __init__(self, gpu: Gpu | None = None, *, wait_ms: float = WAIT_MS) -> None:
        super().__init__()
        self.gpu = gpu
        self.wait_ms = wait_ms

    def backend(
        self, model: bytes, label: str, shape: tuple[int, ...], stream: cd.Stream
    ) -> GpuBatchedSegmenter:
        import hashlib

        if len(shape) != 4 or shape[0] != 1:
            raise BackendError(f"shared GPU model {label}: input {shape}, expected (1, C, H, W)")
        key = (hashlib.sha256(model).hexdigest(), tuple(shape[1:]))
        c, h, w = shape[1:]
        runner = self._acquire(
            key,
            lambda: GpuBatchRunner(self.gpu or Gpu.shared(), model, label, (c, h, w), self.wait_ms),
        )
        return GpuBatchedSegmenter(runner, stream, lambda: self.release(key))
