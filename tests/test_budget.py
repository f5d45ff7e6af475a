"""FrameGate and BudgetController, with a simulated camera and a deliberately slow stage."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.config import BudgetConfig, EffectConfig, ModelConfig, PipelineConfig
from engine.inference import InferenceBackend
from engine.models.registry import ModelSpec
from engine.ops import cpu
from engine.pipeline import Pipeline
from engine.pipeline.budget import QUALITY_LEVELS, BudgetController
from engine.pipeline.gate import FrameGate, GateClosed
from engine.samples import camera_frames


def test_controller_steps_down_when_slow_and_back_up_when_fast() -> None:
    c = BudgetController(BudgetConfig(budget_ms=10.0, window=5, recover_frames=10))
    levels = []
    for _ in range(60):
        levels.append(c.observe(25.0).level)
    assert levels[0] == 0 and levels[-1] == len(QUALITY_LEVELS) - 1
    assert levels == sorted(levels)  # only down, one level at a time
    assert [e["to"] for e in c.events] == [q.name for q in QUALITY_LEVELS[1:]]
    assert all("budget 10.00 ms" in e["reason"] for e in c.events)
    for _ in range(400):
        c.observe(2.0)
    assert c.quality.level == 0
    assert c.events[-1]["to"] == "full" and "of budget" in c.events[-1]["reason"]


def test_controller_holds_between_headroom_and_budget() -> None:
    c = BudgetController(BudgetConfig(budget_ms=10.0, window=5, recover_frames=10))
    for _ in range(30):
        c.observe(25.0)
    level = c.quality.level
    for _ in range(200):
        c.observe(8.0)  # inside the budget but not 60 % under: no reason to move
    assert c.quality.level == level


def test_no_budget_means_full_quality() -> None:
    c = BudgetController(BudgetConfig(budget_ms=None))
    for _ in range(100):
        c.observe(1000.0)
    assert c.quality.level == 0 and not c.events


class StageClock:
    """The pipeline's clock in these tests: each reading costs ``stage_ns`` and a slow model's
    run adds its delay, so the controller sees the same frame times on a busy machine as on an
    idle one (wall time would make the level reached depend on the machine's load)."""

    def __init__(self, stage_ns: int = 200_000) -> None:
        self.ns = 0
        self.stage_ns = stage_ns

    def perf_counter_ns(self) -> int:
        self.ns += self.stage_ns
        return self.ns


class SlowBackend:
    """The real model's shapes, but ``run`` takes ``delay`` seconds on the pipeline's clock: a
    deliberately slow stage."""

    name = "slow"

    def __init__(self, spec: ModelSpec, delay: float, clock: StageClock) -> None:
        self.input = np.zeros((1, 3, spec.height, spec.width), np.float32)
        self.output = np.full((1, 1, spec.height, spec.width), 0.5, np.float32)
        self.delay = delay
        self.clock = clock
        self.runs = 0

    def run(self) -> np.ndarray:
        self.runs += 1
        self.clock.ns += int(self.delay * 1e9)
        return self.output


@pytest.fixture
def clock(monkeypatch) -> StageClock:
    import engine.pipeline.pipeline as pipeline_module

    c = StageClock()
    monkeypatch.setattr(pipeline_module, "time", c)
    return c


def slow_pipeline(
    budget_ms: float, delay: float, clock: StageClock
) -> tuple[Pipeline, list[SlowBackend]]:
    made: list[SlowBackend] = []

    def factory(spec: ModelSpec) -> InferenceBackend:
        made.append(SlowBackend(spec, delay, clock))
        return made[-1]

    config = PipelineConfig(
        effect=EffectConfig(name="colour"),
        budget=BudgetConfig(budget_ms=budget_ms, window=5, recover_frames=20),
        # The selfie model's budget alone: an inline body-prior run (every 10th frame) would be
        # the p90 of every 5-frame window. (Live sessions run it off the frame's path.)
        model=ModelConfig(person_model="off"),
    )
    return Pipeline(config, backend_factory=factory), made


def test_a_slow_model_on_a_moving_camera_drops_to_reusing_masks(astronaut_rgb, clock) -> None:
    p, made = slow_pipeline(budget_ms=8.0, delay=0.015, clock=clock)
    frames = [cpu.rgb_to_yuv420p(f) for f in camera_frames(astronaut_rgb, 320, 240, 60)]
    for f in frames:
        p.process(f)
    assert p.quality.name == "minimal"
    assert [e["to"] for e in p.budget.events][:2] == ["skip-static", "light"]
    # At "minimal" the model runs on every third frame; the others reuse its mask.
    before = made[0].runs
    for f in frames[:30]:
        p.process(f)
    assert made[0].runs - before == 10
    assert p.stats()["reused_masks"] > 0
    # The model gets fast again: quality climbs back to full.
    made[0].delay = 0.0
    for i in range(400):
        p.process(frames[i % len(frames)])
    assert p.quality.name == "full"


def test_a_static_camera_settles_on_skipping_unchanged_frames(astronaut_rgb, clock) -> None:
    p, made = slow_pipeline(budget_ms=8.0, delay=0.015, clock=clock)
    still = cpu.rgb_to_yuv420p(camera_frames(astronaut_rgb, 320, 240, 1)[0])
    rng = np.random.default_rng(0)
    for _ in range(80):
        noisy = cpu.rgb_to_yuv420p(camera_frames(astronaut_rgb, 320, 240, 1)[0])
        noisy.y[...] = np.clip(still.y + rng.integers(-1, 2, still.y.shape), 0, 255)
        p.process(noisy)
    # Skipping unchanged frames is enough: the controller stops at that level.
    assert p.quality.name == "skip-static"
    assert made[0].runs < 20


def test_gate_keeps_only_the_newest_frame() -> None:
    gate: FrameGate[int] = FrameGate()
    for i in range(5):
        gate.put(i)
    got = gate.get(timeout=0.1)
    assert got is not None and got[0] == 4
    assert gate.stats() == {"received": 5, "delivered": 1, "dropped": 4}
    assert gate.get(timeout=0.01) is None
    gate.close()
    with pytest.raises(GateClosed):
        gate.get(timeout=0.1)


def test_slow_worker_drops_frames_instead_of_falling_behind() -> None:
    """A 100 fps camera, a worker that needs 30 ms a frame: latency stays bounded."""
    gate: FrameGate[int] = FrameGate()
    interval = 0.01
    stop = threading.Event()

    def camera() -> None:
        i = 0
        while not stop.is_set():
            gate.put(i)
            i += 1
            time.sleep(interval)

    ages: list[float] = []
    t = threading.Thread(target=camera, daemon=True)
    t.start()
    try:
        while len(ages) < 30:
            got = gate.get(timeout=1.0)
            assert got is not None
            ages.append((time.perf_counter_ns() - got[1]) / 1e9)
            time.sleep(0.03)  # the slow stage
    finally:
        stop.set()
        t.join()
    stats = gate.stats()
    assert stats["dropped"] > stats["delivered"]  # most frames were dropped, none queued
    # Each frame the worker got was at most about one camera interval old, at the start and at
    # the end alike: no backlog builds up.
    assert max(ages[:10]) < 5 * interval and max(ages[-10:]) < 5 * interval
