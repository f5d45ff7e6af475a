"""Per-stage timing: always on, cheap (one perf_counter_ns pair per stage), bounded in memory."""

from __future__ import annotations

from collections import deque

import numpy as np


def summarise_ns(samples_ns: list[int] | deque[int] | np.ndarray) -> dict[str, float]:
    """count, median, p95, p99 and max in milliseconds (never a mean alone)."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if a.size == 0:
        return {"count": 0, "median_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    median, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "count": int(a.size),
        "median_ms": round(float(median), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "max_ms": round(float(a.max()), 4),
    }


class StageTimes:
    """The last ``window`` durations of each stage, in nanoseconds, in stage order."""

    def __init__(self, window: int = 100_000) -> None:
        self.window = window
        self._samples: dict[str, deque[int]] = {}

    def add(self, stage: str, ns: int) -> None:
        samples = self._samples.get(stage)
        if samples is None:
            samples = self._samples[stage] = deque(maxlen=self.window)
        samples.append(ns)

    def last_ms(self) -> dict[str, float]:
        return {k: v[-1] / 1e6 for k, v in self._samples.items() if v}

    def summary(self) -> dict[str, dict[str, float]]:
        return {k: summarise_ns(v) for k, v in self._samples.items()}

    def clear(self) -> None:
        self._samples.clear()
