"""A named broadcast stream: one WHIP publisher, many WHEP players, each codec encoded once.

The publisher's session runs the pipeline; its worker hands each processed frame to the stream
(``push_video``, on the worker thread), which gives it to one ``SharedVideoEncoder`` per codec
the players asked for. Each encoder runs on its own thread behind a newest-wins ``FrameGate`` and
hands its packets to every player's ``PacketTrack`` on the event loop; aiortc's senders only
packetize them. A player's PLI/FIR asks its encoder for a keyframe (at most one every
``KEYFRAME_MIN_INTERVAL_S``, whoever asks), its REMB lowers the encoder's bitrate (the slowest
player sets it, as in an SFU without simulcast).

Audio: the publisher's decoded audio waits in an ``AudioDelay`` for as long as the video takes,
then one Opus encoder feeds every player.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import threading
import time
from collections import deque
from typing import Any

import av
from av.audio.resampler import AudioResampler

from engine import faults
from engine.config import EncoderConfig
from engine.frame import FrameBuffer
from engine.media import frame_to_av
from engine.pipeline.gate import FrameGate
from engine.server import rtc
from engine.server.rtc import hwcodec
from engine.server.tracks import AudioDelay, DelayStats, PacketTrack

log = logging.getLogger(__name__)

KEYFRAME_MIN_INTERVAL_S = 0.3
BITRATE_REBUILD_MIN_INTERVAL_S = 5.0
MIN_BITRATE = 150_000
OPUS_RATE = 48_000
OPUS_FRAME = 960  # 20 ms
AUDIO_TIME_BASE = fractions.Fraction(1, OPUS_RATE)


class SharedVideoEncoder:
    """One encoder of one codec for all the players of a stream."""

    def __init__(
        self,
        stream: str,
        mime: str,
        loop: asyncio.AbstractEventLoop,
        settings: EncoderConfig,
        bitrate: int,
        delays: DelayStats,
    ) -> None:
        self.stream = stream
        self.mime = mime
        self.loop = loop
        self.settings = settings
        self.max_bitrate = bitrate
        self.delays = delays
        self.gate: FrameGate[tuple[av.VideoFrame, float]] = FrameGate()
        self.subscribers: set[PacketTrack] = set()
        self._bitrates: dict[int, int] = {}
        self._keyframe_wanted = True
        self._last_keyframe = 0.0
        self._pool: list[av.VideoFrame | None] = [None] * 8
        self._k = 0
        self._pts_offset = 0
        self._last_pts: int | None = None
        self.encoded = 0
        self.keyframes = 0
        self.bytes = 0
        self.encode_ms: deque[float] = deque(maxlen=120)
        self.errors = 0
        self.last_error = ""
        self.encoder_name = ""  # the FFmpeg codec: libx264, h264_nvenc, libvpx
        self._thread = threading.Thread(
            target=self._run, name=f"livefx-encode-{stream}-{mime}", daemon=True
        )
        self._thread.start()

    # -- from the publisher's worker thread -----------------------------------------------------

    def push(self, frame: FrameBuffer, arrived: float) -> None:
        """Copy the processed frame into this encoder's ring and offer it (newest wins)."""
        av_frame = frame_to_av(frame, self._pool[self._k])
        self._pool[self._k] = av_frame
        self._k = (self._k + 1) % len(self._pool)
        self.gate.put((av_frame, arrived))

    # -- control (any thread) -------------------------------------------------------------------

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    def set_bitrate(self, key: int, bitrate: int | None) -> None:
        if bitrate is None:
            self._bitrates.pop(key, None)
        else:
            self._bitrates[key] = bitrate

    def target_bitrate(self) -> int:
        reported = list(self._bitrates.values())
        return max(MIN_BITRATE, min([self.max_bitrate, *reported]))

    def close(self) -> None:
        self.gate.close()

    # -- the encoder thread ---------------------------------------------------------------------

    def _run(self) -> None:
        codec: Any = None
        built_at = 0.0
        hardware = True  # NVENC where chosen, until it fails for this stream
        for (frame, arrived), _ in self.gate.frames():
            now = time.monotonic()
            bitrate = self.target_bitrate()
            rebuild = codec is None or (codec.width, codec.height) != (frame.width, frame.height)
            if (
                not rebuild
                and codec is not None
                and abs(bitrate - codec.bit_rate) > 0.25 * codec.bit_rate
                and now - built_at > BITRATE_REBUILD_MIN_INTERVAL_S
            ):
                rebuild = True
            if rebuild:
                codec = rtc.make_video_codec(
                    self.mime, frame.width, frame.height, bitrate, self.settings, hardware=hardware
                )
                hardware = codec.name in hwcodec.HARDWARE_NAMES  # off for good once off
                self.encoder_name = codec.name
                built_at = now
                self._keyframe_wanted = True
            assert codec is not None
            force = self._keyframe_wanted and now - self._last_keyframe >= KEYFRAME_MIN_INTERVAL_S
            frame.pict_type = (
                av.video.frame.PictureType.I if force else av.video.frame.PictureType.NONE
            )
            pts = self._monotonic_pts(frame)
            time_base = frame.time_base or rtc.VIDEO_CLOCK  # encode() rebases the frame
            start = time.perf_counter()
            try:
                faults.hit("encode", self.mime.split("/")[-1])
                packets = codec.encode(frame)
            except Exception as exc:  # (a codec fault: rebuilt on the next frame)
                self.errors += 1
                self.last_error = f"{self.mime} encoder: {type(exc).__name__}: {exc}"
                log.warning("stream %s: %s", self.stream, self.last_error)
                for observe in rtc.encoders.encode_error_observers:
                    observe(self.last_error)
                if codec.name in hwcodec.HARDWARE_NAMES:
                    hardware = False
                    hwcodec.note_fallback(f"stream {self.stream}: {codec.name}", exc)
                codec = None
                continue
            self.encode_ms.append((time.perf_counter() - start) * 1000)
            rtc.encoders.report_encode(time.perf_counter() - start)
            if not packets:
                continue
            for packet in packets:
                packet.pts = pts
                packet.time_base = time_base
                if packet.is_keyframe:
                    self.keyframes += 1
                    self._last_keyframe = now
                    self._keyframe_wanted = False
                self.bytes += packet.size
            self.encoded += 1
            self.delays.add(time.monotonic() - arrived)
            self.loop.call_soon_threadsafe(self._deliver, packets)

    def _monotonic_pts(self, frame: av.VideoFrame) -> int:
        """The frame's own timestamp (players keep it, so latency can be matched), shifted
        when a new publisher starts over from zero so that the encoder's input keeps rising."""
        pts = int(frame.pts or 0) + self._pts_offset
        if self._last_pts is not None and pts <= self._last_pts:
            self._pts_offset += self._last_pts + 3000 - pts
            pts = self._last_pts + 3000
        self._last_pts = pts
        frame.pts = pts
        return pts

    # -- on the event loop ----------------------------------------------------------------------

    def _deliver(self, packets: list[av.Packet]) -> None:
        for track in list(self.subscribers):
            for packet in packets:
                track.put(packet)

    def stats(self) -> dict[str, Any]:
        times = sorted(self.encode_ms)
        return {
            "codec": self.mime.split("/")[-1],
            "encoder": self.encoder_name or None,
            "players": len(self.subscribers),
            "frames": self.encoded,
            "keyframes": self.keyframes,
            "bytes": self.bytes,
            "bitrate": self.target_bitrate(),
            "encode_ms": round(times[len(times) // 2], 2) if times else None,
            "dropped": self.gate.stats()["dropped"],
            "errors": self.errors,
            "last_error": self.last_error or None,
        }


class SharedAudioEncoder:
    """The stream's audio: delayed to match the video, encoded to Opus once, for every player."""

    def __init__(self, stream: str, delay: AudioDelay) -> None:
        self.stream = stream
        self.delay = delay
        self.subscribers: set[PacketTrack] = set()
        self.codec = av.CodecContext.create("libopus", "w")
        self.codec.sample_rate = OPUS_RATE
        self.codec.layout = "stereo"
        self.codec.format = "s16"
        self.codec.bit_rate = 64_000
        self.codec.time_base = AUDIO_TIME_BASE
        self.resampler = AudioResampler(
            format="s16", layout="stereo", rate=OPUS_RATE, frame_size=OPUS_FRAME
        )
        self._samples = 0
        self.encoded = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            while True:
                frame = await self.delay.get()
                # ~50 µs of Opus per 20 ms frame: cheaper here than a hop to a thread.
                for chunk in self.resampler.resample(frame):
                    chunk.pts = self._samples
                    chunk.time_base = AUDIO_TIME_BASE
                    self._samples += chunk.samples
                    for packet in self.codec.encode(chunk):
                        self.encoded += 1
                        for track in list(self.subscribers):
                            track.put(packet)

    def close(self) -> None:
        self.delay.close()
        self._task.cancel()


class Stream:
    """One name under /whip and /whep: its publisher, its players, their encoders."""

    def __init__(
        self, name: str, settings: EncoderConfig, bitrate: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.name = name
        self.settings = settings
        self.bitrate = bitrate
        self.loop = loop
        self.publisher: Any = None  # the publishing Session
        self.players: set[Any] = set()
        self.delays = DelayStats()
        self.video: dict[str, SharedVideoEncoder] = {}
        self.audio = SharedAudioEncoder(name, AudioDelay(self.delays.median_s))
        self.created = time.monotonic()
        self.unpublished_since: float | None = time.monotonic()

    # -- the publisher --------------------------------------------------------------------------

    def set_publisher(self, session: Any) -> None:
        self.publisher = session
        self.unpublished_since = None if session is not None else time.monotonic()
        for encoder in self.video.values():
            encoder.request_keyframe()

    def push_video(self, frame: FrameBuffer, arrived: float) -> None:
        """On the publisher's worker thread."""
        for encoder in list(self.video.values()):
            encoder.push(frame, arrived)

    def push_audio(self, frame: av.AudioFrame) -> None:
        """On the event loop."""
        if self.audio.subscribers:
            self.audio.delay.push(frame)

    # -- players --------------------------------------------------------------------------------

    def add_player(
        self,
        session: Any,
        video: PacketTrack,
        mime: str,
        audio: PacketTrack | None,
    ) -> SharedVideoEncoder:
        encoder = self.video.get(mime)
        if encoder is None:
            encoder = SharedVideoEncoder(
                self.name, mime, self.loop, self.settings, self.bitrate, self.delays
            )
            self.video[mime] = encoder
            log.info("stream %s: %s encoder started", self.name, mime)
        encoder.subscribers.add(video)
        encoder.request_keyframe()
        video.on_gap = encoder.request_keyframe
        if audio is not None:
            self.audio.subscribers.add(audio)
        self.players.add(session)
        return encoder

    def remove_player(
        self, session: Any, video: PacketTrack | None, audio: PacketTrack | None
    ) -> None:
        self.players.discard(session)
        if audio is not None:
            self.audio.subscribers.discard(audio)
        for mime, encoder in list(self.video.items()):
            if video is not None:
                encoder.subscribers.discard(video)
            encoder.set_bitrate(id(session), None)
            if not encoder.subscribers:
                encoder.close()
                del self.video[mime]
                log.info("stream %s: %s encoder stopped (no players)", self.name, mime)

    @property
    def empty(self) -> bool:
        return self.publisher is None and not self.players

    def close(self) -> None:
        for encoder in self.video.values():
            encoder.close()
        self.video.clear()
        self.audio.close()

    def stats(self) -> dict[str, Any]:
        delay = self.delays.median_s()
        return {
            "stream": self.name,
            "publisher": self.publisher.id if self.publisher is not None else None,
            "players": len(self.players),
            "encoders": [e.stats() for e in self.video.values()],
            "audio_packets": self.audio.encoded,
            "video_delay_ms": round(delay * 1000, 1) if delay is not None else None,
            "audio_delay_ms": round(self.audio.delay.applied_s * 1000, 1),
        }
