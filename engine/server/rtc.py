"""aiortc set-up that LiveFX needs: encoder speed, frames released on the marker bit, ICE on
loopback, no STUN.

aiortc picks its encoders through ``get_encoder`` (imported by ``aiortc.rtcrtpsender``) and
hard-codes slow settings: libx264 with no preset, libvpx at cpu-used −6, a keyframe every 3000
frames. ``install_encoders`` replaces that function with one that returns encoders which create
their codec with LiveFX's ``EncoderConfig`` first; aiortc's own ``encode`` then finds the codec
ready and keeps it (it rebuilds only when the frame size or the target bitrate changes, and
ours is rebuilt the same way).
"""

from __future__ import annotations

import fractions
import ipaddress
import logging
import multiprocessing
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, jitterbuffer
from aiortc.codecs import h264, vpx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from engine.config import EncoderConfig

log = logging.getLogger(__name__)

_settings = EncoderConfig()
_original_get_encoder: Any = None


def _stale(codec: Any, frame: av.VideoFrame, bitrate: int) -> bool:
    return bool(
        codec is None
        or frame.width != codec.width
        or frame.height != codec.height
        or abs(bitrate - codec.bit_rate) / codec.bit_rate > 0.1
    )


class FastVp8Encoder(vpx.Vp8Encoder):
    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if _stale(self.codec, frame, self.target_bitrate):
            codec = av.CodecContext.create("libvpx", "w")
            codec.width, codec.height = frame.width, frame.height
            codec.bit_rate = self.target_bitrate
            codec.pix_fmt = "yuv420p"
            codec.gop_size = _settings.keyframe_interval
            codec.qmin, codec.qmax = 2, 56
            codec.options = {
                "bufsize": str(self.target_bitrate),
                "cpu-used": str(_settings.vp8_cpu_used),
                "deadline": "realtime",
                "lag-in-frames": "0",
                "minrate": str(self.target_bitrate),
                "maxrate": str(self.target_bitrate),
                "noise-sensitivity": "0",
                "overshoot-pct": "15",
                "partitions": "0",
                "static-thresh": "1",
                "undershoot-pct": "100",
            }
            codec.thread_count = vpx.number_of_threads(
                frame.width * frame.height, multiprocessing.cpu_count()
            )
            self.codec = codec
        result: tuple[list[bytes], int] = super().encode(frame, force_keyframe)
        return result


class FastH264Encoder(h264.H264Encoder):
    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Any:
        if _stale(self.codec, frame, self.target_bitrate):
            self.buffer_data = b""
            self.buffer_pts = None
            codec = av.CodecContext.create("libx264", "w")
            codec.width, codec.height = frame.width, frame.height
            codec.bit_rate = self.target_bitrate
            codec.pix_fmt = "yuv420p"
            codec.framerate = fractions.Fraction(h264.MAX_FRAME_RATE, 1)
            codec.time_base = fractions.Fraction(1, h264.MAX_FRAME_RATE)
            codec.gop_size = _settings.keyframe_interval
            codec.options = {
                "level": "31",
                "tune": "zerolatency",
                "preset": _settings.x264_preset,
            }
            codec.profile = "Baseline"
            self.codec = codec
        return super()._encode_frame(frame, force_keyframe)


def _get_encoder(codec: RTCRtpCodecParameters) -> Any:
    mime = codec.mimeType.lower()
    if mime == "video/vp8":
        return FastVp8Encoder()
    if mime == "video/h264":
        return FastH264Encoder()
    return _original_get_encoder(codec)


def install_encoders(settings: EncoderConfig | None) -> None:
    """Use LiveFX's encoder settings for every sender in this process (None: aiortc's own)."""
    import aiortc.rtcrtpsender as sender

    global _settings, _original_get_encoder
    if _original_get_encoder is None:
        _original_get_encoder = sender.get_encoder
    if settings is None:
        sender.get_encoder = _original_get_encoder
        return
    _settings = settings
    sender.get_encoder = _get_encoder
    log.info("encoders: %s", settings)


class MarkerJitterBuffer(jitterbuffer.JitterBuffer):
    """aiortc's jitter buffer, but a video frame is released as soon as it is complete.

    aiortc's releases a frame only when a packet of the *next* frame arrives: one frame interval
    (33 ms at 30 fps) of delay on every hop. RTP video senders (aiortc's included) set the marker
    bit on a frame's last packet; when the packets from the buffer's start up to a marked one are
    all present and share a timestamp, the frame is whole and goes out at once. Anything else
    (loss, reordering) falls back to aiortc's rule.
    """

    def _remove_frame(self, sequence_number: int) -> jitterbuffer.JitterFrame | None:
        if self._origin is not None:
            packets: list[Any] = []
            for count in range(self.capacity):
                packet = self._packets[(self._origin + count) % self._capacity]
                if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                    break
                packets.append(packet)
                if packet.marker:
                    self.remove(count + 1)
                    return jitterbuffer.JitterFrame(
                        data=b"".join(p._data for p in packets),
                        timestamp=packets[0].timestamp,
                    )
        return super()._remove_frame(sequence_number)


def install_jitter_buffer(low_latency: bool) -> None:
    """Video receivers in this process release frames on the marker bit (or aiortc's way)."""
    import aiortc.rtcrtpreceiver as receiver

    receiver.JitterBuffer = MarkerJitterBuffer if low_latency else jitterbuffer.JitterBuffer  # type: ignore[misc]


def use_loopback_ice(enabled: bool = True) -> None:
    """Gather ICE host candidates on 127.0.0.1 only (aioice skips loopback by default).

    For a server bound to loopback, and for tests and benchmarks: no packet leaves the machine.
    """
    import aioice.ice

    if not hasattr(aioice.ice, "_livefx_original_hosts"):
        aioice.ice._livefx_original_hosts = aioice.ice.get_host_addresses  # type: ignore[attr-defined]
    if enabled:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    else:
        aioice.ice.get_host_addresses = aioice.ice._livefx_original_hosts  # type: ignore[attr-defined]


def only_loopback_candidates(sdp: str) -> str:
    """Drop ICE candidates that are not loopback addresses from an SDP (loopback mode)."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            if len(parts) > 4:
                try:
                    if not ipaddress.ip_address(parts[4]).is_loopback:
                        continue
                except ValueError:  # an mDNS name: cannot be reached without multicast
                    continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN/TURN server (aiortc would otherwise use a public one)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))
