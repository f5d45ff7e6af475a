"""Receivers that release media as soon as it is whole, and recover from loss in bounded time.

aiortc's video jitter buffer (512 packets) releases a frame only when a packet of the next one
arrives, and a packet that never comes blocks every frame behind it until the buffer overflows
(seconds of frozen picture); its NACK generator asks for a missing packet once. Here:

- ``MarkerJitterBuffer``: a frame goes out as soon as its packets up to the marked last one are
  in; a hole at the head is waited for (retransmission) for a deadline that follows how long
  holes take to fill (``GAP_MIN_S`` … ``GAP_MAX_S``); past it, the frames there are dropped, a
  PLI asks for a keyframe, and frames are skipped until a keyframe starts: the decoder only ever
  gets complete frames it can decode. Audio: each packet as it arrives.
- ``PersistentNackGenerator``: a packet still missing is asked for again every ``RENACK_S``, at
  most ``NACK_TRIES`` times (a lost retransmission is asked for again, not forgotten).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Any

from aiortc import jitterbuffer
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.utils import uint16_add

GAP_MIN_S = 0.08  # never give up on a hole sooner (a retransmission needs a round trip)
GAP_MAX_S = 0.3  # nor later (past this the picture is frozen for longer than a keyframe takes)
PLI_INTERVAL_S = 0.25  # while waiting for a keyframe, ask again this often
# A sender that ignores PLI (FFmpeg's WHIP muxer) sends its next keyframe only when its GOP
# ends, seconds later: past this wait, decoding resumes at the next whole frame (its picture
# may show the loss until that keyframe comes) rather than freezing.
KEYFRAME_WAIT_S = 1.0
RENACK_S = 0.03
NACK_TRIES = 6


def keyframe_start(packet: Any) -> bool:
    """Whether an RTP packet starts a keyframe: H.264 (aiortc's depayloaded Annex B: an IDR or
    SPS NAL unit, whole or an FU-A start) or VP8 (RFC 7741: S=1, partition 0, P=0)."""
    data: bytes = getattr(packet, "_data", b"") or b""
    if data.startswith(b"\x00\x00\x00\x01"):
        k = 0
        while (k := data.find(b"\x00\x00\x01", k)) >= 0 and k + 3 < len(data):
            if data[k + 3] & 0x1F in (5, 7):
                return True
            k += 3
        return False
    payload: bytes = packet.payload
    if len(payload) < 2 or not payload[0] & 0x10 or payload[0] & 0x07:
        return False  # not the start of partition 0
    i = 1
    if payload[0] & 0x80:  # X: the extension byte, then I, L, T/K fields
        ext = payload[1]
        i = 2
        if ext & 0x80:
            i += 2 if i < len(payload) and payload[i] & 0x80 else 1
        if ext & 0x40:
            i += 1
        if ext & 0x30:
            i += 1
    return i < len(payload) and not payload[i] & 0x01


class MarkerJitterBuffer(jitterbuffer.JitterBuffer):
    """aiortc's jitter buffer, releasing each frame as soon as it is whole, and never waiting on
    a lost packet for longer than its deadline."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self._gap_since: float | None = None
        self._fills: deque[float] = deque(maxlen=32)  # how long recent holes took to fill
        self._want_keyframe = False
        self._want_since = 0.0
        self._last_pli = 0.0
        self.resumed_without_keyframe = 0
        self.gaps_filled = 0
        self.gaps_given_up = 0
        self.frames_skipped = 0  # complete frames dropped while waiting for a keyframe

    # -- video ----------------------------------------------------------------------------------

    def add(self, packet: Any) -> tuple[bool, jitterbuffer.JitterFrame | None]:
        if not self._is_video:
            return super().add(packet)
        now = time.monotonic()
        pli, frame = super().add(packet)  # stored; the head frame if it is whole (and wanted)
        if self._want_keyframe:
            frame = self._keyframe(any_frame=now - self._want_since > KEYFRAME_WAIT_S)
            if frame is None:
                if now - self._last_pli >= PLI_INTERVAL_S:
                    self._last_pli = now
                    pli = True
                return pli, None
        if frame is not None or self._origin is None:
            if self._gap_since is not None and frame is not None:
                self._fills.append(now - self._gap_since)
                self.gaps_filled += 1
                self._gap_since = None
            return pli, frame
        if not self._blocked(packet.sequence_number):
            return pli, None
        if self._gap_since is None:
            self._gap_since = now
            return pli, None
        if now - self._gap_since < self.deadline_s():
            return pli, None
        # The hole will not be filled in time: what is here waits for a keyframe to start over.
        self.gaps_given_up += 1
        self._gap_since = None
        self._want_keyframe = True
        self._want_since = now
        frame = self._keyframe()
        if frame is None:
            self._last_pli = now
            pli = True
        return pli, frame

    def deadline_s(self) -> float:
        """How long a hole at the head is waited for: twice the recent fill time, bounded."""
        if not self._fills:
            return GAP_MIN_S
        return min(GAP_MAX_S, max(GAP_MIN_S, 2.0 * statistics.median(self._fills) + 0.02))

    def _blocked(self, newest: int) -> bool:
        """Whether a missing packet holds back packets already here (up to ``newest``)."""
        assert self._origin is not None
        span = uint16_add(newest, -self._origin)
        if span >= self.capacity:
            return False
        return any(self._packets[(self._origin + k) % self._capacity] is None for k in range(span))

    def _keyframe(self, any_frame: bool = False) -> jitterbuffer.JitterFrame | None:
        """While waiting for a keyframe: the first whole one here, everything before it dropped
        (holes included: their packets are no longer wanted). Packets stay until then, so that a
        keyframe whose first packet comes late (a retransmission) is still found whole.
        ``any_frame``: the first whole frame that certainly starts where it seems to (the packet
        before it ends a frame), keyframe or not."""
        if self._origin is None:
            return None
        start: int | None = None
        first: Any = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if start is not None:
                if packet is not None and packet.timestamp == first.timestamp:
                    if packet.marker:
                        break
                    continue
                start = None  # that keyframe is not whole yet; a later one may be
            if packet is not None and (
                keyframe_start(packet) or (any_frame and self._follows_a_frame(count))
            ):
                start, first = count, packet
                if packet.marker:
                    break
        else:
            return None
        if start is None:
            return None
        skipped = {
            p.timestamp
            for k in range(start)
            if (p := self._packets[(self._origin + k) % self._capacity]) is not None
        }
        self.frames_skipped += len(skipped)
        self.remove(start)
        self._want_keyframe = False
        if not keyframe_start(first):
            self.resumed_without_keyframe += 1
        return self._remove_frame(first.sequence_number)

    def _follows_a_frame(self, count: int) -> bool:
        assert self._origin is not None
        before = self._packets[(self._origin + count - 1) % self._capacity] if count else None
        return before is not None and bool(before.marker)

    def _remove_frame(self, sequence_number: int) -> jitterbuffer.JitterFrame | None:
        if self._origin is None or (self._is_video and self._want_keyframe):
            return None
        if not self._is_video:
            return self._next_audio()
        packets: list[Any] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                break
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return jitterbuffer.JitterFrame(
                    data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp
                )
        return super()._remove_frame(sequence_number)

    # -- audio ----------------------------------------------------------------------------------

    def _next_audio(self) -> jitterbuffer.JitterFrame | None:
        assert self._origin is not None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is not None:
                self.remove(count + 1)
                data = packet._data  # type: ignore[attr-defined]  # set by aiortc's receiver
                return jitterbuffer.JitterFrame(data=data, timestamp=packet.timestamp)
        return None


class PersistentNackGenerator(NackGenerator):
    """aiortc's NACK generator, asking again for what is still missing."""

    def __init__(self) -> None:
        super().__init__()
        self._asked: dict[int, tuple[float, int]] = {}  # seq → (last asked, times)

    def add(self, packet: Any) -> bool:
        missed = super().add(packet)
        now = time.monotonic()
        asked = self._asked
        for seq in [s for s in asked if s not in self.missing]:
            del asked[seq]
        due = missed
        for seq in list(self.missing):
            last, times = asked.get(seq, (0.0, 0))
            if times >= NACK_TRIES:
                self.missing.discard(seq)  # given up: the jitter buffer has moved on
                asked.pop(seq, None)
            elif now - last >= RENACK_S:
                due = True
        if due:
            for seq in self.missing:
                last, times = asked.get(seq, (0.0, 0))
                asked[seq] = (now, times + 1)
        return due


def install_jitter_buffer(low_latency: bool) -> None:
    """Receivers in this process release frames as soon as they are whole and recover from loss
    in bounded time (or aiortc's way)."""
    import aiortc.rtcrtpreceiver as receiver

    if low_latency:
        receiver.JitterBuffer = MarkerJitterBuffer  # type: ignore[misc]
        receiver.NackGenerator = PersistentNackGenerator  # type: ignore[misc]
    else:
        receiver.JitterBuffer = jitterbuffer.JitterBuffer  # type: ignore[misc]
        receiver.NackGenerator = NackGenerator  # type: ignore[misc]
