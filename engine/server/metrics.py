"""``GET /metrics``: the server's figures in Prometheus' text format (``prometheus_client``).

Gauges and counters that describe sessions are read from the registries at scrape time (one
collector), so the frame path pays nothing for them; histograms are observed where the time is
measured: each pipeline stage per frame on the session's worker, each encode on the encoder's
thread, each decode on aiortc's decoder thread. A registry per server, not the process-wide
default, so that several servers in one process (tests) do not collide.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from engine.server.app import LiveFXServer

STAGE_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.133, 0.5)
CODEC_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.133)
END_REASONS = (
    ("deleted", "deleted by the client"),
    ("signalling closed", "signalling closed"),
    ("not connected", "not connected within"),
    ("idle", "no video for"),
    ("no publisher", "no publisher on stream"),
    ("peer gone", "the peer's track ended"),
    ("connection", "connection "),
    ("refused", "offer refused"),
    ("full", "server full"),
    ("stopping", "server stopping"),
    ("worker failed", "worker failed"),
    ("encoder failed", "encoder failed"),
)


def end_reason(reason: str) -> str:
    """A session's end reason as a label of few values."""
    for label, prefix in END_REASONS:
        if reason.startswith(prefix):
            return label
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram(
            "livefx_stage_seconds",
            "Pipeline stage time per frame.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.encode_seconds = Histogram(
            "livefx_encode_seconds",
            "Video encode time per frame (per session, or per stream and codec for WHEP).",
            buckets=CODEC_BUCKETS,
            registry=self.registry,
        )
        self.decode_seconds = Histogram(
            "livefx_decode_seconds",
            "Video decode time per frame.",
            buckets=CODEC_BUCKETS,
            registry=self.registry,
        )
        self.quality_changes = PromCounter(
            "livefx_quality_changes",
            "Budget controller quality level changes.",
            registry=self.registry,
        )
        self.errors = PromCounter(
            "livefx_errors",
            "Errors by kind: frame errors inside sessions, refused requests by HTTP status.",
            ["kind"],
            registry=self.registry,
        )
        self.sessions_started = PromCounter(
            "livefx_sessions_started",
            "Sessions started, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.sessions_ended = PromCounter(
            "livefx_sessions_ended",
            "Sessions ended, by kind and reason.",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.ended_frames: Counter[str] = Counter()  # frames of sessions that have ended

    def attach(self, server: LiveFXServer) -> None:
        self.registry.register(_Live(server, self))

    def observe_stages(self, stages_ms: dict[str, float]) -> None:
        for stage, ms in stages_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000.0)

    def session_ended(self, kind: str, reason: str, frames: dict[str, int]) -> None:
        self.sessions_ended.labels(kind, end_reason(reason)).inc()
        self.ended_frames.update(frames)


class _Live(Collector):
    """What is read from the server at scrape time."""

    def __init__(self, server: LiveFXServer, metrics: Metrics) -> None:
        self.server = server
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        sessions = GaugeMetricFamily(
            "livefx_sessions", "Sessions now, by kind and state.", labels=["kind", "state"]
        )
        counts: Counter[tuple[str, str]] = Counter()
        frames: Counter[str] = Counter(self.metrics.ended_frames)
        for s in list(self.server.sessions.values()):
            counts[(s.kind, "connecting" if s.pending else "connected")] += 1
            frames.update(s.frame_counts())
        for kind in ("sendrecv", "publish", "play"):
            for state in ("connecting", "connected"):
                sessions.add_metric([kind, state], counts[(kind, state)])
        yield sessions
        streams = GaugeMetricFamily("livefx_streams", "WHIP/WHEP streams now.")
        streams.add_metric([], len(self.server.streams))
        yield streams
        total = CounterMetricFamily(
            "livefx_frames", "Video frames, by direction.", labels=["direction"]
        )
        for direction in ("in", "out", "dropped"):
            total.add_metric([direction], frames[direction])
        yield total
        uptime = GaugeMetricFamily("livefx_uptime_seconds", "Seconds since the server started.")
        uptime.add_metric([], time.monotonic() - self.server.started)
        yield uptime
