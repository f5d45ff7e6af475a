"""Quality levels and the BudgetController that steps between them.

A ``Quality`` is a set of plain parameters the stages read each frame (as Robust Video Matting's
``downsample_ratio``): nothing else changes when the level changes. Level 0 is the best; each
further level is cheaper than the one before it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.config import BudgetConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quality:
    level: int
    name: str
    infer_every: int = 1  # run the model on every n-th frame, reuse the mask in between
    skip_static: bool = False  # reuse the mask when the frame barely changed
    guided: bool = True  # the guided filter on the matte (when the config enables it)
    blur_level_bias: int = 0  # blur the background this many pyramid levels lower
    gan_scale: float = 1.0  # run a GAN generator on the frame scaled by this much
    body_every: int = 10  # refresh the body prior every n-th frame; 0 = no body prior


QUALITY_LEVELS: tuple[Quality, ...] = (
    Quality(0, "full"),
    Quality(1, "skip-static", skip_static=True),
    Quality(2, "light", skip_static=True, blur_level_bias=1, gan_scale=0.75, body_every=15),
    Quality(
        3,
        "half-rate",
        infer_every=2,
        skip_static=True,
        blur_level_bias=1,
        gan_scale=0.5,
        body_every=20,
    ),
    Quality(
        4,
        "minimal",
        infer_every=3,
        skip_static=True,
        guided=False,
        blur_level_bias=2,
        gan_scale=0.5,
        body_every=0,
    ),
)


# The machine's load (engine.server.pool: the larger of the frame workers' demand and the CPU's
# busy share): above LOAD_HIGH every session steps down, one level per LOAD_COOLDOWN frames (the
# load is measured over ~2 s, so it is given time to show a step's effect); up again only while
# it is under LOAD_LOW, and then one session of the machine at a time (``step_up``: the pool
# hands out a turn every half second), so that they do not all climb back and overshoot together.
LOAD_HIGH = 0.9
LOAD_LOW = 0.8
LOAD_COOLDOWN = 60


class BudgetController:
    """Watches per-frame times and moves the quality level to stay inside the budget.

    Down one level when the p90 of the last ``window`` frames exceeds the budget (then waits a
    window before judging again); up one level when the p90 has stayed under ``headroom`` × budget
    for ``recover_frames`` frames. Every change is kept in ``events`` with its figures.

    ``load`` (a live server sets it: ``FramePool.load_value``) adds the machine's load: over
    ``LOAD_HIGH`` the level steps down even when this session's own frames are fast (frames of
    sessions together exceed what the cores can do, and the next thing would be dropped frames);
    it steps up only while the load is under ``LOAD_LOW`` and ``step_up()`` gives it the turn.
    """

    def __init__(
        self,
        config: BudgetConfig,
        levels: tuple[Quality, ...] = QUALITY_LEVELS,
        load: Callable[[], float] | None = None,
        step_up: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self.levels = levels
        self.load = load
        self.step_up = step_up
        self.index = 0
        self.frames = 0
        self._recent: deque[float] = deque(maxlen=config.window)
        self._cooldown = 0
        self._calm = 0
        self.events: deque[dict[str, Any]] = deque(maxlen=100)  # the last changes
        self.changes = 0  # all of them

    @property
    def quality(self) -> Quality:
        return self.levels[self.index]

    def observe(self, frame_ms: float) -> Quality:
        """Record one frame's time; return the quality for the next frame."""
        self.frames += 1
        budget = self.config.budget_ms
        if budget is None:
            return self.quality
        self._recent.append(frame_ms)
        if self._cooldown > 0:
            self._cooldown -= 1
            return self.quality
        if len(self._recent) < self._recent.maxlen:  # type: ignore[operator]
            return self.quality
        p90 = float(np.percentile(self._recent, 90))
        load = self.load() if self.load is not None else 0.0
        last = len(self.levels) - 1
        if p90 > budget and self.index < last:
            self._change(+1, p90, f"p90 {p90:.2f} ms > budget {budget:.2f} ms")
        elif load > LOAD_HIGH and self.index < last:
            self._change(+1, p90, f"machine load {load:.0%} > {LOAD_HIGH:.0%}")
            self._cooldown = max(self._cooldown, LOAD_COOLDOWN)
        elif p90 < self.config.headroom * budget and load < LOAD_LOW:
            self._calm += 1
            if (
                self._calm >= self.config.recover_frames
                and self.index > 0
                and (self.step_up is None or self.step_up())
            ):
                self._change(-1, p90, f"p90 {p90:.2f} ms < {self.config.headroom:.0%} of budget")
        else:
            self._calm = 0
        return self.quality

    def _change(self, step: int, p90: float, reason: str) -> None:
        old = self.quality
        self.index += step
        self._cooldown = self.config.window
        self._calm = 0
        self._recent.clear()
        event = {
            "frame": self.frames,
            "from": old.name,
            "to": self.quality.name,
            "level": self.index,
            "p90_ms": round(p90, 3),
            "reason": reason,
        }
        self.events.append(event)
        self.changes += 1
        log.info(
            "quality %s → %s at frame %d: %s", old.name, self.quality.name, self.frames, reason
        )

    def stats(self) -> dict[str, Any]:
        return {
            "budget_ms": self.config.budget_ms,
            "level": self.index,
            "quality": asdict(self.quality),
            "changes": list(self.events),
        }
