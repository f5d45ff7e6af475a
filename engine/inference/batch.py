"""The shared inference worker: one per model, input size and device, for every session.

Sessions hand their model input to the worker (``BatchedBackend.run``, in the pipeline's place of
its own ONNX Runtime session); the worker runs every input it holds as one batch and hands each
session its own output. Per-session state (temporal smoothing, the budget level) stays in each
session's pipeline: only the model's forward pass is shared.

When to run: when a single session uses the worker, its input runs at once on the session's own
thread (no hand-off, the same session a batch of one runs on); when every session that uses it
has an input waiting, at once on the worker; otherwise the worker waits up to ``wait_ms`` (≤ 2
ms) for the others' inputs. Adaptive: when waiting stops gathering anything (the sessions'
frames arrive out of phase), the worker stops waiting, and tries again every ``PROBE_EVERY``
batches.

On the CPU the batch is ONNX Runtime's batch dimension: the shipped segmenter's CPU graph with its
batch made symbolic, and one ONNX Runtime session per batch size met with that size fixed, so
each is optimised as a graph of that batch would be. A session's mask is the same, bit for bit,
alone, in a batch of any size, and on a session's own model without the worker
(``tests/test_scaling.py``), and a batch of one costs what the own model does. A model whose
graph cannot take a batch (or a machine without ``onnx``) runs the inputs one after another.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import BackendError, ModelError

log = logging.getLogger(__name__)

MAX_BATCH = 16
WAIT_MS = 2.0
PROBE_EVERY = 32  # batches between tries at waiting, once waiting stopped paying


def symbolic_batch(model: bytes) -> bytes:
    """``model`` with its inputs' and outputs' first dimension named ``N`` (any batch)."""
    import onnx

    g = onnx.load_from_string(model)
    for t in list(g.graph.input) + list(g.graph.output):
        dims = t.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    del g.graph.value_info[:]  # shapes inferred again, with the symbolic batch
    return bytes(g.SerializeToString())


@dataclass
class Request:
    """One session's input for a batch: ``item`` is the runner's (arrays, device buffers)."""

    item: Any
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Batcher:
    """The queue and the thread of a shared worker: sessions ``submit`` an item and wait; the
    thread gathers the items waiting (the adaptive wait above) and hands them to ``serve``,
    which a runner defines (ONNX Runtime here, the GPU in ``engine.gpu.batch``); an error it
    raises reaches every session of that batch. ``users``: the sessions attached."""

    def __init__(self, name: str, max_batch: int, wait_ms: float) -> None:
        self.name = name
        self.max_batch = max_batch
        self.wait_s = max(0.0, min(wait_ms, WAIT_MS)) / 1e3
        self._cond = threading.Condition()
        self._queue: deque[Request] = deque()
        self._closed = False
        self.users = 0
        self.batches = 0
        self.inputs = 0
        self.largest = 0
        self.waits = 0
        self.alone = 0  # inputs run on their own thread, one session attached
        self._gain = 1.0  # inputs gathered per wait (moving average)
        self._since_probe = 0
        self._thread: threading.Thread | None = None
        self._serving = threading.Lock()  # one batch at a time (the worker's, or one alone)

    def start(self) -> None:
        """Start the worker thread (once the runner is set up)."""
        self._thread = threading.Thread(target=self._work, name=f"livefx-{self.name}", daemon=True)
        self._thread.start()

    def serve(self, items: list[Any]) -> None:
        """Run one batch (the worker thread)."""
        raise NotImplementedError

    def on_worker(self) -> None:
        """Called once on the worker thread before the first batch."""

    # -- the sessions' side ---------------------------------------------------------------------

    def submit(self, item: Any) -> None:
        """Hand ``item`` to the worker; return once its batch is served; raise its error.
        Alone (one session attached) it is served here, on the caller's thread: no hand-off."""
        if self.users <= 1:
            with self._serving:
                self.serve([item])
                self.alone += 1
            return
        req = Request(item)
        with self._cond:
            if self._closed:
                raise BackendError(f"shared model {self.name} is closed")
            self._queue.append(req)
            self._cond.notify_all()
        req.done.wait()
        if req.error is not None:
            raise req.error

    def attach(self) -> None:
        with self._cond:
            self.users += 1

    def detach(self) -> int:
        with self._cond:
            self.users -= 1
            return self.users

    def stop(self) -> None:
        """End the worker; whoever still waits is told the model closed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- the worker -----------------------------------------------------------------------------

    def _should_wait(self) -> bool:
        if self.wait_s <= 0 or len(self._queue) >= min(self.users, self.max_batch):
            return False
        if self._gain >= 0.2:
            return True
        self._since_probe += 1
        if self._since_probe >= PROBE_EVERY:
            self._since_probe = 0
            return True
        return False

    def _take(self) -> list[Request] | None:
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if not self._queue:
                return None
            if self._should_wait():
                had = len(self._queue)
                deadline = time.monotonic() + self.wait_s
                want = min(self.users, self.max_batch)
                while len(self._queue) < want and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                self.waits += 1
                self._gain = 0.8 * self._gain + 0.2 * (len(self._queue) - had)
            n = min(len(self._queue), self.max_batch)
            return [self._queue.popleft() for _ in range(n)]

    def _work(self) -> None:
        self.on_worker()
        while True:
            reqs = self._take()
            if reqs is None:
                break
            try:
                with self._serving:
                    self.serve([r.item for r in reqs])
            except Exception as exc:  # every input of the batch gets the model's error
                for r in reqs:
                    r.error = exc
            self.batches += 1
            self.inputs += len(reqs)
            self.largest = max(self.largest, len(reqs))
            for r in reqs:
                r.done.set()
        with self._cond:  # closed: whoever still waits is told so
            for r in self._queue:
                r.error = BackendError(f"shared model {self.name} closed")
                r.done.set()
            self._queue.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "sessions": self.users,
            "batches": self.batches,
            "inputs": self.inputs,
            "mean_batch": round(self.inputs / self.batches, 2) if self.batches else 0.0,
            "largest_batch": self.largest,
            "waits": self.waits,
        }


class BatchRunner(Batcher):
    """One model at one input shape on ONNX Runtime (CPU): a thread running batches.

    The model's batch dimension is made symbolic and one session is made per batch size met,
    with that size fixed (``add_free_dimension_override_by_name``): ONNX Runtime then plans each
    as for a graph of that batch, and a batch of one is the session LiveFX runs for one
    session's own model. Each input's output is the same, bit for bit, at every batch size and
    with or without the shared worker (checked here at start for 1 and 2; tested).
    Alone (one session attached), an input runs on the caller's thread: no hand-off."""

    def __init__(
        self,
        model: bytes,
        shape: tuple[int, ...],
        *,
        threads: int = 1,
        max_batch: int = MAX_BATCH,
        wait_ms: float = WAIT_MS,
        name: str = "model",
    ) -> None:
        from engine.models.registry import onnxruntime_graph

        self.shape = tuple(shape)  # (C, H, W): one input, without the batch
        self.threads = threads
        self.label = name
        self._graph = onnxruntime_graph(model)
        self._sessions: dict[int, Any] = {}
        self._io: tuple[str, str] | None = None  # the input's and the output's names
        self._lock = threading.Lock()
        self.batching = True
        try:
            self._graph = symbolic_batch(self._graph)
            self._check_batch()
        except Exception as exc:  # no onnx, or the graph pins its batch: one input at a time
            log.info("shared %s: no batch (%s); inputs run one by one", name, exc)
            self.batching = False
            self._graph = onnxruntime_graph(model)
            self._sessions.clear()
            self._io = None
        session = self._session(1)
        if len(session.get_inputs()) != 1 or len(session.get_outputs()) != 1:
            raise ModelError(f"model {name}: one input and one output expected")
        self.out_shape = tuple(self._run(np.zeros((1, *self.shape), np.float32)).shape[1:])
        super().__init__(name, max_batch if self.batching else 1, wait_ms)
        self.start()

    def _session(self, n: int) -> Any:
        from engine.inference.onnxruntime import cpu_session

        with self._lock:
            if n not in self._sessions:
                batch = n if self.batching else None
                self._sessions[n] = cpu_session(
                    self._graph, self.threads, f"model {self.label}", batch
                )
            return self._sessions[n]

    def _check_batch(self) -> None:
        x = np.random.default_rng(0).uniform(0, 1, (2, *self.shape)).astype(np.float32)
        both = self._run(x)
        one = self._run(x[1:])
        if both.shape[0] != 2 or not np.array_equal(both[1:], one):
            raise ModelError("a batch of 2 does not give each input's own output")

    def _run(self, x: np.ndarray) -> np.ndarray:
        s = self._session(x.shape[0])
        if self._io is None:  # the same names in every batch size's session
            self._io = (s.get_inputs()[0].name, s.get_outputs()[0].name)
        inp, out = self._io
        return np.asarray(s.run([out], {inp: x})[0])

    def run(self, x: np.ndarray, out: np.ndarray) -> None:
        """Run ``x`` (1, C, H, W) with the other sessions' inputs; its output lands in ``out``.
        Blocks until it has; raises what the model raised."""
        self.submit((x, out))

    def serve(self, items: list[Any]) -> None:
        xs = [x for x, _ in items]
        y = self._run(xs[0] if len(xs) == 1 else np.concatenate(xs))
        for i, (_, out) in enumerate(items):
            out[...] = y[i : i + 1].reshape(out.shape)

    def close(self) -> None:
        self.stop()

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "input": list(self.shape),
            "batching": self.batching,
            "alone": self.alone,
            "batch_sizes": sorted(self._sessions),
        }


class BatchedBackend:
    """A session's view of a ``BatchRunner``: the ``InferenceBackend`` protocol."""

    name = "onnxruntime (shared)"

    def __init__(self, runner: BatchRunner, models: SharedModels, key: tuple[Any, ...]) -> None:
        self.runner = runner
        self._models = models
        self._key = key
        self.input = np.zeros((1, *runner.shape), np.float32)
        self.output = np.zeros((1, *runner.out_shape), np.float32)
        self._closed = False

    def run(self) -> np.ndarray:
        self.runner.run(self.input, self.output)
        return self.output

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._models.release(self._key)


class Runners:
    """Shared workers by key; a worker ends when its last session lets it go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runners: dict[Any, Any] = {}

    def _acquire(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = self._runners[key] = make()
            runner.attach()
        return runner

    def release(self, key: Any) -> None:
        with self._lock:
            runner = self._runners.get(key)
            if runner is None or runner.detach() > 0:
                return
            del self._runners[key]
        runner.close()

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for r in runners:
            with contextlib.suppress(Exception):
                r.close()

    def stats(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.stats() for r in self._runners.values()]


class SharedModels(Runners):
    """The shared workers of one process, by model, input shape and threads (and, made when a
    GPU session asks, the GPU's: ``gpu()``)."""

    def __init__(self, *, wait_ms: float = WAIT_MS, max_batch: int = MAX_BATCH) -> None:
        super().__init__()
        self.wait_ms = wait_ms
        self.max_batch = max_batch
        self._gpu: Any = None  # engine.gpu.batch.SharedGpuModels

    def warm(self) -> None:
        """Import what a first worker needs (``onnx``: 0.6 s here), so that the first session's
        first frame does not wait for it (a server calls this on a thread at start)."""
        with contextlib.suppress(ImportError):
            import onnx  # noqa: F401

    def gpu(self) -> Any:
        """The GPU's shared segmenters (``engine.gpu.batch``; imports cuda-python)."""
        with self._lock:
            if self._gpu is None:
                from engine.gpu.batch import SharedGpuModels

                self._gpu = SharedGpuModels(wait_ms=self.wait_ms)
            return self._gpu

    def backend(
        self, model: bytes, shape: tuple[int, ...], threads: int = 1, name: str = "model"
    ) -> BatchedBackend:
        """A backend for one session: ``shape`` is (1, C, H, W)."""
        if len(shape) != 4 or shape[0] != 1:
            raise BackendError(f"shared model {name}: input shape {shape}, expected (1, C, H, W)")
        key = (hashlib.sha256(model).hexdigest(), tuple(shape[1:]), threads)
        runner = self._acquire(
            key,
            lambda: BatchRunner(
                model, shape[1:], threads=threads, max_batch=self.max_batch,
                wait_ms=self.wait_ms, name=f"{name} {shape[3]}×{shape[2]}",
            ),
        )  # fmt: skip
        return BatchedBackend(runner, self, key)

    def close(self) -> None:
        super().close()
        if self._gpu is not None:
            with contextlib.suppress(Exception):
                self._gpu.close()

    def stats(self) -> list[dict[str, Any]]:
        out = super().stats()
        if self._gpu is not None:
            out += self._gpu.stats()
        return out
