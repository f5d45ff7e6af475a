"""Jitter buffers that release media as soon as it is whole (aiortc's hold it back)."""

from __future__ import annotations

from typing import Any

from aiortc import jitterbuffer


class MarkerJitterBuffer(jitterbuffer.JitterBuffer):
    """aiortc's jitter buffer, releasing each frame as soon as it is whole.

    Video: aiortc releases a frame only when a packet of the *next* frame arrives (one frame
    interval, 33 ms at 30 fps, on every hop). RTP video senders set the marker bit on a frame's
    last packet; when the packets from the buffer's start up to a marked one are all present and
    share a timestamp, the frame goes out at once. Anything else (loss, reordering) falls back
    to aiortc's rule.

    Audio: every RTP packet is a whole frame; aiortc still waits for four more (80 ms of Opus).
    Here each packet goes out as it arrives if it is newer than the last one released; a packet
    that arrives after a newer one counts as lost (the decoder conceals the 20 ms gap).
    """

    def _remove_frame(self, sequence_number: int) -> jitterbuffer.JitterFrame | None:
        if self._origin is None:
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

    def _next_audio(self) -> jitterbuffer.JitterFrame | None:
        assert self._origin is not None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is not None:
                self.remove(count + 1)
                data = packet._data  # type: ignore[attr-defined]  # set by aiortc's receiver
                return jitterbuffer.JitterFrame(data=data, timestamp=packet.timestamp)
        return None


def install_jitter_buffer(low_latency: bool) -> None:
    """Receivers in this process release frames as soon as they are whole (or aiortc's way)."""
    import aiortc.rtcrtpreceiver as receiver

    receiver.JitterBuffer = MarkerJitterBuffer if low_latency else jitterbuffer.JitterBuffer  # type: ignore[misc]
