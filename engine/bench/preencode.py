"""Pre-encoded sending for load runs: the clip encoded once, sent by every session as packets.

A load generator that encodes every frame of every session measures its own encoder: at 30 fps
one 640×480 VP8 encode per frame and session fills a core at about eight sessions. Here the
clip's frames, each with its code stamped, are encoded **once** before the run (per codec and
size): a loop of ``seconds`` × ``fps`` frames (3 s by default), a keyframe at the loop's start and
none after, no frame that refers ahead (libvpx without alt-ref frames or lag; libx264 constrained
baseline, ``zerolatency``). Each session's ``PacketCamera`` then hands aiortc's sender those
packets (``av.Packet``: aiortc packetizes them with its codec's ``pack``; no encoder runs), paced
at ``fps``, with its own timestamps.

Frame numbers: frame ``i`` of the loop carries the code ``i``; the sender numbers what it sends
0, 1, 2, … and sends frame ``n`` of the session as loop frame ``n mod L``. A code ``c`` read back
is the latest sent number ``n`` with ``n mod L = c`` (``resolve``): exact as long as a frame comes
back within one loop (3 s) of being sent, which a server that keeps the newest frame always does;
one that held frames longer would be read one loop short (and be far past any knee anyway).

What the client still does per frame: packetize (cheap), receive, decode every returned frame
(aiortc's decoder runs on all of them: fps out counts decoded frames) and read the code of a
sample of them (``--sample``).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from engine.bench import code
from engine.errors import InputError
from engine.frame import FrameBuffer
from engine.media import frame_to_av, luma_view

CLOCK = fractions.Fraction(1, 90_000)
LOOP_S = 3.0


@dataclass(frozen=True)
class EncodedLoop:
    """One encoded frame per loop position; frame ``i`` carries the code ``i``."""

    codec: str  # vp8 | h264
    width: int
    height: int
    fps: float
    packets: tuple[bytes, ...]
    keyframes: tuple[bool, ...]
    encode_s: float  # how long encoding the loop took (once, before the run)

    @property
    def length(self) -> int:
        return len(self.packets)

    @property
    def bytes_per_second(self) -> float:
        return sum(len(p) for p in self.packets) * self.fps / max(self.length, 1)

    def resolve(self, read: int, latest: int) -> int | None:
        """The sent number behind the code ``read``: the latest one ≤ ``latest`` with that
        remainder (None for a code that no loop frame carries)."""
        if not 0 <= read < self.length or latest < 0:
            return None
        n = latest - ((latest - read) % self.length)
        return n if n >= 0 else None


def _bitrate(width: int, height: int, fps: float) -> int:
    """About 0.1 bit per pixel: 0.9 Mbit/s at 640×480 and 30 fps (aiortc's own start at 0.5
    for VP8 and 1 for H.264), within 0.3 … 8 Mbit/s."""
    return int(min(max(width * height * fps * 0.1, 300_000), 8_000_000))


def _context(codec: str, width: int, height: int, fps: float, length: int) -> Any:
    ctx: Any  # av.VideoCodecContext
    if codec == "vp8":
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.options = {
            "deadline": "realtime",
            "cpu-used": "4",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "kf-max-dist": str(length),
            "kf-min-dist": str(length),
        }
    elif codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        ctx.profile = "Constrained Baseline"
        ctx.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "x264-params": f"keyint={length}:min-keyint={length}:scenecut=0:repeat-headers=1",
        }
    else:
        raise InputError(f"pre-encoded: codec {codec!r} is not vp8 or h264")
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = CLOCK
    ctx.framerate = fractions.Fraction(fps).limit_denominator(1001)
    ctx.bit_rate = _bitrate(width, height, fps)
    ctx.gop_size = length
    return ctx


def encode_loop(
    frames: list[FrameBuffer],
    layout: code.Layout,
    fps: float,
    codec: str,
    seconds: float = LOOP_S,
) -> EncodedLoop:
    """Encode ``seconds`` × ``fps`` frames of ``frames`` (round and round), frame ``i`` stamped
    with the code ``i``: one packet per frame, a keyframe first."""
    if not frames:
        raise InputError("pre-encoded: no frames to encode")
    width, height = frames[0].width, frames[0].height
    length = max(2, round(seconds * fps))
    started = time.perf_counter()
    ctx = _context(codec, width, height, fps, length)
    packets: list[av.Packet] = []
    for i in range(length):
        frame = frame_to_av(frames[i % len(frames)])
        code.stamp(luma_view(frame), i, layout)
        frame.pts = round(i * 90_000 / fps)
        frame.time_base = CLOCK
        frame.pict_type = (
            av.video.frame.PictureType.I if i == 0 else av.video.frame.PictureType.NONE
        )
        packets.extend(ctx.encode(frame))
    packets.extend(ctx.encode(None))
    if len(packets) != length:
        raise InputError(
            f"pre-encoded {codec}: {len(packets)} packets for {length} frames (one each expected)"
        )
    if not packets[0].is_keyframe:
        raise InputError(f"pre-encoded {codec}: the loop does not start with a keyframe")
    return EncodedLoop(
        codec=codec,
        width=width,
        height=height,
        fps=fps,
        packets=tuple(bytes(p) for p in packets),
        keyframes=tuple(bool(p.is_keyframe) for p in packets),
        encode_s=time.perf_counter() - started,
    )


class PacketCamera(MediaStreamTrack):
    """Sends an ``EncodedLoop`` round and round at ``fps`` as packets (aiortc's sender only
    packetizes them). Number ``n`` goes out as loop frame ``n mod L``; ``sent[n]`` is when the
    sender took it. No frame is ever skipped (the next one would not decode): a sender that
    falls behind by more than a frame interval has its schedule moved on (``late`` counts it),
    so frames are never sent in a burst to catch up."""

    kind = "video"

    def __init__(self, loop: EncodedLoop, fps: float, sent: dict[int, float]) -> None:
        super().__init__()
        self.loop = loop
        self.fps = fps
        self.sent = sent
        self.count = 0
        self.late = 0
        self._start: float | None = None

    @property
    def latest(self) -> int:
        return self.count - 1

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.perf_counter()
        if self._start is None:
            self._start = now
        i = self.count
        due = self._start + i / self.fps
        if now > due + 1 / self.fps:
            self.late += 1
            self._start += now - due  # move the schedule on: no burst
        elif due > now:
            await asyncio.sleep(due - now)
        packet = av.Packet(self.loop.packets[i % self.loop.length])
        packet.pts = round(i * 90_000 / self.fps)
        packet.time_base = CLOCK
        self.count = i + 1
        self.sent[i % code.MODULO] = time.perf_counter()
        return packet
