"""FrameGate: a slot of size one between a frame producer and the pipeline's worker.

The producer (a decoder, a camera, a WebRTC receiver) ``put``s every frame; the worker ``get``s
the newest. A frame still waiting when a newer one arrives is dropped and counted, so when the
worker is slower than the camera, latency stays at one frame instead of growing for ever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class GateClosed(Exception):
    """Raised by ``get`` once the gate is closed and empty."""


class FrameGate(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._stamp = 0
        self._closed = False
        self.received = 0
        self.dropped = 0
        self.delivered = 0

    def put(self, item: T) -> None:
        """Offer a frame; replaces (and counts as dropped) one that was not taken yet."""
        with self._cond:
            if self._closed:
                return
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._stamp = time.perf_counter_ns()
            self.received += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> tuple[T, int] | None:
        """The newest frame and when it was put (perf_counter_ns); None on timeout.

        Raises ``GateClosed`` when the gate is closed and holds no frame.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            if self._item is None:
                raise GateClosed
            item, stamp = self._item, self._stamp
            self._item = None
            self.delivered += 1
            return item, stamp

    def frames(self) -> Iterator[tuple[T, int]]:
        """``get`` in a loop for a worker thread: each newest frame, until the gate is closed."""
        while True:
            try:
                got = self.get(timeout=0.5)
            except GateClosed:
                return
            if got is not None:
                yield got

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def waiting(self) -> bool:
        """A frame is there to take."""
        return self._item is not None

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "received": self.received,
                "delivered": self.delivered,
                "dropped": self.dropped,
            }
