"""Python WebRTC clients for LiveFX (aiortc): what the tests and the benchmarks use.

- ``Client``: one sendrecv session over ``POST /offer`` (a camera, optionally a microphone);
- ``Publisher``: a WHIP sendonly session (``POST /whip/NAME``);
- ``Player``: a WHEP recvonly session (``POST /whep/NAME``), matched against a publisher.

Each sends frames as a camera would (paced at ``fps``) and measures each frame's round trip
itself: from the moment a frame is handed to its sender (returned from the track's ``recv``) to
the moment the processed frame comes out of a receiver. The server keeps each frame's timestamp,
and receivers count RTP time from their first frame, so a returned frame's timestamp is its sent
timestamp minus the timestamp of the first frame the server kept. ``LatencyMatcher`` finds that
offset (sent timestamps carry a small per-frame jitter, so one offset fits and others do not).

Audio: ``ToneTrack`` sends silence with a 1 kHz burst every second; ``AudioOnsets`` times each
burst's onset where it comes back, so audio and video latencies of the same run give the A/V
offset that leaves the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from engine.frame import FrameBuffer
from engine.media import frame_to_av
from engine.server import rtc

CLOCK = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK)
AUDIO_RATE = 48_000
AUDIO_FRAME = 960  # 20 ms
BURST_EVERY = 50  # audio frames (1 s)
BURST_FRAMES = 3  # 60 ms of tone
TOLERANCE = 4  # ticks: codecs round timestamps by a tick or two on the way


def jitter(i: int) -> int:
    """A per-frame offset of 0–220 ticks (≤ 2.5 ms, steps of 10) that makes each frame's
    timestamp findable after the codecs' rounding: a hash of the frame number, so that a run of
    a few frames has a pattern that does not repeat."""
    return (((i * 2654435761) & 0xFFFFFFFF) >> 16) % 23 * 10


class CameraTrack(MediaStreamTrack):
    """Sends ``frames`` round and round at ``fps``; records when each timestamp was handed over."""

    kind = "video"

    def __init__(self, frames: list[FrameBuffer], fps: float, start: float | None = None) -> None:
        super().__init__()
        self.frames = frames
        self.fps = fps
        self.sent: dict[int, float] = {}
        self.count = 0
        self._start = start

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        i = self.count
        if self._start is None:
            self._start = time.perf_counter()
        wait = self._start + i / self.fps - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        fb = self.frames[i % len(self.frames)]
        frame = frame_to_av(fb)
        frame.pts = int(i * CLOCK / self.fps) + jitter(i)
        frame.time_base = TIME_BASE
        self.count += 1
        self.sent[frame.pts] = time.perf_counter()
        return frame


class ToneTrack(MediaStreamTrack):
    """20 ms stereo frames of silence, with a 1 kHz burst starting every ``BURST_EVERY`` frames;
    ``bursts`` records when each burst's first frame was handed over."""

    kind = "audio"

    def __init__(self, start: float | None = None) -> None:
        super().__init__()
        self.count = 0
        self.bursts: list[float] = []
        self._start = start
        t = np.arange(AUDIO_FRAME) / AUDIO_RATE
        tone = (8000 * np.sin(2 * math.pi * 1000 * t)).astype(np.int16)
        self._tone = np.repeat(tone, 2).reshape(1, -1)
        self._silence = np.zeros((1, AUDIO_FRAME * 2), np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        i = self.count
        if self._start is None:
            self._start = time.perf_counter()
        wait = self._start + i * AUDIO_FRAME / AUDIO_RATE - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        loud = i % BURST_EVERY < BURST_FRAMES and i >= BURST_EVERY
        frame = av.AudioFrame.from_ndarray(
            self._tone if loud else self._silence, format="s16", layout="stereo"
        )
        frame.sample_rate = AUDIO_RATE
        frame.pts = i * AUDIO_FRAME
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.count += 1
        if loud and i % BURST_EVERY == 0:
            self.bursts.append(time.perf_counter())
        return frame


@dataclass
class Received:
    frames: list[np.ndarray] = field(default_factory=list)  # yuv420p as one (h·3/2, w) array
    latencies_ms: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    unmatched: int = 0
    audio_frames: int = 0
    audio_peak: int = 0  # the loudest sample received
    audio_latencies_ms: list[float] = field(default_factory=list)


class LatencyMatcher:
    """Received video timestamps → the sent frame → its round trip (see the module's text)."""

    MAX_LATENCY_S = 3.0

    def __init__(self, camera: CameraTrack, received: Received) -> None:
        self.camera = camera
        self.received = received
        self._offset: int | None = None
        self._pending: list[tuple[int, float, np.ndarray | None]] = []

    def match(self, pts: int, now: float, data: np.ndarray | None) -> None:
        r = self.received
        r.arrivals.append(now)
        if data is not None:
            r.frames.append(data)
        if self._offset is None:
            self._pending.append((pts, now, None))
            self._find_offset()
            return
        sent = self._lookup(pts + self._offset)
        if sent is None:
            r.unmatched += 1
        else:
            r.latencies_ms.append((now - sent) * 1000.0)

    def _lookup(self, pts: int) -> float | None:
        for d in range(TOLERANCE + 1):
            for candidate in (pts - d, pts + d):
                if candidate in self.camera.sent:
                    return self.camera.sent[candidate]
        return None

    def _find_offset(self) -> None:
        """The offset that maps the first few received timestamps onto sent ones, uniquely:
        each one sent before it came back, and less than ``MAX_LATENCY_S`` before."""
        if len(self._pending) < 3:
            return
        first = self._pending[0][0]

        def fit(offset: int) -> bool:
            for p, arrived, _ in self._pending:
                sent = self._lookup(p + offset)
                if sent is None or not arrived - self.MAX_LATENCY_S <= sent <= arrived:
                    return False
            return True

        fits = [s - first for s in list(self.camera.sent) if fit(s - first)]
        if len(fits) != 1:
            if len(self._pending) > 30:
                self._pending.pop(0)
            return
        self._offset = fits[0]
        pending, self._pending = self._pending, []
        self.received.arrivals = self.received.arrivals[: -len(pending)]
        for pts, t, data in pending:
            self.match(pts, t, data)


class AudioOnsets:
    """Times the onset of each tone burst in received audio against when it was sent."""

    THRESHOLD = 2000  # sample amplitude; the tone peaks at 8000, Opus noise stays far below

    def __init__(self, tone: ToneTrack | None, received: Received) -> None:
        self.tone = tone  # None: only count frames and the peak level
        self.received = received
        self._loud = False
        self._index = 0

    def add(self, frame: av.AudioFrame, now: float) -> None:
        samples = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        mono = np.abs(samples.astype(np.int32)).reshape(-1, channels).max(axis=1)
        self.received.audio_frames += 1
        peak = int(mono.max()) if mono.size else 0
        self.received.audio_peak = max(self.received.audio_peak, peak)
        loud = np.flatnonzero(mono > self.THRESHOLD)
        if self.tone is None:
            return
        if not loud.size:
            if peak < self.THRESHOLD // 4:
                self._loud = False
            return
        if self._loud:
            return
        self._loud = True
        # The frame came out whole: its last sample is "now"; the onset is that much earlier.
        onset = now - (mono.size - int(loud[0])) / frame.sample_rate
        # The burst sent just before it (bursts are a second apart, latencies far less).
        sent = [t for t in self.tone.bursts if t - AUDIO_FRAME / AUDIO_RATE < onset]
        if sent:
            started = sent[-1] - AUDIO_FRAME / AUDIO_RATE  # its first sample's moment
            self.received.audio_latencies_ms.append((onset - started) * 1000.0)


def http_request(
    url: str,
    method: str,
    body: bytes = b"",
    kind: str = "",
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=body or None, method=method)
    if kind:
        req.add_header("Content-Type", kind)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)

    def joined(message: Any) -> dict[str, str]:  # repeated headers (Link) joined by commas
        return {k: ", ".join(message.get_all(k)) for k in dict.fromkeys(message.keys())}

    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read(), joined(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), joined(exc.headers)


class _Peer:
    """What the three clients share: a peer connection, HTTP with a token, receiving."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.pc = rtc.peer_connection()
        self.location: str | None = None
        self.etag: str | None = None
        self.received = Received()
        self.keep_frames = False
        self.matcher: LatencyMatcher | None = None
        self.onsets: AudioOnsets | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def http(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        kind: str = "",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        url = path if path.startswith("http") else self.base_url + path
        return await asyncio.get_running_loop().run_in_executor(
            None, http_request, url, method, body, kind, self.token, headers
        )

    def _listen(self) -> None:
        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._receive(track)))

    async def _negotiate(self, path: str, candidates: str = "offer") -> None:
        """Offer, POST it, take the answer. ``candidates``: ``offer`` (in the offer), ``none``
        (left out, as OBS and FFmpeg do: the server finds us as peer-reflexive), ``trickle``
        (left out, then PATCHed to the session as a trickle-ice-sdpfrag)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        lines = [line for line in offer.splitlines() if line]
        if candidates != "offer":
            offer = (
                "\r\n".join(
                    line
                    for line in lines
                    if not line.startswith(("a=candidate:", "a=end-of-candidates"))
                )
                + "\r\n"
            )
        deadline = time.perf_counter() + 15.0
        while True:
            status, body, headers = await self.http("POST", path, offer.encode(), "application/sdp")
            wait = headers.get("Retry-After", "")
            # Asked to come back (429, 503): again, as a well-behaved client does, for a while.
            if status not in (429, 503) or not wait.isdigit():
                break
            if time.perf_counter() + int(wait) > deadline:
                break
            await asyncio.sleep(int(wait))
        if status != 201:
            raise RuntimeError(f"offer refused: {status} {body.decode(errors='replace')}")
        self.location = headers.get("Location")
        self.etag = headers.get("ETag")
        self.answer_headers = headers
        await self.pc.setRemoteDescription(RTCSessionDescription(body.decode(), "answer"))
        if candidates == "trickle":
            self.trickle_status = await self.trickle(lines)

    async def trickle(self, offer_lines: list[str]) -> int:
        """PATCH our candidates to the session (RFC 8840 fragment, If-Match: the ETag)."""
        assert self.location is not None and self.etag is not None
        keep = ("a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "a=end-of-candidates")
        first_mid = next(line for line in offer_lines if line.startswith("a=mid:"))
        section: list[str] = []
        in_first = False
        for line in offer_lines:
            if line.startswith("m="):
                if in_first:
                    break
                in_first = True
                section.append(line)
            elif in_first and line.startswith(keep):
                section.append(line)
        fragment = [line for line in section if line.startswith(("a=ice-ufrag", "a=ice-pwd"))]
        fragment += [section[0], first_mid]
        fragment += [line for line in section if line.startswith(("a=candidate", "a=end-of"))]
        status, _, _ = await self.http(
            "PATCH",
            self.location,
            ("\r\n".join(fragment) + "\r\n").encode(),
            "application/trickle-ice-sdpfrag",
            headers={"If-Match": self.etag},
        )
        return status

    async def _receive(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                if isinstance(frame, av.AudioFrame):
                    if self.onsets is None:
                        self.onsets = AudioOnsets(None, self.received)
                    self.onsets.add(frame, now)
                    continue
                assert isinstance(frame, av.VideoFrame) and frame.pts is not None
                data = frame.to_ndarray(format="yuv420p") if self.keep_frames else None
                if self.matcher is not None:
                    self.matcher.match(int(frame.pts), now, data)
                else:
                    self.received.arrivals.append(now)
                    if data is not None:
                        self.received.frames.append(data)

    async def connected(self, timeout: float = 10.0) -> bool:
        """Wait until every peer connection of this client is connected."""
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if self.pc.connectionState == "connected":
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> int | None:
        status = None
        if self.location:
            status, _, _ = await self.http("DELETE", self.location)
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        return status


class Client(_Peer):
    """One sendrecv session against a LiveFX server, over POST /offer."""

    def __init__(
        self,
        base_url: str,
        frames: list[FrameBuffer],
        fps: float = 30.0,
        audio: bool = False,
        token: str | None = None,
    ) -> None:
        super().__init__(base_url, token)
        start = time.perf_counter() + 0.2 if audio else None
        self.camera = CameraTrack(frames, fps, start)
        self.tone = ToneTrack(start) if audio else None
        self.matcher = LatencyMatcher(self.camera, self.received)
        self.onsets = AudioOnsets(self.tone, self.received) if self.tone is not None else None

    async def start(self, settings: dict[str, Any] | None = None) -> None:
        self.pc.addTrack(self.camera)
        if self.tone is not None:
            self.pc.addTrack(self.tone)
        self._listen()
        query = ("?" + urlencode(settings)) if settings else ""
        await self._negotiate("/offer" + query)


class Publisher(_Peer):
    """A WHIP publisher: a camera (and a tone), sendonly, to /whip/NAME."""

    def __init__(
        self,
        base_url: str,
        stream: str,
        frames: list[FrameBuffer],
        fps: float = 30.0,
        audio: bool = True,
        token: str | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self.stream = stream
        start = time.perf_counter() + 0.2
        self.camera = CameraTrack(frames, fps, start)
        self.tone = ToneTrack(start) if audio else None

    async def start(
        self, settings: dict[str, Any] | None = None, candidates: str = "offer"
    ) -> None:
        if self.tone is not None:  # audio first, as OBS and FFmpeg order them
            self.pc.addTransceiver(self.tone, direction="sendonly")
        self.pc.addTransceiver(self.camera, direction="sendonly")
        query = ("?" + urlencode(settings)) if settings else ""
        await self._negotiate(f"/whip/{self.stream}{query}", candidates)


class Player(_Peer):
    """A WHEP player of /whep/NAME; with a ``publisher``, its frames' round trips are timed."""

    def __init__(
        self,
        base_url: str,
        stream: str,
        publisher: Publisher | None = None,
        token: str | None = None,
    ) -> None:
        super().__init__(base_url, token)
        self.stream = stream
        if publisher is not None:
            self.matcher = LatencyMatcher(publisher.camera, self.received)
            if publisher.tone is not None:
                self.onsets = AudioOnsets(publisher.tone, self.received)

    async def start(self) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self._listen()
        await self._negotiate(f"/whep/{self.stream}")


class ServerProcess:
    """``livefx serve`` in a child process on a free port (the real entry point)."""

    def __init__(
        self, *args: str, cwd: str | None = None, env: dict[str, str] | None = None
    ) -> None:
        import os
        import re
        import subprocess
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        assert self.proc.stdout is not None
        self.log: list[str] = []
        for line in self.proc.stdout:
            self.log.append(line)
            m = re.search(r"serving on (https?://[\w.\[\]:-]+:\d+)/", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("livefx serve did not start:\n" + "".join(self.log))
        # Keep reading its output, so that a chatty server never blocks on a full pipe.
        import threading

        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def figures(self) -> dict[str, float]:
        """The server's RSS (MB), open descriptors, threads and CPU seconds (its /proc entry)."""
        import os
        from pathlib import Path

        pid = self.proc.pid
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return {
            "rss_mb": float(fields["VmRSS"].split()[0]) / 1024,
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(fields["Threads"]),
            "cpu_s": (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK"),
        }

    def _read_rest(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line)

    def stop(self) -> str:
        import subprocess

        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._drain.join(timeout=5)
        return "".join(self.log)
