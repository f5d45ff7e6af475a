"""One WebRTC session: a peer connection and, unless it only plays, a pipeline served by the
server's frame pool.

Three kinds:

- ``sendrecv`` (``POST /offer``, ``/ws``): the peer's video through the pipeline back to the
  peer, its audio back in sync;
- ``publish`` (WHIP): the peer's video through the pipeline into a ``Stream``, its audio too;
- ``play`` (WHEP): a stream's encoded video and audio out to the peer; no pipeline.

Frame path: aiortc decodes (its thread) → ``_read`` (event loop: only moves the frame into the
gate, so aiortc's unbounded queue never grows, and tells the pool) → ``FrameGate`` (newest wins)
→ a worker of the ``FramePool`` (``step``: ``Pipeline.process``; sessions served round robin,
one frame at a time, never two workers on one session) → ``ProcessedTrack`` or the stream's
encoders (newest wins again) → aiortc's sender. Nothing CPU-heavy runs on the event loop. The
segmenter may run on a shared inference worker (``engine.inference.batch``), batched with other
sessions' inputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import av
from aiortc import MediaStreamTrack, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from engine import faults
from engine.config import EffectConfig, PipelineConfig, ServerConfig, describe
from engine.errors import LiveFXError, StageError
from engine.media import frame_from_av, frame_to_av
from engine.pipeline import Pipeline, make_pipeline
from engine.pipeline.gate import FrameGate, GateClosed
from engine.server import rtc, sdp
from engine.server.pool import FramePool
from engine.server.stream import SharedVideoEncoder, Stream
from engine.server.tracks import (
    AudioDelay,
    DelayedAudioTrack,
    DelayStats,
    PacketTrack,
    ProcessedTrack,
    RelayTrack,
)

if TYPE_CHECKING:
    from engine.inference.batch import SharedModels
    from engine.server.metrics import Metrics

log = logging.getLogger(__name__)

KINDS = ("sendrecv", "publish", "play")
# A frame whose pipeline raised goes out unprocessed and the next frame tries again; this many
# faults in a row, or this many among the last FAULT_WINDOW frames, is a persistent failure: the
# session degrades to effect=none (with the reason in its stats) and keeps streaming.
FAULTS_IN_A_ROW = 10
FAULT_WINDOW = 100
FAULTS_IN_WINDOW = 30
ENCODER_FAULTS_IN_A_ROW = 30  # an outgoing encoder that fails this often ends the session


class FrameFaults:
    """A session's pipeline faults: how many, the last, and when they are persistent."""

    def __init__(self) -> None:
        self.count = 0
        self.in_a_row = 0
        self.recent: deque[bool] = deque(maxlen=FAULT_WINDOW)
        self.last = ""

    def ok(self) -> None:
        self.in_a_row = 0
        self.recent.append(False)

    def failed(self, message: str) -> bool:
        """Count one; True when the failure is persistent."""
        self.count += 1
        self.in_a_row += 1
        self.recent.append(True)
        self.last = message
        return self.in_a_row >= FAULTS_IN_A_ROW or sum(self.recent) >= FAULTS_IN_WINDOW

    def clear(self) -> None:
        self.in_a_row = 0
        self.recent.clear()

    def stats(self) -> dict[str, Any]:
        return {"count": self.count, "in_a_row": self.in_a_row, "last": self.last or None}


def slot_of(kind: str) -> str:
    return "players" if kind == "play" else "sessions"


class Session:
    def __init__(
        self,
        server_config: ServerConfig,
        pipeline_config: PipelineConfig,
        kind: str = "sendrecv",
        stream: Stream | None = None,
        client: str = "",
        metrics: Metrics | None = None,
        on_connected: Callable[[Session], Awaitable[None]] | None = None,
        pool: FramePool | None = None,
        models: SharedModels | None = None,
    ) -> None:
        """``pool``: the server's frame workers (None: a worker of the session's own);
        ``models``: the server's shared inference workers (None: the session's own models)."""
        assert kind in KINDS and (stream is not None) == (kind != "sendrecv")
        self.pool = pool
        self._own_pool = False
        self.models = models
        self.metrics = metrics
        self.on_connected = on_connected
        self.connected_at: float | None = None
        self.id = secrets.token_urlsafe(9)
        self.etag = f'"{secrets.token_hex(8)}"'
        self.kind = kind
        self.stream = stream
        self.client = client
        self.server_config = server_config
        self.config = pipeline_config
        self.pc = rtc.peer_connection(server_config.ice_servers)
        self.gate: FrameGate[tuple[av.VideoFrame, float]] = FrameGate()
        self.delays = DelayStats()
        self.out = ProcessedTrack(self.delays, rtc.encode_times.median_s)
        self.audio_delay: AudioDelay | None = None
        self.audio_out: MediaStreamTrack | None = None
        self.relays: list[RelayTrack] = []
        self.play_video: PacketTrack | None = None
        self.play_audio: PacketTrack | None = None
        self.encoder: SharedVideoEncoder | None = None
        self.loop = asyncio.get_running_loop()
        self.created = time.monotonic()
        self.last_frame = time.monotonic()
        self.last_media = 0.0
        self.frames_in = 0
        self.audio_in = 0
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.errors: deque[str] = deque(maxlen=20)
        self.faults = FrameFaults()
        self.degraded: str | None = None  # why the effect was turned off, when it was
        self.latest: dict[str, Any] = {}  # the worker's last stats snapshot
        self._pending: PipelineConfig | None = None
        self._lock = threading.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._working = False  # the session's frames are served by the pool
        self._pipeline: Pipeline | None = None
        self._out_pool: list[av.VideoFrame | None] = [None] * 4  # the sender may hold 2-3
        self._out_k = 0
        self._last_snapshot = 0.0
        self._quality_changes = 0
        self._frames_seen: deque[float] = deque(maxlen=120)
        self.upload_path: str | None = None

    @property
    def pending(self) -> bool:
        """Not connected yet (and not ended): counted apart from connected sessions."""
        return self.connected_at is None and not self.closed.is_set()

    def frame_counts(self) -> dict[str, int]:
        if self.kind == "play" and self.play_video is not None:
            return {"out": self.play_video.sent, "dropped": self.play_video.dropped}
        relay = next((r for r in self.relays if r.kind == "video"), None)
        sent = relay.sent if relay is not None else self.out.sent
        return {
            "in": self.frames_in,
            "out": sent,
            "dropped": self.gate.stats()["dropped"] + self.out.replaced,
        }

    @property
    def processes(self) -> bool:
        """Whether this session runs a pipeline."""
        return self.kind != "play" and self.server_config.mode == "livefx"

    @property
    def slot(self) -> str:
        """The limit it counts against: ``players`` (--max-players) or ``sessions``
        (--max-sessions: every session with media in, pipeline or bare-echo relay)."""
        return slot_of(self.kind)

    # -- set-up ---------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Take the client's offer, return our answer (ICE gathered: no server-side trickle)."""
        if self.server_config.loopback:
            # Keep the client's own host candidates (a loopback server reaches this machine's
            # addresses without leaving it); drop what would need the network.
            offer_sdp = sdp.filter_candidates(offer_sdp, sdp.local_only(rtc.own_addresses()))
        # Made here, not in the worker: a bad setting fails the offer, not the first frame.
        if self.processes:
            self._pipeline = make_pipeline(self.config, live=True, models=self.models)
            if self.pool is not None:  # the machine's load steps every session's quality
                self._pipeline.budget.load = self.pool.load_value
                self._pipeline.budget.step_up = self.pool.take_step_up
        if self.kind == "play":
            self.play_video = PacketTrack("video")
            self.play_audio = PacketTrack("audio")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._on_track(track)

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = self.pc.connectionState
            log.info("session %s: connection %s", self.id, state)
            if state == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()
                if self.on_connected is not None:
                    await self.on_connected(self)
            if state in ("failed", "closed"):
                await self.close(f"connection {state}")

        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        if self.kind == "play":
            self._add_play_tracks()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        local = str(self.pc.localDescription.sdp)
        self._check_answer(local)
        # Consent every 2 s, ended after 4 misses: a peer that vanishes goes within ~8 s (not
        # aioice's ~30 s); one whose media keeps decrypting stays (FFmpeg answers no checks).
        rtc.keep_consent_with_media(
            self.pc, (lambda: self.last_media) if self.kind != "play" else (lambda: 0.0)
        )
        if self._pipeline is not None or self.kind == "publish":
            if self.pool is None:
                self.pool = FramePool(1, name=f"livefx-{self.id}")
                self._own_pool = True
            self.pool.add(self)
            self._working = True
        if self.kind == "play":
            self._join_stream(local)
        self._tasks.append(asyncio.ensure_future(self._watchdog()))
        return sdp.add_rtcp_mux_only(local)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if self.kind == "play":
            return  # a sendrecv player's own media is not used
        # bare-echo: aiortc's plain relay back to the peer; a bare-echo publisher feeds its
        # decoded frames to the stream as they are (the WHIP → WHEP pass-through baseline).
        bare = self.server_config.mode == "bare-echo" and self.kind == "sendrecv"
        if track.kind == "video":
            if bare:
                self.relays.append(RelayTrack(track))
                self.pc.addTrack(self.relays[-1])
            else:
                if self.kind == "sendrecv":
                    self.pc.addTrack(self.out)
                self._tasks.append(asyncio.ensure_future(self._read(track)))
        elif track.kind == "audio":
            if bare:
                self.relays.append(RelayTrack(track))
                self.pc.addTrack(self.relays[-1])
            elif self.kind == "sendrecv":
                self.audio_delay = AudioDelay(self.delays.median_s)
                self.audio_out = DelayedAudioTrack(self.audio_delay)
                self.pc.addTrack(self.audio_out)
                self._tasks.append(asyncio.ensure_future(self._read_audio(track)))
            else:
                self._tasks.append(asyncio.ensure_future(self._read_audio(track)))

    def _add_play_tracks(self) -> None:
        """Our tracks on the player's transceivers, sendonly (a sendrecv offer still gets a
        sendonly answer: the WHEP draft's rule; a player's own media is not used)."""
        for transceiver in self.pc.getTransceivers():
            track = {"video": self.play_video, "audio": self.play_audio}.get(transceiver.kind)
            if track is not None and transceiver.sender.track is None:
                self.pc.addTrack(track)
                transceiver.direction = "sendonly"

    def _check_answer(self, answer: str) -> None:
        if sdp.answer_codec(answer, "video") is None:
            offered = sdp.parse(self.pc.remoteDescription.sdp).of_kind("video")
            names = ", ".join(dict.fromkeys(offered[0].codecs)) if offered else "none"
            raise sdp.SdpError(
                422,
                f"no video codec in common: offered {names}; LiveFX takes VP8 and H.264 "
                "(constrained baseline, packetization-mode 1)",
            )

    def _join_stream(self, answer: str) -> None:
        assert self.stream is not None and self.play_video is not None
        codec = sdp.answer_codec(answer, "video") or "VP8"
        mime = "video/h264" if codec.upper() == "H264" else "video/vp8"
        audio = (
            self.play_audio if (sdp.answer_codec(answer, "audio") or "").lower() == "opus" else None
        )
        encoder = self.stream.add_player(self, self.play_video, mime, audio)
        self.encoder = encoder
        key = id(self)

        def on_bitrate(bps: int) -> None:
            encoder.set_bitrate(key, bps)

        for sender in self.pc.getSenders():
            if sender.track is self.play_video:
                rtc.watch_sender(sender, encoder.request_keyframe, on_bitrate)

    # -- the frame path -------------------------------------------------------------------------

    async def _read(self, track: MediaStreamTrack) -> None:
        """Move every decoded frame into the gate at once (newest wins there)."""
        try:
            while True:
                frame = await track.recv()
                self.frames_in += 1
                self.last_frame = self.last_media = time.monotonic()
                self._frames_seen.append(self.last_frame)
                self.gate.put((frame, self.last_frame))  # type: ignore[arg-type]
                if self._working and self.pool is not None:
                    self.pool.notify(self)
        except MediaStreamError:
            await self.close("the peer's track ended")
        except asyncio.CancelledError:
            pass

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()
                self.audio_in += 1
                self.last_media = time.monotonic()
                if self.audio_delay is not None:
                    self.audio_delay.push(frame)  # type: ignore[arg-type]
                elif self.stream is not None:
                    self.stream.push_audio(frame)  # type: ignore[arg-type]

    # -- the frames: one at a time, on a worker of the pool ---------------------------------

    def ready(self) -> bool:
        """A frame is waiting in the gate (for the pool)."""
        return self.gate.waiting

    def failed(self, exc: BaseException) -> None:
        """A step raised (for the pool): the session ends, with the reason."""
        reason = f"worker failed: {type(exc).__name__}: {exc}"
        log.error("session %s: %s", self.id, reason, exc_info=exc)
        self.errors.append(reason)
        if self.metrics is not None:
            self.metrics.errors.labels("worker").inc()
        with contextlib.suppress(RuntimeError):  # the loop may be closing already
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self.close(reason)))

    def step(self) -> None:
        """The newest frame → pipeline → outgoing track or the stream (a worker of the pool;
        never two at once for one session)."""
        try:
            got = self.gate.get(timeout=0)
        except GateClosed:
            return
        if got is None:
            return
        faults.set_scope(self.id)
        (frame, arrived), _ = got
        pipeline = self._pipeline
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is not None and pipeline is not None:
            try:
                pipeline.reconfigure(pending)
                self.config = pending
                self.degraded = None  # the client's new settings get a fresh start
                self.faults.clear()
            except LiveFXError as exc:  # checked before it got here; kept for safety
                self.errors.append(str(exc))
        try:
            out = frame_from_av(frame)
        except LiveFXError as exc:  # a frame that cannot be read: nothing to pass through
            self._frame_error(exc)
            return
        if pipeline is not None:
            try:
                out = pipeline.process(out)
                self.faults.ok()
            except Exception as exc:  # (this frame goes out unprocessed)
                self._pipeline_fault(pipeline, exc)
        if pipeline is not None and self.metrics is not None:
            self.metrics.observe_stages(pipeline.times.last_ms())
            changes = pipeline.budget.changes  # all of them (events keeps the last 100)
            if changes < self._quality_changes:  # a new controller: new settings' budget
                self._quality_changes = 0
            if changes > self._quality_changes:
                self.metrics.quality_changes.inc(changes - self._quality_changes)
            self._quality_changes = changes
        faults.hit("worker")
        if self.stream is not None:
            self.stream.push_video(out, arrived)
        else:
            av_out = frame_to_av(out, self._out_pool[self._out_k])
            self._out_pool[self._out_k] = av_out
            self._out_k = (self._out_k + 1) % len(self._out_pool)
            self.loop.call_soon_threadsafe(self.out.push, av_out, arrived)
        now = time.monotonic()
        if pipeline is not None and now - self._last_snapshot >= 0.5:
            self._last_snapshot = now
            self.latest = self._snapshot(pipeline)

    def _stop_working(self) -> None:
        """Off the pool (a step in progress ends first), then the pipeline is closed."""
        if self._working and self.pool is not None:
            self._working = False
            if not self.pool.remove(self):
                log.warning("session %s: its frame did not finish within 5 s", self.id)
            if self._own_pool:
                self.pool.close()
        if self._pipeline is not None:
            with contextlib.suppress(Exception):
                self._pipeline.close()
            self._pipeline = None

    def _frame_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))
        if self.metrics is not None:
            self.metrics.errors.labels(type(exc).__name__).inc()
        log.warning("session %s: frame skipped: %s", self.id, exc)

    def _pipeline_fault(self, pipeline: Pipeline, exc: Exception) -> None:
        """One frame's fault: counted, its temporal state forgotten; a persistent one turns the
        effect off (the frame goes out as it came in either way)."""
        message = str(exc) if isinstance(exc, LiveFXError) else f"{type(exc).__name__}: {exc}"
        kind = f"stage:{exc.stage}" if isinstance(exc, StageError) else type(exc).__name__
        if self.metrics is not None:
            self.metrics.errors.labels(kind).inc()
        if self.faults.in_a_row == 0:
            log.warning("session %s: frame passed through unprocessed: %s", self.id, message)
        self.errors.append(message)
        with contextlib.suppress(Exception):
            pipeline.reset()
        if not self.faults.failed(message) or pipeline.config.effect.name == "none":
            return
        effect = pipeline.config.effect.name
        config = replace(pipeline.config, effect=EffectConfig(name="none"))
        try:
            pipeline.reconfigure(config)
        except Exception as again:
            log.error("session %s: cannot degrade to effect=none: %s", self.id, again)
            return
        self.config = config
        self.degraded = (
            f"effect {effect} turned off after {self.faults.in_a_row} faults in a row"
            if self.faults.in_a_row >= FAULTS_IN_A_ROW
            else f"effect {effect} turned off after {sum(self.faults.recent)} faults "
            f"in {len(self.faults.recent)} frames"
        ) + f": {message}"
        self.faults.clear()
        if self.metrics is not None:
            self.metrics.errors.labels("degraded").inc()
        log.error("session %s: %s", self.id, self.degraded)

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
            "person": pipeline.person_stats(),
        }

    # -- control ----------------------------------------------------------------------------

    def set_config(self, config: PipelineConfig) -> None:
        """Apply new settings from the next frame on (validated by the caller)."""
        with self._lock:
            self._pending = config
        self.config = config

    async def add_candidates(self, fragment: sdp.Fragment) -> int:
        """Trickled remote candidates (RFC 8840); those a loopback server cannot reach are
        dropped, as in offers. Returns how many were added."""
        from aiortc.sdp import candidate_from_sdp

        keep = sdp.local_only(rtc.own_addresses()) if self.server_config.loopback else None
        added = 0
        for mid, index, value in fragment.candidates:
            parsed = sdp.candidate_address(value)
            if parsed is None or (keep is not None and not keep(*parsed)):
                continue
            try:
                candidate = candidate_from_sdp(value)
            except (ValueError, AssertionError, IndexError):
                continue  # RFC 9725 §4.3.2: unusable candidates are silently discarded
            candidate.sdpMid = mid
            candidate.sdpMLineIndex = index
            with contextlib.suppress(Exception):
                await self.pc.addIceCandidate(candidate)
                added += 1
        if fragment.end_of_candidates:
            with contextlib.suppress(Exception):
                await self.pc.addIceCandidate(None)
        return added

    def _quiet_for(self) -> float:
        """Seconds without the input this session lives on."""
        now = time.monotonic()
        if self.kind == "play":
            assert self.stream is not None
            since = self.stream.unpublished_since
            return 0.0 if since is None else now - max(since, self.created)
        return now - (self.last_frame if self.frames_in else (self.connected_at or self.created))

    def _loss_recovery(self) -> dict[str, int] | None:
        """The video receiver's holes: filled in time, given up (then waited for a keyframe),
        frames skipped meanwhile, resumptions without one (``rtc.MarkerJitterBuffer``)."""
        for t in self.pc.getTransceivers():
            jb = getattr(t.receiver, "_RTCRtpReceiver__jitter_buffer", None)
            if t.kind == "video" and isinstance(jb, rtc.MarkerJitterBuffer):
                return {
                    "holes_filled": jb.gaps_filled,
                    "holes_given_up": jb.gaps_given_up,
                    "frames_skipped": jb.frames_skipped,
                    "resumed_without_keyframe": jb.resumed_without_keyframe,
                }
        return None

    def _encoder_faults(self) -> rtc.encoders.Faults | None:
        """The faults of the encoder aiortc's sender made for our video (LiveFX's own)."""
        for sender in self.pc.getSenders():
            if sender.track is self.out:
                encoder = getattr(sender, "_RTCRtpSender__encoder", None)
                return getattr(encoder, "faults", None)
        return None

    async def _watchdog(self) -> None:
        idle = self.server_config.idle_timeout_s
        connect = self.server_config.connect_timeout_s
        try:
            while not self.closed.is_set():
                await asyncio.sleep(min(0.5, idle / 2, connect / 2))
                if self.connected_at is None:
                    waited = time.monotonic() - self.created
                    if waited > connect:
                        await self.close(f"not connected within {connect:g} s")
                    continue
                failing = self._encoder_faults()
                if failing is not None and failing.in_a_row >= ENCODER_FAULTS_IN_A_ROW:
                    await self.close(
                        f"encoder failed {failing.in_a_row} frames in a row: {failing.last}"
                    )
                    continue
                quiet = self._quiet_for()
                if quiet <= idle:
                    continue
                if self.kind == "play":
                    name = self.stream.name if self.stream is not None else "?"
                    await self.close(f"no publisher on stream {name} for {quiet:.1f} s")
                else:
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
        for track in (self.audio_out, self.play_video, self.play_audio):
            if track is not None:
                track.stop()
        if self.audio_delay is not None:
            self.audio_delay.close()
        if self.stream is not None:
            if self.kind == "play":
                self.stream.remove_player(self, self.play_video, self.play_audio)
            elif self.stream.publisher is self:
                self.stream.set_publisher(None)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
        await asyncio.get_running_loop().run_in_executor(None, self._stop_working)
        if self.upload_path is not None:
            with contextlib.suppress(OSError):
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
        if self.kind == "play" and self.play_video is not None:
            sent, out_times, dropped = (
                self.play_video.sent,
                self.play_video.sent_times,
                self.play_video.dropped,
            )
        else:
            relay = next((r for r in self.relays if r.kind == "video"), None)
            sent = relay.sent if relay is not None else self.out.sent
            out_times = self.out.sent_times
            dropped = gate["dropped"] + self.out.replaced
        delay = self.delays.median_s()
        audio_out = (
            self.play_audio.sent
            if self.play_audio is not None
            else getattr(self.audio_out, "sent", 0)
        )
        stats: dict[str, Any] = {
            "session": self.id,
            "kind": self.kind,
            "stream": self.stream.name if self.stream is not None else None,
            "mode": self.server_config.mode,
            "state": self.pc.connectionState,
            "uptime_s": round(time.monotonic() - self.created, 1),
            "fps_in": self._fps(self._frames_seen),
            "fps_out": self._fps(out_times),
            "frames_in": self.frames_in,
            "frames_out": sent,
            "dropped": dropped,
            "audio_in": self.audio_in,
            "audio_out": audio_out,
            "video_delay_ms": round(delay * 1000, 1) if delay is not None else None,
            "audio_delay_ms": round(self.audio_delay.applied_s * 1000, 1)
            if self.audio_delay is not None
            else None,
            "rtt_ms": rtt,
            "settings": describe(self.config),
            "errors": list(self.errors)[-3:],
            "faults": self.faults.stats(),
            "loss_recovery": self._loss_recovery(),
            "degraded": self.degraded,
            **self.latest,
        }
        return stats
