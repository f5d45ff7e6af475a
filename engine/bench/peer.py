"""The benchmark's client: a plain aiortc peer that stamps each frame's number into its picture.

One ``BenchSession`` is one measured session against one target: ``POST`` an offer to an
endpoint that answers with SDP (LiveFX's ``/offer``, an echo, a WHIP endpoint that echoes), or
publish to a WHIP URL and play from a WHEP URL. Frames are paced at ``fps``; each frame's send
time is when aiortc's sender takes it (its encoder runs after); each received frame's code is
read as it comes out of aiortc's receiver. Round trip = receive time − send time, both on this
process's clock; frames without a readable code are counted, not guessed.

Nothing here is LiveFX-specific: the peer is aiortc with its own encoders and (by default) its
own jitter buffer, the figures a normal client sees. ``CodecTimes`` wraps aiortc's encoder and
decoder factories to time them (the decomposition and the tool's own floor).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from yarl import URL

from engine.bench import code
from engine.bench.impair import Impairment
from engine.bench.preencode import EncodedLoop, PacketCamera
from engine.errors import EndpointError
from engine.frame import FrameBuffer
from engine.media import frame_to_av, luma_view

log = logging.getLogger(__name__)

CLOCK = fractions.Fraction(1, 90_000)
HTTP_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
RETRY_BUDGET_S = 15.0  # waiting out a server's 429/503 Retry-After, per offer


# -- what was measured ---------------------------------------------------------------------------


@dataclass
class Record:
    number: int
    sent: float  # perf_counter seconds
    received: float


@dataclass
class Measurement:
    """Everything one session saw; ``summary`` turns the measured window into figures."""

    sent: dict[int, float] = field(default_factory=dict)  # frame number → send time
    records: list[Record] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # every decoded frame
    unreadable: list[float] = field(default_factory=list)  # frames without a readable code
    duplicates: int = 0
    sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    connected_at: float | None = None
    condition: str | None = None  # e.g. "no media", "connection failed"
    sample: int = 1  # the code of one received frame in ``sample`` is read

    def add(self, number: int | None, now: float, size: tuple[int, int]) -> None:
        self.arrivals.append(now)
        self.sizes[size] += 1
        if number is None:
            self.unreadable.append(now)
            return
        sent = self.sent.get(number)
        if sent is None or any(r.number == number for r in self.records[-8:]):
            self.duplicates += 1
            return
        self.records.append(Record(number, sent, now))

    def arrived(self, now: float, size: tuple[int, int]) -> None:
        """A received frame whose code was not read (``sample`` > 1): counted, not matched."""
        self.arrivals.append(now)
        self.sizes[size] += 1

    def summary(
        self, start: float, end: float, sent_size: tuple[int, int], grace: float = 1.0
    ) -> dict[str, Any]:
        """Figures over frames sent in [start, end] (and what arrived until ``end`` + grace).

        ``dropped`` counts frames, not codes (every received frame counts, read or not): the
        frames sent in the window less those received in the same window moved on by the
        median round trip (at most ``grace``)."""
        sent = [n for n, t in self.sent.items() if start <= t <= end]
        window = [r for r in self.records if start <= r.sent <= end]
        rtts = [(r.received - r.sent) * 1000.0 for r in window]
        arrivals = [t for t in self.arrivals if start <= t <= end]
        shift = min(float(np.median(rtts)) / 1000.0, grace) if rtts else 0.0
        back = sum(1 for t in self.arrivals if start + shift <= t <= end + shift)
        dropped = max(len(sent) - back, 0)
        gaps = np.diff(arrivals) * 1000.0 if len(arrivals) > 1 else np.array([])
        seconds = max(end - start, 1e-6)
        resized = [f"{w}x{h}" for (w, h) in self.sizes if (w, h) != sent_size]
        return {
            "sent": len(sent),
            "received": len(arrivals),
            "matched": len(window),
            "unreadable": sum(1 for t in self.unreadable if start <= t <= end),
            "duplicates": self.duplicates,
            "matched_share": round(len(window) / len(sent), 4) if sent else 0.0,
            "sample": self.sample,
            "dropped": dropped,
            "dropped_share": round(dropped / len(sent), 4) if sent else 0.0,
            "rtt_ms": percentiles(rtts),
            "longest_freeze_ms": round(float(gaps.max()), 1) if gaps.size else None,
            "fps_in": round(len(sent) / seconds, 1),
            "fps_out": round(len(arrivals) / seconds, 1),
            "resized": resized,
            "condition": self.condition,
            "series": [
                [round(r.sent - start, 3), round((r.received - r.sent) * 1000.0, 2)] for r in window
            ],
        }


def percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"median": None, "p95": None, "p99": None, "max": None, "count": 0}
    a = np.asarray(values, dtype=np.float64)
    return {
        "median": round(float(np.median(a)), 2),
        "p95": round(float(np.percentile(a, 95)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
        "count": int(a.size),
    }


# -- the client's codecs, timed ------------------------------------------------------------------


class CodecTimes:
    """Times aiortc's own video encoders and decoders in this process (wrapping their factories;
    what they do is unchanged).

    With ``trace`` on (a run of one session), each frame's encode and decode are also keyed by
    the number read from its picture, so that its round trip splits into: this client before
    encoding, encode, transit (network, the server, this client's jitter buffer), decode, and
    this client after decoding — the last and the first being the tool's own overhead.
    """

    def __init__(self) -> None:
        self.encode_ms: list[float] = []
        self.decode_ms: list[float] = []
        self.layout: code.Layout | None = None
        self.trace = False
        self.encoded: dict[int, tuple[float, float]] = {}  # number → (start, end)
        self.decoded: dict[int, tuple[float, float]] = {}
        self._installed = False

    def reset(self, layout: code.Layout, trace: bool) -> None:
        self.encode_ms.clear()
        self.decode_ms.clear()
        self.encoded.clear()
        self.decoded.clear()
        self.layout, self.trace = layout, trace

    def _number(self, frame: Any) -> int | None:
        if not self.trace or self.layout is None or not isinstance(frame, av.VideoFrame):
            return None
        with contextlib.suppress(Exception):
            return read_frame(frame, self.layout)
        return None

    def install(self) -> None:
        if self._installed:
            return
        import aiortc.rtcrtpsender as sender

        from engine.server.rtc.encoders import install_decode_timing

        make_encoder = sender.get_encoder
        times = self

        def get_encoder(codec: Any) -> Any:
            inner = make_encoder(codec)
            if not codec.mimeType.lower().startswith("video/"):
                return inner
            original = inner.encode

            def encode(frame: Any, force_keyframe: bool = False) -> Any:
                number = times._number(frame)
                t = time.perf_counter()
                result = original(frame, force_keyframe)
                end = time.perf_counter()
                times.encode_ms.append((end - t) * 1000.0)
                if number is not None:
                    times.encoded[number] = (t, end)
                return result

            setattr(inner, "encode", encode)  # noqa: B010  (an instance's own, timed)
            return inner

        def decoded(start: float, end: float, frames: list[Any]) -> None:
            times.decode_ms.append((end - start) * 1000.0)
            for frame in frames if times.trace else ():
                number = times._number(frame)
                if number is not None:
                    times.decoded[number] = (start, end)

        sender.get_encoder = get_encoder
        install_decode_timing(decoded)
        self._installed = True

    def medians(self) -> dict[str, float | None]:
        def med(values: list[float]) -> float | None:
            return round(statistics.median(values), 2) if values else None

        return {"encode_ms": med(self.encode_ms[-600:]), "decode_ms": med(self.decode_ms[-600:])}

    def timeline(self, records: list[Record]) -> dict[str, float] | None:
        """Median split of traced frames' round trips (see the class's text)."""
        parts: dict[str, list[float]] = {k: [] for k in TIMELINE}
        for r in records:
            enc, dec = self.encoded.get(r.number), self.decoded.get(r.number)
            if enc is None or dec is None or not r.sent <= enc[0] <= enc[1] <= dec[0] <= r.received:
                continue
            for key, value in zip(
                TIMELINE,
                (enc[0] - r.sent, enc[1] - enc[0], dec[0] - enc[1], dec[1] - dec[0],
                 r.received - dec[1]),
                strict=True,
            ):  # fmt: skip
                parts[key].append(value * 1000.0)
        if not parts["encode_ms"]:
            return None
        out = {k: round(statistics.median(v), 2) for k, v in parts.items()}
        out["frames"] = len(parts["encode_ms"])
        return out


TIMELINE = ("before_encode_ms", "encode_ms", "transit_ms", "decode_ms", "after_decode_ms")


codec_times = CodecTimes()


# -- the camera ----------------------------------------------------------------------------------


class CodedCamera(MediaStreamTrack):
    """Sends ``frames`` round and round at ``fps``, each stamped with its number."""

    kind = "video"

    def __init__(
        self, frames: list[FrameBuffer], fps: float, layout: code.Layout, sent: dict[int, float]
    ) -> None:
        super().__init__()
        self.frames = frames
        self.fps = fps
        self.layout = layout
        self.sent = sent
        self.count = 0
        self.skipped = 0  # frames the sender was too busy to take
        self._start: float | None = None
        self._pool: list[av.VideoFrame | None] = [None] * 6

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.perf_counter()
        i = self.count
        # A camera does not wait for a busy sender: frames it could not take are gone.
        due = int((time.perf_counter() - self._start) * self.fps)
        if due > i:
            self.skipped += due - i
            i = due
        wait = self._start + i / self.fps - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = frame_to_av(self.frames[i % len(self.frames)], self._pool[i % len(self._pool)])
        self._pool[i % len(self._pool)] = frame
        code.stamp(luma_view(frame), i, self.layout)
        frame.pts = round(i * 90_000 / self.fps)
        frame.time_base = CLOCK
        self.count = i + 1
        self.sent[i % code.MODULO] = time.perf_counter()
        return frame


def read_frame(frame: av.VideoFrame, layout: code.Layout) -> int | None:
    if frame.format.name not in ("yuv420p", "yuvj420p", "nv12"):
        frame = frame.reformat(format="yuv420p")
    return code.read(luma_view(frame), layout)


# -- HTTP ----------------------------------------------------------------------------------------


async def post_offer(
    http: aiohttp.ClientSession, url: str, sdp: str, token: str | None
) -> tuple[str, str | None]:
    """POST an offer; the answer and the session's absolute URL (Location), or EndpointError."""
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        async with http.post(url, data=sdp.encode(), headers=headers) as r:
            body = await r.text(errors="replace")
            if r.status >= 400:
                first = body.strip().splitlines()[0][:200] if body.strip() else r.reason
                error = EndpointError(f"{url} refused the offer: {r.status} {first}")
                error.status = r.status  # type: ignore[attr-defined]
                retry = r.headers.get("Retry-After", "")
                error.retry_after = float(retry) if retry.isdigit() else None  # type: ignore[attr-defined]
                raise error
            if not body.startswith("v=0"):
                kind = r.headers.get("Content-Type", "no content type")
                raise EndpointError(
                    f"{url} answered {r.status} but not with SDP ({kind}, {len(body)} bytes)"
                )
            location = r.headers.get("Location")
            return body, (str(r.url.join(URL(location))) if location else None)
    except aiohttp.ClientConnectorError as exc:
        raise EndpointError(f"cannot reach {url}: {exc.os_error or exc}") from None
    except aiohttp.InvalidURL:
        raise EndpointError(f"not a URL: {url}") from None
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise EndpointError(f"{url}: no answer ({type(exc).__name__} {exc})".strip()) from None


async def post_offer_patiently(
    http: aiohttp.ClientSession,
    url: str,
    sdp: str,
    token: str | None,
    statuses: tuple[int, ...] = (429, 503),
) -> tuple[str, str | None]:
    """``post_offer``, asked again when the server says when to come back (``statuses``, 429
    or 503 with ``Retry-After``), as a well-behaved client does, within ``RETRY_BUDGET_S``."""
    deadline = time.perf_counter() + RETRY_BUDGET_S
    while True:
        try:
            return await asyncio.wait_for(post_offer(http, url, sdp, token), HTTP_TIMEOUT_S)
        except EndpointError as exc:
            wait = getattr(exc, "retry_after", None)
            if getattr(exc, "status", None) not in statuses or wait is None:
                raise
            if time.perf_counter() + wait > deadline:
                raise
            await asyncio.sleep(wait)
        except asyncio.TimeoutError:
            raise EndpointError(f"{url}: no answer within {HTTP_TIMEOUT_S:g} s") from None


async def delete(http: aiohttp.ClientSession, url: str | None, token: str | None) -> int | None:
    if url is None:
        return None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        async with http.delete(url, headers=headers) as r:
            return r.status
    return None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# -- one session ---------------------------------------------------------------------------------


@dataclass
class SessionConfig:
    url: str | None = None  # an offer endpoint (sendrecv)
    whip: str | None = None  # or a WHIP endpoint …
    whep: str | None = None  # … and a WHEP one that plays it
    fps: float = 30.0
    codec: str = "vp8"
    token: str | None = None
    impairment: Impairment | None = None
    sample: int = 1  # read the code of one received frame in this many
    patient: bool = True  # wait out a 429/503 Retry-After (a load ramp takes 503 as "full")


class BenchSession:
    """One measured session: its peer connection(s), its camera, what came back."""

    def __init__(
        self,
        config: SessionConfig,
        frames: list[FrameBuffer],
        layout: code.Layout,
        http: aiohttp.ClientSession,
        loop: EncodedLoop | None = None,
    ) -> None:
        self.config = config
        self.layout = layout
        self.http = http
        self.measurement = Measurement(sample=max(1, config.sample))
        self.loop = loop
        self.camera: CodedCamera | PacketCamera = (
            CodedCamera(frames, config.fps, layout, self.measurement.sent)
            if loop is None
            else PacketCamera(loop, config.fps, self.measurement.sent)
        )
        self.sent_size = (frames[0].width, frames[0].height)
        self.received = 0
        self.pcs: list[RTCPeerConnection] = []
        self.locations: list[str | None] = []
        self.session_ids: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = asyncio.Event()

    def _pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(pc)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and pc is self.pcs[-1]:
                self.measurement.connected_at = time.perf_counter()
                self._connected.set()
            elif pc.connectionState == "failed":
                self.measurement.condition = "connection failed"
                self._connected.set()

        return pc

    def _prefer_codec(self, transceiver: Any) -> None:
        mime = "video/" + ("H264" if self.config.codec == "h264" else "VP8")
        caps = RTCRtpSender.getCapabilities("video").codecs
        chosen = [c for c in caps if c.mimeType.lower() in (mime.lower(), "video/rtx")]
        transceiver.setCodecPreferences(chosen)

    async def _negotiate(self, pc: RTCPeerConnection, url: str) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        if self.config.impairment is not None:
            self.config.impairment.apply(pc)
        sdp = pc.localDescription.sdp
        if self.config.patient:
            answer, location = await post_offer_patiently(self.http, url, sdp, self.config.token)
        else:
            answer, location = await post_offer_patiently(
                self.http, url, sdp, self.config.token, statuses=(429,)
            )
        self.locations.append(location)
        if location:
            self.session_ids.append(location.rstrip("/").rsplit("/", 1)[-1])
        try:
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        except Exception as exc:  # aiortc's own refusal of an answer it cannot use
            raise EndpointError(f"{url}: unusable answer: {str(exc)[:200]}") from None

    def _listen(self, pc: RTCPeerConnection) -> None:
        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                self._tasks.append(asyncio.ensure_future(self._receive(track)))

    async def _receive(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            m = self.measurement
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                assert isinstance(frame, av.VideoFrame)
                size = (frame.width, frame.height)
                self.received += 1
                if (self.received - 1) % m.sample:
                    m.arrived(now, size)  # counted; its code left unread
                    continue
                number = read_frame(frame, self.layout)
                if number is not None and self.loop is not None:
                    assert isinstance(self.camera, PacketCamera)
                    number = self.loop.resolve(number, self.camera.latest)
                m.add(number, now, size)

    async def start(self) -> None:
        c = self.config
        if c.url is not None:
            pc = self._pc()
            self._prefer_codec(pc.addTransceiver(self.camera, direction="sendrecv"))
            self._listen(pc)
            await self._negotiate(pc, c.url)
        else:
            assert c.whip is not None and c.whep is not None
            publisher = self._pc()
            self._prefer_codec(publisher.addTransceiver(self.camera, direction="sendonly"))
            await self._negotiate(publisher, c.whip)
            player = self._pc()
            self._prefer_codec(player.addTransceiver("video", direction="recvonly"))
            self._listen(player)
            # The stream may need a moment to appear behind the WHEP endpoint (409 until then).
            deadline = time.perf_counter() + CONNECT_TIMEOUT_S
            while True:
                try:
                    await self._negotiate(player, c.whep)
                    break
                except EndpointError as exc:
                    if getattr(exc, "status", None) != 409 or time.perf_counter() > deadline:
                        raise
                    await player.close()
                    self.pcs.remove(player)
                    await asyncio.sleep(0.5)
                    player = self._pc()
                    self._prefer_codec(player.addTransceiver("video", direction="recvonly"))
                    self._listen(player)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._connected.wait(), CONNECT_TIMEOUT_S)
        if not self._connected.is_set():
            self.measurement.condition = f"not connected after {CONNECT_TIMEOUT_S:.0f} s"

    async def stop(self) -> list[int | None]:
        statuses = [await delete(self.http, loc, self.config.token) for loc in self.locations]
        for task in self._tasks:
            task.cancel()
        self.camera.stop()
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                await pc.close()
        return statuses


def label_of(config: SessionConfig) -> str:
    if config.url is not None:
        return config.url
    return f"{config.whip} → {config.whep}"
