"""A Python WebRTC client for LiveFX (aiortc): what the tests and ``benchmarks/e2e.py`` use.

It sends a given list of frames as a camera would (paced at ``fps``), receives the processed
video, and measures each frame's round trip itself: from the moment a frame is handed to its
sender (returned from the track's ``recv``) to the moment the processed frame comes out of its
receiver. The server keeps each frame's timestamp, and both receivers count RTP time from their
first frame, so a returned frame's timestamp is its sent timestamp minus the timestamp of the
first frame the server kept. The client finds that offset by matching (sent timestamps carry a
small per-frame jitter, so one offset fits and others do not).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
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


TOLERANCE = 4  # ticks: codecs round timestamps by a tick or two on the way


def jitter(i: int) -> int:
    """A per-frame offset of 0–220 ticks (≤ 2.5 ms, steps of 10) that makes each frame's
    timestamp findable after the codecs' rounding."""
    return ((i * 7919) % 23) * 10


class CameraTrack(MediaStreamTrack):
    """Sends ``frames`` round and round at ``fps``; records when each timestamp was handed over."""

    kind = "video"

    def __init__(self, frames: list[FrameBuffer], fps: float) -> None:
        super().__init__()
        self.frames = frames
        self.fps = fps
        self.sent: dict[int, float] = {}
        self.count = 0
        self._start: float | None = None

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


@dataclass
class Received:
    frames: list[np.ndarray] = field(default_factory=list)  # yuv420p as one (h·3/2, w) array
    latencies_ms: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    unmatched: int = 0


class Client:
    """One session against a LiveFX server, over POST /offer."""

    def __init__(self, base_url: str, frames: list[FrameBuffer], fps: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.camera = CameraTrack(frames, fps)
        self.pc = rtc.peer_connection()
        self.location: str | None = None
        self.received = Received()
        self.keep_frames = False
        self._offset: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending: list[tuple[int, float, np.ndarray | None]] = []

    def _http(
        self, method: str, path: str, body: bytes = b"", kind: str = ""
    ) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.base_url + path, data=body or None, method=method)
        if kind:
            req.add_header("Content-Type", kind)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)

    async def http(
        self, method: str, path: str, body: bytes = b"", kind: str = ""
    ) -> tuple[int, bytes, dict[str, str]]:
        return await asyncio.get_running_loop().run_in_executor(
            None, self._http, method, path, body, kind
        )

    async def start(self, settings: dict[str, Any] | None = None) -> None:
        self.pc.addTrack(self.camera)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._task = asyncio.ensure_future(self._receive(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        query = ("?" + urlencode(settings)) if settings else ""
        status, body, headers = await self.http(
            "POST", "/offer" + query, self.pc.localDescription.sdp.encode(), "application/sdp"
        )
        if status != 201:
            raise RuntimeError(f"offer refused: {status} {body.decode(errors='replace')}")
        self.location = headers.get("Location")
        await self.pc.setRemoteDescription(RTCSessionDescription(body.decode(), "answer"))

    async def _receive(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                now = time.perf_counter()
                assert isinstance(frame, av.VideoFrame) and frame.pts is not None
                pts = int(frame.pts)
                data = frame.to_ndarray(format="yuv420p") if self.keep_frames else None
                self._match(pts, now, data)

    def _match(self, pts: int, now: float, data: np.ndarray | None) -> None:
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
        """The offset that maps the first few received timestamps onto sent ones, uniquely."""
        if len(self._pending) < 3:
            return
        first = self._pending[0][0]
        fits = [
            s - first
            for s in list(self.camera.sent)
            if all(self._lookup(p + s - first) is not None for p, _, _ in self._pending)
        ]
        if len(fits) != 1:
            if len(self._pending) > 30:
                self._pending.pop(0)
            return
        self._offset = fits[0]
        pending, self._pending = self._pending, []
        self.received.arrivals = self.received.arrivals[: -len(pending)]
        for pts, t, data in pending:
            self._match(pts, t, data)

    async def stop(self) -> int | None:
        status = None
        if self.location:
            status, _, _ = await self.http("DELETE", self.location)
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
        return status


class ServerProcess:
    """``livefx serve`` in a child process on a free port (the real entry point)."""

    def __init__(self, *args: str, cwd: str | None = None) -> None:
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
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        self.log: list[str] = []
        for line in self.proc.stdout:
            self.log.append(line)
            m = re.search(r"serving on (http://[\d.]+:\d+)/", line)
            if m:
                self.url = m.group(1)
                return
        raise RuntimeError("livefx serve did not start:\n" + "".join(self.log))

    def stop(self) -> str:
        import subprocess

        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return "".join(self.log) + (out or "")
