"""Many sessions per machine: the shared inference worker (engine/inference/batch.py), the frame
pool (engine/server/pool.py), the budget's machine load and admission control."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from engine.config import BudgetConfig, EffectConfig, PipelineConfig, ServerConfig
from engine.inference.batch import BatchRunner, SharedModels
from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models.registry import load_model
from engine.pipeline.budget import LOAD_COOLDOWN, BudgetController
from engine.server.pool import FramePool, Load
from tests.sessions import frame_bytes, run_sessions


def _inputs(n: int, h: int = 256, w: int = 256) -> list[np.ndarray]:
    """Real pictures (the composited clip: a person over a background) as segmenter inputs."""
    import cv2

    from engine.samples import composited_clip

    clip = composited_clip(320, 240, n, motion="fast", noise=2.0, keep_rgb=True)
    out = []
    for rgb in clip.rgb:
        x = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        out.append(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
    return out


# -- the shared inference worker ------------------------------------------------------------------


def test_batched_masks_equal_each_input_run_alone_bit_for_bit() -> None:
    models = SharedModels(wait_ms=2.0)
    xs = _inputs(4)
    backends = [models.backend(load_model("general"), (1, 3, 256, 256), 1, "general")]
    alone = []
    for x in xs:  # one session: every input alone, on its own thread (no hand-off)
        backends[0].input[...] = x
        alone.append(backends[0].run().copy())
    assert backends[0].runner.alone == 4 and backends[0].runner.batches == 0
    own = OnnxRuntimeBackend(load_model("general"), input_shape=(1, 3, 256, 256))
    for x, y in zip(xs, alone, strict=True):  # and what a session's own model gives
        own.input[...] = x
        assert np.array_equal(own.run(), y)
    backends += [models.backend(load_model("general"), (1, 3, 256, 256), 1) for _ in range(3)]
    runner = backends[0].runner
    assert all(b.runner is runner for b in backends) and runner.users == 4
    go = threading.Barrier(4)
    got: dict[int, list[np.ndarray]] = {i: [] for i in range(4)}

    def session(i: int) -> None:
        for k in range(6):
            backends[i].input[...] = xs[(i + k) % 4]
            go.wait()  # the four inputs arrive together: batched
            got[i].append(backends[i].run().copy())

    threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert runner.batching and runner.largest > 1, runner.stats()
    for i in range(4):
        for k, y in enumerate(got[i]):
            assert np.array_equal(y, alone[(i + k) % 4]), (i, k)
    for b in backends:
        b.close()
    assert models.stats() == []  # the worker ended with its last session


def test_alone_never_waits_and_a_model_error_reaches_its_session() -> None:
    runner = BatchRunner(load_model("landscape"), (3, 144, 256), wait_ms=2.0, name="landscape")
    runner.attach()
    x = np.zeros((1, 3, 144, 256), np.float32)
    out = np.empty((1, *runner.out_shape), np.float32)
    for _ in range(5):
        runner.run(x, out)
    assert runner.waits == 0 and runner.alone == 5 and runner.batches == 0
    with pytest.raises(Exception, match=r"(?i)invalid|dimension|shape|got"):
        runner.run(np.zeros((1, 3, 10, 10), np.float32), out)  # the wrong size
    runner.run(x, out)  # still serving
    runner.close()


def test_pipelines_sharing_the_worker_give_the_same_frames_as_one_at_a_time() -> None:
    """Three sessions' pipelines on threads, their segmenter batched, against the same
    pipelines run one after another: the same output frames, bit for bit."""
    from engine.pipeline.backend import shared_factory
    from engine.pipeline.pipeline import Pipeline
    from engine.samples import composited_clip

    config = PipelineConfig(effect=EffectConfig(name="blur"), backend="cpu")
    clips = [
        composited_clip(320, 240, 4, motion="sway", noise=2.0, seed=s).frames for s in (1, 2, 3)
    ]

    def run(models: SharedModels, together: bool) -> list[list[bytes]]:
        pipes = [Pipeline(config, shared_factory(models, 1)) for _ in clips]
        if together:
            outs = run_sessions(pipes, clips, lockstep=False, join_s=60)
        else:
            pairs = zip(pipes, clips, strict=True)
            outs = [[frame_bytes(q.process(f)) for f in c] for q, c in pairs]
        for p in pipes:
            p.close()
        return outs

    sequential = run(SharedModels(wait_ms=0.0), together=False)
    models = SharedModels(wait_ms=2.0)
    together = run(models, together=True)
    assert together == sequential


# -- the frame pool -------------------------------------------------------------------------------


class FakeJob:
    def __init__(self, name: str, cost_s: float = 0.002, always: bool = True) -> None:
        self.id = name
        self.cost_s = cost_s
        self.always = always
        self.steps = 0
        self.busy = 0
        self.overlap = False
        self.error: BaseException | None = None
        self.raise_at: int | None = None
        self._lock = threading.Lock()

    def ready(self) -> bool:
        return self.always

    def step(self) -> None:
        with self._lock:
            self.busy += 1
            self.overlap |= self.busy > 1
        time.sleep(self.cost_s)
        self.steps += 1
        with self._lock:
            self.busy -= 1
        if self.raise_at is not None and self.steps == self.raise_at:
            raise RuntimeError("boom")

    def failed(self, exc: BaseException) -> None:
        self.error = exc


def test_pool_serves_sessions_round_robin_whatever_they_send() -> None:
    pool = FramePool(1, cpu=None)
    jobs = [FakeJob(f"s{i}") for i in range(3)]
    for j in jobs:
        pool.add(j)
    for _ in range(200):  # one session notifies far more often than the others: no extra turns
        pool.notify(jobs[0])
    time.sleep(0.4)
    for j in jobs:
        pool.remove(j)
    pool.close()
    counts = [j.steps for j in jobs]
    assert min(counts) > 20 and max(counts) - min(counts) <= 1, counts


def test_pool_never_runs_one_session_on_two_workers_and_survives_a_failing_one() -> None:
    pool = FramePool(4, cpu=None)
    jobs = [FakeJob("a", 0.001), FakeJob("b", 0.001)]
    bad = FakeJob("bad", 0.001)
    bad.raise_at = 3
    for j in [*jobs, bad]:
        pool.add(j)
    time.sleep(0.3)
    assert not any(j.overlap for j in jobs)
    assert isinstance(bad.error, RuntimeError) and bad.steps == 3  # ended, told, not run again
    before = [j.steps for j in jobs]
    time.sleep(0.1)
    assert all(j.steps > b for j, b in zip(jobs, before, strict=True))  # the others go on
    assert pool.stats()["failures"] == 1
    for j in jobs:
        assert pool.remove(j)
    pool.close()


def test_pool_load_is_arrivals_times_cost_over_workers() -> None:
    now = [100.0]
    pool = FramePool(2, cpu=lambda: None, clock=lambda: now[0], window_s=2.0)
    job = FakeJob("s", cost_s=0.0, always=False)
    pool.add(job)
    st = pool._stats["s"]
    for k in range(60):  # 30 frames a second for 2 s, each 20 ms of a worker
        st.arrivals.append(98.0 + k / 30)
        st.steps.append((98.0 + k / 30, 0.020))
    load = pool.load()
    assert load.sessions == 1 and load.demand == pytest.approx(30 * 0.020 / 2)
    assert pool.refuse_reason(1.0) is None
    assert pool.refuse_reason(0.5) is not None  # 0.3 now, 0.6 with one more like it
    assert Load(0.1, 0.8, 2, 2, 0.4).with_more() == pytest.approx(1.0)  # 0.8 + 0.4 / 2
    assert Load(0.1, 0.8, 2, 2, 0.1).with_more() == pytest.approx(0.85)  # others' CPU stays
    assert Load(0.1, 0.5, 2, 2, 0.2).with_more(3) == pytest.approx(0.8)  # 2 not measured yet
    assert pool.refuse_reason(0.75, sessions=1) is None  # 0.3 + 0.3
    assert "with 2 more" in (pool.refuse_reason(0.75, sessions=2) or "")  # one still starting
    assert pool.refuse_reason(0.0) is None  # off
    pool.close()


# -- the budget and admission ---------------------------------------------------------------------


def test_machine_load_steps_quality_down_then_up_when_it_falls() -> None:
    load = [0.95]
    b = BudgetController(
        BudgetConfig(budget_ms=25.0, window=5, recover_frames=10), load=lambda: load[0]
    )
    for _ in range(5):
        b.observe(2.0)  # this session's frames are fast: only the machine is full
    assert b.index == 1 and "machine load 95%" in b.events[-1]["reason"]
    for _ in range(LOAD_COOLDOWN + 5):  # the cool-down, then a window of frames
        b.observe(2.0)
    assert b.index == 2  # still over: one more level, after the cool-down
    load[0] = 0.85  # between the marks: holds
    for _ in range(LOAD_COOLDOWN + 40):
        b.observe(2.0)
    assert b.index == 2
    load[0] = 0.3
    turns = [False]
    b.step_up = lambda: turns[0]  # the pool's turn to step up: not yet
    for _ in range(30):
        b.observe(2.0)
    assert b.index == 2
    turns[0] = True
    for _ in range(30):
        b.observe(2.0)
    assert b.index < 2


def test_one_session_of_the_machine_steps_up_at_a_time() -> None:
    now = [0.0]
    pool = FramePool(1, cpu=None, clock=lambda: now[0])
    assert pool.take_step_up() and not pool.take_step_up()
    now[0] += 0.6
    assert pool.take_step_up()
    pool.close()


def test_offer_refused_with_retry_after_when_the_machine_is_full() -> None:
    from engine.server.app import LiveFXServer
    from engine.server.middleware import HttpError

    server = LiveFXServer(ServerConfig(port=0, admit_load=1.0))
    try:
        server.admit("sendrecv", "127.0.0.1")  # idle: admitted
        server.pool.load = lambda: Load(0.2, 0.85, 3, 2, 0.6)  # type: ignore[method-assign]
        with pytest.raises(HttpError) as err:
            server.admit("sendrecv", "127.0.0.1")  # 85 % with 3 (60 % ours) → 105 % with 4
        assert err.value.status == 503 and "Retry-After" in err.value.headers
        assert "machine is at capacity" in str(err.value)
        server.admit("play", "127.0.0.1")  # a player runs no pipeline: not refused for load
        off = LiveFXServer(replace(server.config, admit_load=0.0))
        off.pool.load = server.pool.load  # type: ignore[method-assign]
        off.admit("sendrecv", "127.0.0.1")
        off.pool.close()
    finally:
        server.pool.close()


def test_a_real_server_refuses_a_session_it_could_not_serve() -> None:
    """A live server whose limit is below one session's load: the first session is served
    (nothing runs yet), the next offer gets 503 + Retry-After with the load in its reason, and
    the first session's segmenter is on the shared worker; /stats and /health show the pool."""
    import asyncio
    import json
    import urllib.request

    from engine.samples import composited_clip
    from engine.server.client import Client
    from tests.conftest import ServerProcess, wait_for

    clip = composited_clip(320, 240, 12, motion="sway", noise=2.0)
    server = ServerProcess("--admit-load", "0.01", "--offer-rate", "1000", "--workers", "2")

    def get(path: str) -> dict:
        with urllib.request.urlopen(server.url + path, timeout=5) as r:
            return json.loads(r.read())

    async def run() -> None:
        a = Client(server.url, clip.frames)
        await a.start({"effect": "blur"})
        assert await asyncio.to_thread(
            wait_for, lambda: get("/stats")["pool"]["sessions"] == 1, 15.0
        )
        b = Client(server.url, clip.frames)
        with pytest.raises(RuntimeError, match=r"503 .*machine is at capacity"):
            await b.start({"effect": "blur"})
        await b.pc.close()
        stats = get("/stats")
        assert stats["pool"]["workers"] == 2 and stats["pool"]["steps"] > 0
        (shared,) = stats["shared_models"]
        assert shared["sessions"] == 1 and shared["alone"] > 0  # one session: no hand-off
        assert get("/health")["load"] > 0
        await a.stop()

    try:
        asyncio.run(run())
    finally:
        server.stop()
