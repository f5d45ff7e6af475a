"""``livefx bench``: the runs, their order, the server's own figures, and the output.

A run is one target (an offer URL, or a WHIP/WHEP pair) with N concurrent sessions for
``--seconds`` after ``--warmup``. Several targets are measured interleaved: the time is cut into
rounds of about 5 s and the targets take turns in each round, so that a machine whose speed
drifts affects them alike. ``--sessions 1,2,4,8`` sweeps N. When a target is a LiveFX server (its
``/health`` says so), its ``/stats`` are polled during the run: the per-stage times of our
sessions go next to the client's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from engine import __version__
from engine.bench import code, peer
from engine.bench.impair import Impairment
from engine.bench.preencode import EncodedLoop, encode_loop
from engine.errors import ConfigError, EndpointError, InputError
from engine.frame import FrameBuffer

log = logging.getLogger(__name__)

ROUND_S = 5.0  # interleaving slice per target
GRACE_S = 1.0  # after a window, for frames still in flight
STATS_EVERY_S = 1.0
CODES_PER_S = 240  # codes read per second in all, by default (0.1 ms each on one core)


@dataclass(frozen=True)
class Target:
    label: str
    url: str | None = None
    whip: str | None = None
    whep: str | None = None

    def session(self, base: peer.SessionConfig) -> peer.SessionConfig:
        return replace(base, url=self.url, whip=self.whip, whep=self.whep)

    @property
    def origin(self) -> str:
        return peer.origin_of(self.url or self.whip or "")


@dataclass
class BenchConfig:
    targets: list[Target]
    sessions: list[int] = field(default_factory=lambda: [1])
    width: int = 640
    height: int = 480
    fps: float = 30.0
    seconds: float = 10.0
    warmup: float = 2.0
    codec: str = "vp8"
    source: str | None = None
    code_at: tuple[float, float] | None = None
    loss: float = 0.0
    jitter_ms: float = 0.0
    delay_ms: float = 0.0
    seed: int = 0
    outage_ms: float = 0.0
    outage_at_s: float = 5.0
    jitter_buffer: str = "standard"
    browser: bool = False
    token: str | None = None
    pre_encoded: bool | None = None  # None: for load (a sweep, a ramp, N > 1), not for N = 1
    sample: int | None = None  # read one code in this many received frames; None: by load
    ramp: tuple[int, int] | None = None  # ramp N through RAMP_COUNTS within these bounds
    drop_limit: float = 0.02  # a ramp stops past this share of frames not back …
    p95_factor: float = 2.0  # … or a round trip p95 above this × the first step's

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("give an endpoint URL, or --whip URL --whep URL")
        for t in self.targets:
            for url in (t.url, t.whip, t.whep):
                if url is not None and not url.startswith(("http://", "https://")):
                    raise ConfigError(f"{url!r} is not an http:// or https:// URL")
        if any(n < 1 or n > 64 for n in self.sessions):
            raise ConfigError("sessions: each count must be 1 … 64")
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ConfigError(f"size: {self.width}x{self.height} is outside 16x16 … 4096x4096")
        if self.width % 2 or self.height % 2:
            raise ConfigError(f"size: {self.width}x{self.height} must be even both ways")
        if not 1 <= self.fps <= 120:
            raise ConfigError(f"fps: {self.fps} is outside [1, 120]")
        if not 1 <= self.seconds <= 24 * 3600:
            raise ConfigError(f"seconds: {self.seconds} is outside [1, 86400]")
        if not 0 <= self.warmup <= 60:
            raise ConfigError(f"warmup: {self.warmup} is outside [0, 60]")
        if self.codec not in ("vp8", "h264"):
            raise ConfigError(f"codec: {self.codec!r} is not vp8 or h264")
        self.impairment(0)  # the impairment's own range checks
        if self.jitter_buffer not in ("standard", "marker"):
            raise ConfigError(
                f"client jitter buffer: {self.jitter_buffer!r} is not standard or marker"
            )
        if self.sample is not None and not 1 <= self.sample <= 100:
            raise ConfigError(f"sample: 1/{self.sample} is outside 1/1 … 1/100")
        if self.pre_encoded and self.browser:
            raise ConfigError("pre-encoded: the browser sends its own camera (use --live-encode)")
        if self.ramp is not None:
            lo, hi = self.ramp
            if not 1 <= lo <= hi <= 64:
                raise ConfigError(f"sessions: ramp:{lo}..{hi} is outside 1 … 64")
            if len(self.targets) != 1 or self.targets[0].url is None or self.browser:
                raise ConfigError("sessions: a ramp runs against one offer URL (no WHIP, browser)")
        if not 0 < self.drop_limit < 1:
            raise ConfigError(f"drop limit: {self.drop_limit} is outside (0, 1)")
        if not self.p95_factor > 1:
            raise ConfigError(f"p95 factor: {self.p95_factor} must be above 1")

    @property
    def uses_pre_encoded(self) -> bool:
        """Pre-encoded packets unless asked otherwise, for load: a ramp, a sweep, N > 1."""
        if self.pre_encoded is not None:
            return self.pre_encoded
        return not self.browser and (self.ramp is not None or max(self.sessions) > 1)

    def sample_for(self, n: int) -> int:
        """Read the code of one received frame in this many: ``--sample``, or by load: every
        frame up to ``CODES_PER_S`` frames a second in all (8 sessions at 30 fps), one in k
        above (1/4 at 32 sessions at 30 fps)."""
        if self.sample is not None:
            return self.sample
        return max(1, math.ceil(n * self.fps / CODES_PER_S))

    def impairment(self, index: int) -> Impairment | None:
        imp = Impairment(
            self.loss, self.delay_ms, self.jitter_ms, seed=self.seed + index,
            outage_ms=self.outage_ms, outage_at_s=self.outage_at_s,
        )  # fmt: skip
        return imp if imp.active else None

    def layout(self) -> code.Layout:
        cx, cy = self.code_at or (code.SAMPLE_TORSO if self.source is None else (0.5, 0.5))
        layout = code.Layout(cx, cy)
        if not layout.fits(self.width, self.height):
            raise ConfigError(
                f"code-at: a code centred at {cx}, {cy} does not fit in {self.width}x{self.height}"
            )
        return layout


# -- source frames -------------------------------------------------------------------------------


def source_frames(config: BenchConfig, count: int = 90) -> list[FrameBuffer]:
    """The frames to send: the shipped sample (a person over a background, moving) or a file."""
    from engine.ops import cpu

    w, h = config.width, config.height
    if config.source is None:
        from engine.samples import composited_clip

        return composited_clip(w, h, count, motion="sway", noise=2.0).frames
    from engine import media
    from engine.samples import fit

    path = media.check_readable(config.source)
    if media.is_image_path(path):
        still = cpu.rgb_to_yuv420p(fit(media.read_rgb(path), w, h), full_range=False)
        return [still]
    frames = []
    for fb in media.VideoReader(path):
        frames.append(cpu.rgb_to_yuv420p(fit(cpu.yuv420p_to_rgb(fb), w, h), full_range=False))
        if len(frames) >= count:
            break
    if not frames:
        raise InputError(f"{path}: no frame could be decoded")
    return frames


# -- the client's floor --------------------------------------------------------------------------


def codec_floor(config: BenchConfig, frames: list[FrameBuffer], n: int = 60) -> dict[str, Any]:
    """This client's own encode and decode time (aiortc's codecs, as the sessions use them): the
    part of any round trip that no server can remove. ``floor_ms`` = 2 × (encode + decode): the
    client encodes and decodes once each, an echo decodes and encodes once each."""
    from aiortc.codecs import depayload, get_decoder, get_encoder
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from engine.media import frame_to_av

    mime = "video/H264" if config.codec == "h264" else "video/VP8"
    params = RTCRtpCodecParameters(mimeType=mime, clockRate=90_000)
    encoder, decoder = get_encoder(params), get_decoder(params)
    enc_ms, dec_ms = [], []
    for i in range(n + 10):
        frame = frame_to_av(frames[i % len(frames)])
        frame.pts, frame.time_base = i * 3000, peer.CLOCK
        t = time.perf_counter()
        payloads, ts = encoder.encode(frame, False)
        t_enc = time.perf_counter() - t
        data = b"".join(depayload(params, p) for p in payloads)
        t = time.perf_counter()
        decoder.decode(JitterFrame(data, ts))
        t_dec = time.perf_counter() - t
        if i >= 10:
            enc_ms.append(t_enc * 1000)
            dec_ms.append(t_dec * 1000)
    encode, decode = statistics.median(enc_ms), statistics.median(dec_ms)
    jb_frames = 1 if config.jitter_buffer == "standard" else 0
    return {
        "codec": config.codec,
        "encode_ms": round(encode, 2),
        "decode_ms": round(decode, 2),
        "floor_ms": round(2 * (encode + decode), 2),
        # aiortc's standard jitter buffer holds each frame until the next one starts: one frame
        # interval at this client's receiver (and as much again at an aiortc echo's).
        "jitter_buffer_ms": round(jb_frames * 1000 / config.fps, 2),
    }


# -- the server's own figures --------------------------------------------------------------------


async def server_info(
    http: aiohttp.ClientSession, origin: str, token: str | None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        async with http.get(origin + "/health", headers=headers) as r:
            if r.status == 200:
                health = await r.json(content_type=None)
                if isinstance(health, dict) and "version" in health and "mode" in health:
                    return {"livefx": True, "version": health["version"], "mode": health["mode"]}
    return {"livefx": False}


class StatsPoller:
    """Polls a LiveFX server's /stats for the sessions of a run and keeps their stage medians."""

    def __init__(self, http: aiohttp.ClientSession, origin: str, token: str | None) -> None:
        self.http = http
        self.origin = origin
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.stages: dict[str, list[float]] = {}
        self.settings: dict[str, Any] | None = None
        self.quality: list[str] = []
        self.errors: list[str] = []
        self.gpu_ms: list[float] = []
        self.process: list[tuple[float, float, int]] = []  # (our clock, server CPU s, cores)

    async def poll(self, ids: list[str]) -> None:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            async with self.http.get(self.origin + "/stats", headers=self.headers) as r:
                if r.status != 200:
                    return
                stats = await r.json(content_type=None)
            proc = stats.get("process")
            if isinstance(proc, dict) and isinstance(proc.get("cpu_s"), (int, float)):
                cores = int(proc.get("cores") or os.cpu_count() or 1)
                self.process.append((time.perf_counter(), float(proc["cpu_s"]), cores))
            for s in stats.get("sessions", []):
                if s.get("session") not in ids or s.get("kind") == "play":
                    continue  # a WHEP player runs no pipeline: its publisher's figures count
                for stage, v in (s.get("stages") or {}).items():
                    if isinstance(v, dict) and v.get("median_ms") is not None:
                        self.stages.setdefault(stage, []).append(float(v["median_ms"]))
                self.settings = s.get("settings") or self.settings
                gpu = _gpu_ms(s)
                if gpu is not None:
                    self.gpu_ms.append(gpu)
                if s.get("quality"):
                    self.quality.append(str(s["quality"]))
                self.errors.extend(str(e) for e in s.get("errors") or [])

    def cpu(self) -> dict[str, float] | None:
        """The server process's CPU between the first and the last reading: % of one core and
        % of all its cores (None without two readings, or for a server that gives none)."""
        if len(self.process) < 2:
            return None
        (t0, c0, cores), (t1, c1, _) = self.process[0], self.process[-1]
        if t1 - t0 < 0.2:
            return None
        one = 100.0 * (c1 - c0) / (t1 - t0)
        return {"one_core_pct": round(one, 1), "all_cores_pct": round(one / cores, 1),
                "cores": cores}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {
            "gpu_ms": round(statistics.median(self.gpu_ms), 3) if self.gpu_ms else None,
            "cpu": self.cpu(),
            "stages_ms": {k: round(statistics.median(v), 3) for k, v in self.stages.items()},
            "settings": self.settings,
            "quality": max(set(self.quality), key=self.quality.count) if self.quality else None,
            "errors": sorted(set(self.errors))[:5],
        }


def _gpu_ms(session: dict[str, Any]) -> float | None:
    """GPU time per frame of one session in /stats: its own ``gpu_ms`` when the server gives
    one, else the pipeline's total on the cuda backend (the frame's stages run on the GPU and
    the worker waits for them), else None."""
    value = session.get("gpu_ms")
    if isinstance(value, (int, float)):
        return float(value)
    settings = session.get("settings") or {}
    total = (session.get("stages") or {}).get("total")
    if settings.get("backend") == "cuda" and isinstance(total, dict):
        median = total.get("median_ms")
        return float(median) if isinstance(median, (int, float)) else None
    return None


# -- runs ----------------------------------------------------------------------------------------


async def measure(
    config: BenchConfig,
    target: Target,
    n: int,
    seconds: float,
    frames: list[FrameBuffer],
    layout: code.Layout,
    http: aiohttp.ClientSession,
    livefx: bool,
    progress: Progress,
    loop: EncodedLoop | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any]]:
    """N concurrent sessions against one target for ``warmup`` + ``seconds``: each session's
    figures, the server's (LiveFX only) and the client's own codec times. With ``loop``, the
    sessions send its packets (no encoder in this client)."""
    base = peer.SessionConfig(
        fps=config.fps, codec=config.codec, token=config.token, sample=config.sample_for(n)
    )
    sessions = [
        peer.BenchSession(
            replace(target.session(base), impairment=config.impairment(i)), frames, layout, http,
            loop,
        )
        for i in range(n)
    ]  # fmt: skip
    poller = StatsPoller(http, target.origin, config.token) if livefx else None
    peer.codec_times.reset(layout, trace=n == 1)
    client: dict[str, Any] = {}
    try:
        # One after the other, each once connected: a server may limit the sessions one
        # address has connecting at a time (LiveFX: 2).
        for s in sessions:
            await s.start()
        t0 = time.perf_counter()
        start = t0 + config.warmup
        end = start + seconds
        ids = [i for s in sessions for i in s.session_ids]
        done = 0.0
        while (now := time.perf_counter()) < end + GRACE_S:
            await asyncio.sleep(min(STATS_EVERY_S, max(end + GRACE_S - now, 0.01)))
            if poller is not None and time.perf_counter() >= start:
                await poller.poll(ids)
            measured = min(max(time.perf_counter() - start, 0.0), seconds)
            progress.advance(measured - done)
            done = measured
        summaries = [s.measurement.summary(start, end, s.sent_size, GRACE_S) for s in sessions]
        for s, summary in zip(sessions, summaries, strict=True):
            if summary["received"] == 0 and summary["condition"] is None:
                summary["condition"] = "no media came back"
                s.measurement.condition = summary["condition"]
        client = dict(peer.codec_times.medians())
        window = [r for s in sessions for r in s.measurement.records if start <= r.sent <= end]
        client["timeline"] = peer.codec_times.timeline(window)
    finally:
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)
    return summaries, poller.summary() if poller is not None else None, client


def merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's figures from several sessions (and rounds)."""
    rtts = [rtt for s in summaries for _, rtt in s["series"]]
    freeze = [s["longest_freeze_ms"] for s in summaries if s["longest_freeze_ms"] is not None]
    sent = sum(s["sent"] for s in summaries)
    matched = sum(s["matched"] for s in summaries)
    dropped = sum(s.get("dropped", 0) for s in summaries)
    conditions = sorted({s["condition"] for s in summaries if s["condition"]})
    return {
        "sent": sent,
        "received": sum(s["received"] for s in summaries),
        "matched": matched,
        "unreadable": sum(s["unreadable"] for s in summaries),
        "matched_share": round(matched / sent, 4) if sent else 0.0,
        "sample": max((s.get("sample", 1) for s in summaries), default=1),
        "dropped": dropped,
        "dropped_share": round(dropped / sent, 4) if sent else 0.0,
        "rtt_ms": peer.percentiles(rtts),
        "longest_freeze_ms": max(freeze) if freeze else None,
        "fps_out": round(statistics.mean(s["fps_out"] for s in summaries), 1) if summaries else 0.0,
        "resized": sorted({r for s in summaries for r in s["resized"]}),
        "conditions": conditions,
    }


def decomposition(
    run: dict[str, Any],
    client: dict[str, Any],
    server: dict[str, Any] | None,
    jitter_buffer_ms: float,
) -> dict[str, float] | None:
    """The round trip's median split, summing to the median:

    client encode and decode (timed per frame in a one-session run, else their medians); the
    client's own time around them (the tool's overhead: pacing hand-off, reading the code,
    aiortc's hand-offs; one-session runs only); the server's pipeline stages (its /stats, LiveFX
    only); the client's jitter buffer (aiortc's standard one holds a frame about one frame
    interval, the marker one not at all; the browser's own figure from getStats); and the rest:
    network and the server's own decode, encode and transport.
    """
    median = run["rtt_ms"]["median"]
    if median is None:
        return None
    timeline = client.get("timeline")
    if timeline:
        encode, decode = timeline["encode_ms"], timeline["decode_ms"]
        own = timeline["before_encode_ms"] + timeline["after_decode_ms"]
    else:
        encode, decode, own = client.get("encode_ms") or 0.0, client.get("decode_ms") or 0.0, 0.0
    stages = 0.0
    if server and server.get("stages_ms"):
        total = server["stages_ms"].get("total")
        stages = total if total is not None else sum(server["stages_ms"].values())
    left = max(median - encode - decode - own - stages, 0.0)
    held = min(jitter_buffer_ms, left)
    return {
        "client_encode_ms": round(encode, 2),
        "client_own_ms": round(own, 2),
        "server_stages_ms": round(stages, 2),
        "client_decode_ms": round(decode, 2),
        "client_jitter_buffer_ms": round(held, 2),
        "network_server_io_ms": round(left - held, 2),
    }


def _above_floor(run: dict[str, Any], client: dict[str, Any], held: float) -> float | None:
    """Median round trip − the floor of this run: 2 × (the client's encode + decode as timed in
    it; an echo does the same work) − the client's jitter buffer. For a zero-delay echo this is
    all that is not codec work: the tool's own, the echo's and the transport's."""
    median = run["rtt_ms"]["median"]
    if run["sessions"] != 1:
        return None  # several sessions share the machine: no single floor to compare with
    timeline = client.get("timeline") or {}
    encode = timeline.get("encode_ms") or client.get("encode_ms")
    decode = timeline.get("decode_ms") or client.get("decode_ms")
    if median is None or encode is None or decode is None:
        return None
    return round(median - 2 * (encode + decode) - held, 2)


def _merge_client(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Codec figures of a run's rounds: the mean of each round's medians."""

    def mean(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.mean(values), 2) if values else None

    out: dict[str, Any] = {
        key: mean([p.get(key) for p in parts])
        for key in ("encode_ms", "decode_ms", "jitter_buffer_ms")
    }
    timelines = [p["timeline"] for p in parts if p.get("timeline")]
    out["timeline"] = (
        {k: mean([t[k] for t in timelines]) for k in (*peer.TIMELINE, "frames")}
        if timelines
        else None
    )
    return out


async def bench(config: BenchConfig, progress_bar: bool = True) -> dict[str, Any]:
    from engine.server import rtc

    frames = source_frames(config)
    layout = config.layout()
    rtc.install_jitter_buffer(low_latency=config.jitter_buffer == "marker")
    rtc.install_encoders(None)  # aiortc's own encoders: a plain client
    peer.codec_times.install()
    floor = codec_floor(config, frames)
    loop = (
        encode_loop(frames, layout, config.fps, config.codec) if config.uses_pre_encoded else None
    )
    rounds = 1 if len(config.targets) == 1 else max(1, round(config.seconds / ROUND_S))
    slice_s = config.seconds / rounds
    timeout = aiohttp.ClientTimeout(total=peer.HTTP_TIMEOUT_S)
    planned = len(config.sessions) * len(config.targets) * config.seconds
    progress = Progress(planned, progress_bar)
    runs: list[dict[str, Any]] = []
    sessions_out: list[dict[str, Any]] = []
    servers: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for target in config.targets:
            servers[target.origin] = await server_info(http, target.origin, config.token)
        if config.browser:
            from engine.bench.browser import BrowserRunner

            runner: Any = BrowserRunner(config, frames, layout)
            await runner.start()
        else:
            runner = None
        try:
            for n in config.sessions:
                collected: dict[str, list[dict[str, Any]]] = {t.label: [] for t in config.targets}
                server_runs: dict[str, list[dict[str, Any]]] = {t.label: [] for t in config.targets}
                client_runs: dict[str, list[dict[str, Any]]] = {t.label: [] for t in config.targets}
                for _ in range(rounds):
                    for target in config.targets:
                        livefx = servers[target.origin]["livefx"]
                        if runner is not None:
                            summaries, srv, codecs = await runner.measure(
                                target, n, slice_s, http, livefx, progress
                            )
                        else:
                            summaries, srv, codecs = await measure(
                                config, target, n, slice_s, frames, layout, http, livefx,
                                progress, loop,
                            )  # fmt: skip
                        collected[target.label].extend(summaries)
                        client_runs[target.label].append(codecs)
                        if srv is not None:
                            server_runs[target.label].append(srv)
                for target in config.targets:
                    summaries = collected[target.label]
                    run = {"target": target.label, "sessions": n, **merge(summaries)}
                    srv = _merge_server(server_runs[target.label])
                    run["server"] = srv
                    client = _merge_client(client_runs[target.label])
                    run["client"] = client
                    held = client.get("jitter_buffer_ms") if runner else floor["jitter_buffer_ms"]
                    run["decomposition"] = decomposition(run, client, srv, held or 0.0)
                    run["above_floor_ms"] = _above_floor(run, client, held or 0.0)
                    run["series"] = [pt for s in summaries for pt in s["series"]][:20_000]
                    runs.append(run)
                    for i, s in enumerate(summaries):
                        sessions_out.append(
                            {"target": target.label, "run_sessions": n, "session": i,
                             **{k: v for k, v in s.items() if k != "series"}}
                        )  # fmt: skip
        finally:
            if runner is not None:
                await runner.stop()
            progress.close()
    all_rtts = [rtt for r in runs for _, rtt in r["series"]]
    result = {
        "rtt_ms": peer.percentiles(all_rtts),
        "sessions": sessions_out,
        "runs": runs,
        "config": _config_json(config, layout, rounds),
        "server": servers,
        "floor": floor,
        "pre_encoded": _loop_json(loop),
        "machine": machine_json(),
    }
    return result


def machine_json() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "livefx": __version__,
    }


def _loop_json(loop: EncodedLoop | None) -> dict[str, Any] | None:
    if loop is None:
        return None
    return {
        "codec": loop.codec,
        "frames": loop.length,
        "seconds": round(loop.length / loop.fps, 2),
        "keyframes": sum(loop.keyframes),
        "mbit_s": round(loop.bytes_per_second * 8 / 1e6, 2),
        "encode_s": round(loop.encode_s, 2),
    }


def _merge_server(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not runs:
        return None
    gpu = [r["gpu_ms"] for r in runs if r.get("gpu_ms") is not None]
    cpu = [r["cpu"] for r in runs if r.get("cpu")]
    stages: dict[str, list[float]] = {}
    for r in runs:
        for k, v in r["stages_ms"].items():
            stages.setdefault(k, []).append(v)
    return {
        "stages_ms": {k: round(statistics.median(v), 3) for k, v in stages.items()},
        "settings": next((r["settings"] for r in reversed(runs) if r["settings"]), None),
        "quality": runs[-1]["quality"],
        "errors": sorted({e for r in runs for e in r["errors"]})[:5],
        "gpu_ms": round(statistics.median(gpu), 3) if gpu else None,
        "cpu": cpu[-1] if cpu else None,
    }


def _config_json(config: BenchConfig, layout: code.Layout, rounds: int) -> dict[str, Any]:
    out = asdict(config)
    out["targets"] = [asdict(t) for t in config.targets]
    out.pop("token", None)
    out["token"] = bool(config.token)
    out["size"] = f"{config.width}x{config.height}"
    out["rounds"] = rounds
    out["code"] = layout.as_dict()
    out["client"] = "headless Chromium" if config.browser else "aiortc"
    out["pre_encoded"] = config.uses_pre_encoded
    out["sample"] = config.sample if config.sample is not None else "auto"
    return out


class Progress:
    """Measured seconds out of the planned ones, as a bar on a terminal (stderr); silent else."""

    def __init__(self, total: float, enabled: bool) -> None:
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=round(total, 1), unit="s", desc="livefx bench", file=sys.stderr, leave=False
            )

    def advance(self, seconds: float) -> None:
        if self.bar is not None and seconds > 0:
            self.bar.update(round(seconds, 2))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# -- the table -----------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    cfg = result["config"]
    floor = result["floor"]
    loop = result.get("pre_encoded")
    sending = (
        f"pre-encoded {loop['codec']} loop of {loop['frames']} frames ({loop['mbit_s']} Mbit/s)"
        if loop
        else f"{cfg['codec']} encoded by the client"
    )
    lines = [
        f"livefx bench: {cfg['size']} at {cfg['fps']:g} fps, {sending}, "
        f"{cfg['seconds']:g} s per run after {cfg['warmup']:g} s, client {cfg['client']} "
        f"({cfg['jitter_buffer']} jitter buffer)",
        f"client codecs alone: encode {floor['encode_ms']} + decode {floor['decode_ms']} ms, "
        f"both ways {floor['floor_ms']} ms"
        + (f" (+ {floor['jitter_buffer_ms']} ms in this client's standard jitter buffer)"
           if floor["jitter_buffer_ms"] else ""),
    ]  # fmt: skip
    imp = cfg["loss"], cfg["delay_ms"], cfg["jitter_ms"]
    if any(imp):
        lines.append(
            f"impairment in the client's transport, both ways: loss {imp[0] * 100:g} %, "
            f"delay {imp[1]:g} ms, jitter ±{imp[2]:g} ms"
        )
    lines.append("")
    lines.append(
        f"  {'target':<44} {'n':>2} {'median':>7} {'p95':>7} {'p99':>7} {'max':>7} "
        f"{'matched':>13} {'fps out':>7} {'freeze':>7}"
    )
    for r in result["runs"]:
        rtt = r["rtt_ms"]

        def ms(v: Any) -> str:
            return "-" if v is None else f"{v:.1f}"

        label = r["target"] if len(r["target"]) <= 44 else "…" + r["target"][-43:]
        matched = f"{r['matched']}/{r['sent']}"
        freeze = ms(r["longest_freeze_ms"])
        lines.append(
            f"  {label:<44} {r['sessions']:>2} {ms(rtt['median']):>7} {ms(rtt['p95']):>7} "
            f"{ms(rtt['p99']):>7} {ms(rtt['max']):>7} {matched:>13} {r['fps_out']:>7} {freeze:>7}"
        )
        notes = list(r["conditions"])
        if r["resized"]:
            notes.append("came back at " + ", ".join(r["resized"]))
        if r["unreadable"]:
            notes.append(f"{r['unreadable']} frames without a readable code")
        if r.get("sample", 1) > 1:
            notes.append(
                f"codes read on 1 received frame in {r['sample']}; "
                f"{100 * r['dropped_share']:.1f} % of frames not back (counted)"
            )
        if notes:
            lines.append(f"  {'':<44}    " + "; ".join(notes))
        d = r["decomposition"]
        if d:
            split = [f"client encode {d['client_encode_ms']}"]
            if d["client_own_ms"]:
                split.append(f"client's own {d['client_own_ms']}")
            if r["server"]:
                split.append(f"server stages {d['server_stages_ms']}")
            split.append(f"client decode {d['client_decode_ms']}")
            if d["client_jitter_buffer_ms"]:
                split.append(f"client jitter buffer {d['client_jitter_buffer_ms']}")
            split.append(f"network + server I/O {d['network_server_io_ms']} ms")
            lines.append(f"  {'':<44}    median: " + ", ".join(split))
            if r.get("above_floor_ms") is not None:
                lines.append(
                    f"  {'':<44}    {r['above_floor_ms']} ms above this run's floor "
                    "(2 × the client's encode + decode, and its jitter buffer)"
                )
    return "\n".join(lines)


def emit(
    result: dict[str, Any],
    text: Callable[[dict[str, Any]], str],
    as_json: bool,
    report_dir: str | None,
) -> None:
    """The report's files (``report_dir``), then the result: one JSON line, or its table."""
    if report_dir is not None:
        from engine.bench.report import write_report

        written = write_report(result, Path(report_dir))
        result["report"] = [str(p) for p in written]
    if as_json:
        print(json.dumps(result))
    else:
        print(text(result))
        if report_dir is not None:
            print(f"\nreport: {Path(report_dir) / 'report.html'}")


def run(config: BenchConfig, as_json: bool, report_dir: str | None) -> int:
    if config.ramp is not None:
        from engine.bench import load

        return load.run(config, as_json, report_dir)
    result = asyncio.run(bench(config, progress_bar=not as_json))
    emit(result, table, as_json, report_dir)
    if all(r["matched"] == 0 for r in result["runs"]):
        conditions = sorted({c for r in result["runs"] for c in r["conditions"]})
        raise EndpointError(
            "no frame came back with a readable code"
            + (f" ({'; '.join(conditions)})" if conditions else "")
            + ": does the endpoint send the picture back?"
        )
    return 0
