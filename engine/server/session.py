"""One WebRTC session: a peer connection, a FrameGate, a pipeline on its own worker thread.

Frame path: aiortc decodes (its thread) → ``_read`` (event loop: only moves the frame into the
gate, so aiortc's unbounded queue never grows) → ``FrameGate`` (newest wins) → worker thread
(``Pipeline.process``) → ``ProcessedTrack`` (newest wins again) → aiortc encodes (its thread).
Nothing CPU-heavy runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from engine.config import PipelineConfig, ServerConfig, describe
from engine.errors import InputError, LiveFXError
from engine.media import frame_from_av, frame_to_av
from engine.pipeline import Pipeline, make_pipeline
from engine.pipeline.gate import FrameGate, GateClosed
from engine.server import rtc

log = logging.getLogger(__name__)


class ProcessedTrack(MediaStreamTrack):
    """The outgoing video: the newest processed frame, handed to aiortc's sender."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._frame: av.VideoFrame | None = None
        self._ready = asyncio.Event()
        self.sent = 0
        self.replaced = 0  # processed frames the sender never took (it was busy)
        self.sent_times: deque[float] = deque(maxlen=120)

    def push(self, frame: av.VideoFrame) -> None:
        """Called on the event loop (from the worker through call_soon_threadsafe)."""
        if self._frame is not None:
            self.replaced += 1
        self._frame = frame
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._ready.wait()
        self._ready.clear()
        frame = self._frame
        self._frame = None
        if frame is None or self.readyState != "live":
            raise MediaStreamError
        self.sent += 1
        self.sent_times.append(time.monotonic())
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class RelayTrack(MediaStreamTrack):
    """The bare aiortc echo: each received frame sent back as it is (the baseline)."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source
        self.sent = 0

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.sent += 1
        return frame


class Session:
    def __init__(self, server_config: ServerConfig, pipeline_config: PipelineConfig) -> None:
        self.id = secrets.token_urlsafe(9)
        self.server_config = server_config
        self.config = pipeline_config
        self.pc = rtc.peer_connection()
        self.gate: FrameGate[av.VideoFrame] = FrameGate()
        self.out = ProcessedTrack()
        self.relay: RelayTrack | None = None
        self.loop = asyncio.get_running_loop()
        self.created = time.monotonic()
        self.last_frame = time.monotonic()
        self.frames_in = 0
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.errors: deque[str] = deque(maxlen=20)
        self.latest: dict[str, Any] = {}  # the worker's last stats snapshot
        self._pending: PipelineConfig | None = None
        self._lock = threading.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._worker: threading.Thread | None = None
        self._pipeline: Pipeline | None = None
        self._frames_seen: deque[float] = deque(maxlen=120)
        self.upload_path: str | None = None

    # -- set-up ---------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Take the client's offer, return our answer (ICE gathered: no trickle)."""
        if self.server_config.host in ("127.0.0.1", "localhost", "::1"):
            offer_sdp = rtc.only_loopback_candidates(offer_sdp)
        # Made here, not in the worker: a bad setting fails the offer, not the first frame.
        if self.server_config.mode == "livefx":
            self._pipeline = make_pipeline(self.config)

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video":
                return
            if self.server_config.mode == "bare-echo":
                self.relay = RelayTrack(track)
                self.pc.addTrack(self.relay)
            else:
                self.pc.addTrack(self.out)
                self._tasks.append(asyncio.ensure_future(self._read(track)))

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = self.pc.connectionState
            log.info("session %s: connection %s", self.id, state)
            if state in ("failed", "closed"):
                await self.close(f"connection {state}")

        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        if not any(t.kind == "video" for t in self.pc.getTransceivers()):
            raise InputError("cannot use this offer: it has no video track")
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        if self.server_config.mode == "livefx":
            self._worker = threading.Thread(
                target=self._work, name=f"livefx-{self.id}", daemon=True
            )
            self._worker.start()
        self._tasks.append(asyncio.ensure_future(self._watchdog()))
        return str(self.pc.localDescription.sdp)

    # -- the frame path -------------------------------------------------------------------------

    async def _read(self, track: MediaStreamTrack) -> None:
        """Move every decoded frame into the gate at once (newest wins there)."""
        try:
            while True:
                frame = await track.recv()
                self.frames_in += 1
                self.last_frame = time.monotonic()
                self._frames_seen.append(self.last_frame)
                self.gate.put(frame)  # type: ignore[arg-type]
        except MediaStreamError:
            await self.close("the peer's track ended")
        except asyncio.CancelledError:
            pass

    def _work(self) -> None:
        """The worker thread: newest frame → pipeline → outgoing track."""
        pipeline = self._pipeline
        assert pipeline is not None
        pool: list[av.VideoFrame | None] = [None] * 4  # the sender may still hold 2-3 of them
        k = 0
        last_snapshot = 0.0
        while True:
            try:
                got = self.gate.get(timeout=0.5)
            except GateClosed:
                break
            if got is None:
                continue
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is not None:
                try:
                    pipeline.reconfigure(pending)
                    self.config = pending
                except LiveFXError as exc:  # checked before it got here; kept for safety
                    self.errors.append(str(exc))
            try:
                out = pipeline.process(frame_from_av(got[0]))
            except LiveFXError as exc:
                self.errors.append(str(exc))
                log.warning("session %s: frame skipped: %s", self.id, exc)
                continue
            av_out = frame_to_av(out, pool[k])
            pool[k] = av_out
            k = (k + 1) % len(pool)
            self.loop.call_soon_threadsafe(self.out.push, av_out)
            now = time.monotonic()
            if now - last_snapshot >= 0.5:
                last_snapshot = now
                self.latest = self._snapshot(pipeline)
        pipeline.close()

    def _snapshot(self, pipeline: Pipeline) -> dict[str, Any]:
        """Stats of the recent frames, computed on the worker (which owns the pipeline)."""
        recent = {
            stage: {"median_ms": v["median_ms"], "p95_ms": v["p95_ms"]}
            for stage, v in pipeline.times.summary().items()
        }
        pipeline.times.clear()  # next snapshot: the frames since this one
        return {
            "stages": recent,
            "quality": pipeline.quality.name,
            "quality_level": pipeline.quality.level,
            "quality_changes": list(pipeline.budget.events)[-5:],
            "model": pipeline.model.name if pipeline.model else None,
            "inferences": pipeline.session.inferences,
            "reused_masks": pipeline.session.reused,
        }

    # -- control ----------------------------------------------------------------------------

    def set_config(self, config: PipelineConfig) -> None:
        """Apply new settings from the next frame on (validated by the caller)."""
        with self._lock:
            self._pending = config
        self.config = config

    async def _watchdog(self) -> None:
        idle = self.server_config.idle_timeout_s
        try:
            while not self.closed.is_set():
                await asyncio.sleep(min(1.0, idle / 2))
                started = self.pc.connectionState == "connected" or self.frames_in > 0
                quiet = time.monotonic() - (self.last_frame if self.frames_in else self.created)
                if quiet > idle * (1 if started else 3):
                    await self.close(f"no video for {quiet:.1f} s")
        except asyncio.CancelledError:
            pass

    async def close(self, reason: str = "closed") -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.close_reason = reason
        log.info("session %s: closing (%s)", self.id, reason)
        self.gate.close()
        self.out.stop()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
        if self._worker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._worker.join, 5.0)
        if self.upload_path is not None:
            with contextlib.suppress(OSError):
                import os

                os.unlink(self.upload_path)

    # -- stats ----------------------------------------------------------------------------------

    def _fps(self, times: deque[float]) -> float:
        now = time.monotonic()
        recent = [t for t in times if now - t <= 2.0]
        if len(recent) < 2:
            return 0.0
        return round((len(recent) - 1) / max(recent[-1] - recent[0], 1e-6), 1)

    async def stats(self) -> dict[str, Any]:
        rtt = None
        with contextlib.suppress(Exception):
            report = await self.pc.getStats()
            for s in report.values():
                if (
                    getattr(s, "type", "") == "remote-inbound-rtp"
                    and getattr(s, "kind", "") == "video"
                ):
                    value = getattr(s, "roundTripTime", None)
                    if value is not None:
                        rtt = round(float(value) * 1000, 1)
        gate = self.gate.stats()
        sent = self.relay.sent if self.relay is not None else self.out.sent
        return {
            "session": self.id,
            "mode": self.server_config.mode,
            "state": self.pc.connectionState,
            "uptime_s": round(time.monotonic() - self.created, 1),
            "fps_in": self._fps(self._frames_seen),
            "fps_out": self._fps(self.out.sent_times),
            "frames_in": self.frames_in,
            "frames_out": sent,
            "dropped": gate["dropped"] + self.out.replaced,
            "rtt_ms": rtt,
            "settings": describe(self.config),
            "errors": list(self.errors)[-3:],
            **self.latest,
        }
