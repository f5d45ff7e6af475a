"""Per-client limits on offers: a token bucket per client address (``--offer-rate``)."""

from __future__ import annotations

import math
import time

from engine.server.middleware import HttpError

MAX_CLIENTS = 10_000  # buckets kept; idle ones are forgotten first


class OfferLimiter:
    """At most ``burst`` offers at once from one address, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, when)

    def take(self, client: str) -> None:
        """Spend one offer for ``client``, or raise 429 with how long to wait."""
        now = time.monotonic()
        tokens, when = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            wait = math.ceil((1.0 - tokens) / self.rate)
            raise HttpError(
                429,
                f"too many offers from {client}: {self.burst} at once, then {self.rate:g} per "
                "second",
                {"Retry-After": str(max(wait, 1))},
            )
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > MAX_CLIENTS:
            full = [
                c for c, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst
            ]
            for c in full[: len(self._buckets) - MAX_CLIENTS // 2]:
                del self._buckets[c]
