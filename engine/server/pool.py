"""The frame pool: a few worker threads, sized to the cores, serve every session's frames.

A session with a frame waiting (its ``FrameGate`` holds one) is queued once; a worker takes the
session at the head, processes that one frame (``Job.step``), and queues the session at the back
again if a newer frame arrived meanwhile. So sessions are served round robin: a session cannot
take a second turn while another waits, whatever rate it sends at, and at most one worker runs a
session's pipeline at a time (its pipeline and temporal state need no lock).

The pool also measures the machine's load, for the budget controllers (every session steps its
quality down when the machine is near capacity, before frames are dropped) and for admission
control (a new session is refused when the machine could not serve its frames):

- ``demand``: Σ over sessions of frames arriving per second × seconds per processed frame, over
  the last ``window_s``, divided by the workers: 1.0 = the workers busy all the time. It can
  exceed 1 (frames then wait, and the gates drop them).
- ``cpu``: the whole machine's CPU use, busy share of all cores (Linux ``/proc/stat``; else this
  process's CPU time), which counts what the pool does not see: decoding, encoding, RTP,
  another process on the same machine.
- ``load`` = the larger of the two.

Admission projects one more session like the average of those running: the machine's CPU
use plus this process's share ÷ sessions (what the others on the machine use stays as it is),
and the workers' demand × (n + 1) / n.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

WINDOW_S = 2.0  # load is measured over this much of the recent past
CPU_SAMPLE_S = 0.25  # the machine's CPU counters are read at most this often
LOAD_CACHE_S = 0.1  # the budget controllers' load figure is worked out at most this often
STEP_UP_EVERY_S = 0.5  # one session of the machine may step its quality up this often


class Job(Protocol):
    """What the pool runs: a session's frames, one at a time."""

    id: str

    def ready(self) -> bool:
        """A frame is waiting."""
        ...

    def step(self) -> None:
        """Process the waiting frame (return at once if there is none)."""
        ...

    def failed(self, exc: BaseException) -> None:
        """``step`` raised: the job ends itself (the pool forgets it)."""
        ...


def cores() -> int:
    """The cores this process may run on."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat; None where it is absent."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [float(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    total = sum(values)
    return total - idle, total


@dataclass
class _JobStats:
    arrivals: deque[float] = field(default_factory=deque)  # when frames arrived (notify)
    steps: deque[tuple[float, float]] = field(default_factory=deque)  # (when, seconds busy)

    def trim(self, since: float) -> None:
        while self.arrivals and self.arrivals[0] < since:
            self.arrivals.popleft()
        while self.steps and self.steps[0][0] < since:
            self.steps.popleft()


@dataclass(frozen=True)
class Load:
    demand: float  # the workers' share needed by the frames arriving (can exceed 1)
    cpu: float  # the machine's CPU busy share (0–1)
    sessions: int  # sessions with frames in the window
    workers: int
    process: float = 0.0  # this process's share of all cores (0–1)

    def with_more(self, more: int = 1) -> float:
        """The load with ``more`` sessions like the average of those measured."""
        if self.sessions == 0:
            return self.value
        grow = (self.sessions + more) / self.sessions
        return max(self.demand * grow, self.cpu + self.process * more / self.sessions)

    @property
    def value(self) -> float:
        return max(self.demand, self.cpu)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "load": round(self.value, 3),
            "demand": round(self.demand, 3),
            "cpu": round(self.cpu, 3),
            "process": round(self.process, 3),
            "sessions": self.sessions,
            "workers": self.workers,
        }


class FramePool:
    """``workers`` threads (0: one per core) serving the jobs added to it, round robin."""

    def __init__(
        self,
        workers: int = 0,
        *,
        name: str = "livefx-pool",
        window_s: float = WINDOW_S,
        cpu: Callable[[], tuple[float, float] | None] | None = machine_cpu,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers if workers > 0 else cores()
        self.window_s = window_s
        self._clock = clock
        self._cpu_source = cpu
        self._cond = threading.Condition()
        self._ready: deque[Job] = deque()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._jobs: dict[str, Job] = {}
        self._stats: dict[str, _JobStats] = {}
        self._closed = False
        # (when, machine busy, machine total, this process's CPU seconds)
        self._cpu_samples: deque[tuple[float, float, float, float]] = deque()
        self._process_cpu = self._cpu_source is None or self._cpu_source() is None
        self.steps = 0
        self.failures = 0
        self._load_value, self._load_at = 0.0, float("-inf")
        self._last_step_up = float("-inf")
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    # -- jobs -----------------------------------------------------------------------------------

    def add(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the frame pool is closed")
            self._jobs[job.id] = job
            self._stats[job.id] = _JobStats()
        if job.ready():
            self.notify(job)

    def notify(self, job: Job) -> None:
        """A frame arrived for ``job`` (any thread): queue it unless queued or running."""
        with self._cond:
            st = self._stats.get(job.id)
            if st is None:  # removed, or never added
                return
            now = self._clock()
            st.arrivals.append(now)
            st.trim(now - self.window_s)  # bounded even where nobody asks for the load
            if job.id in self._queued or job.id in self._running:
                return
            self._queued.add(job.id)
            self._ready.append(job)
            self._cond.notify()

    def remove(self, job: Job, timeout: float = 5.0) -> bool:
        """Forget ``job``; wait (up to ``timeout``) for a step of it in progress to end. True
        when none is running any more."""
        with self._cond:
            self._jobs.pop(job.id, None)
            self._stats.pop(job.id, None)
            if job.id in self._queued:
                self._queued.discard(job.id)
                with contextlib.suppress(ValueError):
                    self._ready.remove(job)
            return self._cond.wait_for(lambda: job.id not in self._running, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._ready or self._closed)
                if self._closed:
                    return
                job = self._ready.popleft()
                self._queued.discard(job.id)
                self._running.add(job.id)
            t0 = self._clock()
            failed: BaseException | None = None
            try:
                job.step()
            except BaseException as exc:  # a job's fault ends that job, never a worker
                failed = exc
            t1 = self._clock()
            with self._cond:
                self._running.discard(job.id)
                self.steps += 1
                st = self._stats.get(job.id)
                if st is not None:
                    st.steps.append((t1, t1 - t0))
                requeue = failed is None and st is not None and job.id not in self._queued
                self._cond.notify_all()  # remove() may be waiting for this job
            if failed is not None:
                self.failures += 1
                self.remove(job, timeout=0)
                try:
                    job.failed(failed)
                except Exception:
                    log.exception("pool: job %s: failed() raised", job.id)
            elif requeue and job.ready():
                with self._cond:  # at the back: every other waiting session goes first
                    if job.id in self._jobs and job.id not in self._queued:
                        self._queued.add(job.id)
                        self._ready.append(job)
                        self._cond.notify()
            self._sample_cpu(t1)

    # -- load -----------------------------------------------------------------------------------

    def _sample_cpu(self, now: float) -> None:
        if self._cpu_samples and now - self._cpu_samples[-1][0] < CPU_SAMPLE_S:
            return
        mine = time.process_time()
        if self._process_cpu:
            busy, total = mine, now * cores()
        else:
            got = self._cpu_source() if self._cpu_source is not None else None
            if got is None:
                return
            busy, total = got
        with self._cond:
            self._cpu_samples.append((now, busy, total, mine))
            while len(self._cpu_samples) > 2 and self._cpu_samples[1][0] < now - self.window_s:
                self._cpu_samples.popleft()

    def cpu_shares(self) -> tuple[float, float]:
        """(the machine's CPU busy share, this process's share of all cores) over about the
        last window; (0, 0) until two samples."""
        self._sample_cpu(self._clock())
        with self._cond:
            if len(self._cpu_samples) < 2:
                return 0.0, 0.0
            (w0, b0, t0, m0), (w1, b1, t1, m1) = self._cpu_samples[0], self._cpu_samples[-1]
        if t1 <= t0 or w1 <= w0:
            return 0.0, 0.0
        machine = min(1.0, max(0.0, (b1 - b0) / (t1 - t0)))
        mine = min(1.0, max(0.0, (m1 - m0) / ((w1 - w0) * cores())))
        return max(machine, mine), mine

    def cpu_share(self) -> float:
        """The machine's CPU busy share over about the last window."""
        return self.cpu_shares()[0]

    def load(self) -> Load:
        now = self._clock()
        since = now - self.window_s
        demand, sessions = 0.0, 0
        with self._cond:
            for st in self._stats.values():
                st.trim(since)
                if not st.arrivals or not st.steps:
                    continue
                sessions += 1
                per_frame = sum(s for _, s in st.steps) / len(st.steps)
                demand += len(st.arrivals) / self.window_s * per_frame
        machine, mine = self.cpu_shares()
        return Load(demand / self.workers, machine, sessions, self.workers, mine)

    def load_value(self) -> float:
        """``load().value``: what the budget controllers watch (worked out at most every
        0.1 s: every session asks after every frame)."""
        now = self._clock()
        if now - self._load_at >= LOAD_CACHE_S:
            self._load_value, self._load_at = self.load().value, now
        return self._load_value

    def take_step_up(self) -> bool:
        """Whether a session may step its quality up now: one session of the machine every
        ``STEP_UP_EVERY_S``, so that they climb back one at a time."""
        now = self._clock()
        with self._cond:
            if now - self._last_step_up < STEP_UP_EVERY_S:
                return False
            self._last_step_up = now
            return True

    def refuse_reason(self, limit: float, sessions: int = 0) -> str | None:
        """Why a new session cannot be served now (None: it can): with it, and with those of
        the ``sessions`` the server has that are not measured yet (just admitted, connecting),
        each like the average of those measured, the load would pass ``limit`` (1.0: every core
        busy)."""
        if limit <= 0:
            return None
        load = self.load()
        if load.sessions == 0:
            return None
        more = 1 + max(0, sessions - load.sessions)
        projected = load.with_more(more)
        if projected <= limit:
            return None
        return (
            f"the machine is at capacity: load {load.value:.0%} with {load.sessions} sessions, "
            f"{projected:.0%} with {more} more (limit {limit:.0%})"
        )

    def stats(self) -> dict[str, object]:
        with self._cond:
            waiting, running = len(self._ready), len(self._running)
        return {
            **self.load().as_dict(),
            "jobs": len(self._jobs),
            "waiting": waiting,
            "running": running,
            "steps": self.steps,
            "failures": self.failures,
            "cpu_source": "this process" if self._process_cpu else "/proc/stat (whole machine)",
        }
