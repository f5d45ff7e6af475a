"""Network impairment inside the client's own transport: loss, delay and jitter, both ways.

Wraps one peer connection's ICE transport (``RTCIceTransport._send`` / ``_recv``, the two
functions aiortc's DTLS transport moves every datagram through), as Pion's test interceptors do
on a chain: nothing outside the process is touched, and only SRTP/SRTCP is impaired (DTLS and
STUN pass, so that set-up is not what is measured). Each datagram is dropped with probability
``loss``, otherwise delivered after ``delay ± jitter`` ms (uniform; jitter larger than the
packet spacing reorders them); ``outage_ms`` drops everything, both ways, once, ``outage_at_s``
after the first media datagram. Deterministic for a given ``seed`` (but for the outage's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError


def _is_media(data: bytes) -> bool:
    return bool(data) and 127 < data[0] < 192  # RTP/RTCP (RFC 7983)


@dataclass
class Impairment:
    loss: float = 0.0  # share of media datagrams dropped, each way
    delay_ms: float = 0.0  # added one-way delay
    jitter_ms: float = 0.0  # ± uniform on top of the delay
    seed: int = 0
    outage_ms: float = 0.0  # every media datagram dropped, both ways, for this long …
    outage_at_s: float = 5.0  # … this long after the first one
    outage_dropped: int = 0
    dropped: int = 0
    passed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ConfigError(f"loss: {self.loss} is outside [0, 1)")
        if not 0.0 <= self.delay_ms <= 10_000:
            raise ConfigError(f"delay: {self.delay_ms} ms is outside [0, 10000]")
        if not 0.0 <= self.jitter_ms <= 10_000:
            raise ConfigError(f"jitter: {self.jitter_ms} ms is outside [0, 10000]")
        if not 0.0 <= self.outage_ms <= 60_000:
            raise ConfigError(f"outage: {self.outage_ms} ms is outside [0, 60000]")
        if not 0.0 <= self.outage_at_s <= 3600:
            raise ConfigError(f"outage at: {self.outage_at_s} s is outside [0, 3600]")
        self._rng = random.Random(self.seed)
        self._first: float | None = None

    @property
    def active(self) -> bool:
        return self.loss > 0 or self.delay_ms > 0 or self.jitter_ms > 0 or self.outage_ms > 0

    def _fate(self) -> float | None:
        """None: dropped; otherwise the delay in seconds."""
        if self.outage_ms:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            since = now - self._first - self.outage_at_s
            if 0.0 <= since < self.outage_ms / 1000.0:
                self.outage_dropped += 1
                return None
        if self._rng.random() < self.loss:
            self.dropped += 1
            return None
        self.passed += 1
        spread = self._rng.uniform(-self.jitter_ms, self.jitter_ms) if self.jitter_ms else 0.0
        return max(0.0, self.delay_ms + spread) / 1000.0

    def apply(self, pc: Any) -> None:
        """Impair every ICE transport of ``pc`` (call after setLocalDescription)."""
        if not self.active:
            return
        seen: set[int] = set()
        for transceiver in pc.getTransceivers():
            ice = transceiver.sender.transport.transport
            if id(ice) in seen or getattr(ice, "_livefx_impaired", False):
                continue
            seen.add(id(ice))
            ice._livefx_impaired = True
            ice._send = self._sender(ice._send)
            ice._recv = _DelayedReceiver(ice._recv, self._fate)

    def _sender(self, send: Callable[[bytes], Awaitable[None]]) -> Callable[[bytes], Any]:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()

        def later(data: bytes) -> None:
            task = asyncio.ensure_future(send(data))
            pending.add(task)
            task.add_done_callback(pending.discard)

        async def impaired_send(data: bytes) -> None:
            if not _is_media(data):
                await send(data)
                return
            delay = self._fate()
            if delay is None:
                return
            if delay == 0:
                await send(data)
            else:
                loop.call_later(delay, later, data)

        return impaired_send

    def stats(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "delay_ms": self.delay_ms,
            "jitter_ms": self.jitter_ms,
            "outage_ms": self.outage_ms,
            "dropped": self.dropped,
            "outage_dropped": self.outage_dropped,
            "passed": self.passed,
        }


class _DelayedReceiver:
    """An awaitable ``_recv`` that hands datagrams out when their delay has passed."""

    def __init__(self, recv: Callable[[], Awaitable[bytes]], fate: Callable[[], float | None]):
        self._recv = recv
        self._fate = fate
        self._heap: list[tuple[float, int, bytes]] = []
        self._order = itertools.count()
        self._ready = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None  # started by the first read: ICE is up

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self._recv()
                if not _is_media(data):
                    heapq.heappush(self._heap, (loop.time(), next(self._order), data))
                    self._ready.set()
                    continue
                delay = self._fate()
                if delay is None:
                    continue
                heapq.heappush(self._heap, (loop.time() + delay, next(self._order), data))
                self._ready.set()
        except BaseException as exc:  # the transport closed: let the reader see it
            self._error = exc
            self._ready.set()

    async def __call__(self) -> bytes:
        loop = asyncio.get_running_loop()
        if self._task is None:
            self._task = asyncio.ensure_future(self._pump())
        while True:
            if self._heap:
                due, _, data = self._heap[0]
                wait = due - loop.time()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    return data
                self._ready.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), wait)
                continue
            if self._error is not None:
                raise ConnectionError("transport closed") from self._error
            self._ready.clear()
            await self._ready.wait()
