"""The media tracks a session hands to aiortc's senders, and the audio delay that keeps A/V in sync.

- ``ProcessedTrack``: the newest processed video frame (a slot of one), for a sendrecv session;
- ``RelayTrack``: frames as received (the bare-echo baseline, and audio there);
- ``PacketTrack``: encoded packets for one WHEP player, from a stream's shared encoder;
- ``AudioDelay`` / ``DelayedAudioTrack``: received audio held for as long as the video takes
  through the pipeline and the encoder, so that both leave the server together.

Every queue here is bounded: a slow sender loses the oldest media, never builds latency.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

MAX_AUDIO_DELAY_S = 0.5  # never hold audio longer than this, whatever the video does
# libopus looks 312 samples (6.5 ms) ahead: each Opus hop delays audio by that much more than the
# same hop delays video. The publisher's encoder and ours are two hops the video does not make.
OPUS_LOOKAHEAD_S = 312 / 48_000
OPUS_HOPS = 2
AUDIO_QUEUE = 50  # frames (1 s of 20 ms Opus frames)
VIDEO_PACKET_QUEUE = 30  # encoded frames waiting for one player's sender
AUDIO_PACKET_QUEUE = 50


class DelayStats:
    """Recent video delays through the server (seconds), for the audio delay and the stats."""

    def __init__(self, window: int = 60) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self.last_update = 0.0

    def add(self, seconds: float) -> None:
        self._recent.append(max(0.0, seconds))
        self.last_update = time.monotonic()

    def median_s(self) -> float | None:
        """The median of the recent delays; None when no video went out in the last 2 s."""
        if not self._recent or time.monotonic() - self.last_update > 2.0:
            return None
        return statistics.median(self._recent)


class ProcessedTrack(MediaStreamTrack):
    """The outgoing video: the newest processed frame, handed to aiortc's sender."""

    kind = "video"

    def __init__(
        self, delays: DelayStats | None = None, encode_s: Callable[[], float] | None = None
    ) -> None:
        super().__init__()
        self._frame: av.VideoFrame | None = None
        self._arrived = 0.0
        self._ready = asyncio.Event()
        self.sent = 0
        self.replaced = 0  # processed frames the sender never took (it was busy)
        self.sent_times: deque[float] = deque(maxlen=120)
        self.delays = delays
        self.encode_s = encode_s

    def push(self, frame: av.VideoFrame, arrived: float = 0.0) -> None:
        """Called on the event loop (from the worker through call_soon_threadsafe); ``arrived``
        is when the frame came out of its decoder (time.monotonic)."""
        if self._frame is not None:
            self.replaced += 1
        self._frame = frame
        self._arrived = arrived
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
        now = time.monotonic()
        self.sent += 1
        self.sent_times.append(now)
        if self.delays is not None and self._arrived:
            # The encoder runs after this returns; its recent time stands in for this frame's.
            encode = self.encode_s() if self.encode_s is not None else 0.0
            self.delays.add(now - self._arrived + encode)
        return frame

    def stop(self) -> None:
        super().stop()
        self._ready.set()


class RelayTrack(MediaStreamTrack):
    """Each received frame sent back as it is: the bare aiortc echo (the baseline)."""

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.sent = 0

    async def recv(self) -> Any:
        frame = await self.source.recv()
        self.sent += 1
        return frame


class AudioDelay:
    """Audio frames held until ``delay()`` seconds after they arrived (bounded, newest kept).

    ``delay`` is the video's current delay through the server; audio released that long after
    it arrived leaves the server with the video captured at the same moment, so a receiver's
    lip sync (RTCP sender reports map both to the send time) and one without it both see them
    together.
    """

    def __init__(self, delay: Callable[[], float | None], capacity: int = AUDIO_QUEUE) -> None:
        self.delay = delay
        self._frames: deque[tuple[float, av.AudioFrame]] = deque()
        self._capacity = capacity
        self._event = asyncio.Event()
        self.closed = False
        self.received = 0
        self.released = 0
        self.dropped = 0
        self.applied_s = 0.0

    def push(self, frame: av.AudioFrame) -> None:
        if self.closed:
            return
        if len(self._frames) >= self._capacity:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append((time.monotonic(), frame))
        self.received += 1
        self._event.set()

    async def get(self) -> av.AudioFrame:
        """The next frame once it is due; raises MediaStreamError once closed."""
        while True:
            if self.closed:
                raise MediaStreamError
            if not self._frames:
                self._event.clear()
                await self._event.wait()
                continue
            arrived, frame = self._frames[0]
            video = self.delay()
            delay = (
                0.0
                if video is None
                else min(video - OPUS_HOPS * OPUS_LOOKAHEAD_S, MAX_AUDIO_DELAY_S)
            )
            delay = max(delay, 0.0)
            wait = arrived + delay - time.monotonic()
            if wait > 0.001:
                await asyncio.sleep(min(wait, 0.02))  # re-read the delay while waiting
                continue
            self._frames.popleft()
            self.released += 1
            self.applied_s = delay
            return frame

    def close(self) -> None:
        self.closed = True
        self._event.set()


class DelayedAudioTrack(MediaStreamTrack):
    """The outgoing audio of a sendrecv session: what the peer sent, in sync with the video."""

    kind = "audio"

    def __init__(self, delay: AudioDelay) -> None:
        super().__init__()
        self.delay = delay
        self.sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.delay.get()
        self.sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self.delay.close()


class PacketTrack(MediaStreamTrack):
    """Encoded packets for one player (aiortc's sender packetizes them, encodes nothing).

    Video starts at a keyframe; when the player's sender falls ``VIDEO_PACKET_QUEUE`` frames
    behind, what waits is dropped and the track waits for the next keyframe (``on_gap`` asks the
    encoder for one), so a slow player never slows the others nor shows a broken picture.
    """

    def __init__(self, kind: str, on_gap: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.on_gap = on_gap
        self._queue: deque[av.Packet] = deque()
        self._capacity = VIDEO_PACKET_QUEUE if kind == "video" else AUDIO_PACKET_QUEUE
        self._event = asyncio.Event()
        self._need_keyframe = kind == "video"
        self.sent = 0
        self.dropped = 0
        self.sent_times: deque[float] = deque(maxlen=120)

    def put(self, packet: av.Packet) -> None:
        """On the event loop."""
        if self.readyState != "live":
            return
        if self._need_keyframe:
            if not packet.is_keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        if len(self._queue) >= self._capacity:
            if self.kind != "video":
                self._queue.popleft()  # audio resumes anywhere: drop the oldest
                self.dropped += 1
            else:
                self.dropped += len(self._queue)
                self._queue.clear()
                if not packet.is_keyframe:
                    self._need_keyframe = True
                    self.dropped += 1
                    if self.on_gap is not None:
                        self.on_gap()
                    return
        self._queue.append(packet)
        self._event.set()

    async def recv(self) -> av.Packet:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._event.clear()
            await self._event.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self.sent += 1
        self.sent_times.append(time.monotonic())
        return self._queue.popleft()

    def stop(self) -> None:
        super().stop()
        self._event.set()
