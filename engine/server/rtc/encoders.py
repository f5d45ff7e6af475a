"""Encoders: LiveFX's speed settings for aiortc's senders and for the shared WHEP encoders.

aiortc picks its encoders through ``get_encoder`` (imported by ``aiortc.rtcrtpsender``) and
hard-codes slow settings: libx264 with no preset, libvpx at cpu-used −6 with its denoiser on, a
keyframe every 3000 frames. ``install_encoders`` replaces that function with one that returns
encoders which create their codec with LiveFX's ``EncoderConfig`` first; aiortc's own ``encode``
then finds the codec ready and keeps it (it rebuilds only when the frame size or the target
bitrate changes, and ours is rebuilt the same way).

Hardware codecs (``hwcodec``): with ``hw_codecs="auto"`` H.264 is encoded by NVENC and H.264/VP8
decoded by NVDEC where they open on this machine; a session whose hardware codec fails (at open,
encode or decode) goes on with the software one.
"""

from __future__ import annotations

import fractions
import logging
import multiprocessing
import statistics
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import av
from aiortc.codecs import h264, vpx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from engine import faults
from engine.config import EncoderConfig
from engine.server.rtc import hwcodec

log = logging.getLogger(__name__)

_settings = EncoderConfig()
_original_get_encoder: Any = None
VIDEO_CLOCK = fractions.Fraction(1, 90_000)


def make_video_codec(
    mime: str,
    width: int,
    height: int,
    bitrate: int,
    settings: EncoderConfig | None = None,
    *,
    hardware: bool = True,
) -> Any:
    """A libvpx (VP8) or H.264 encoder for real-time WebRTC: NVENC where ``settings.hw_codecs``
    chose it (``hwcodec``) and ``hardware`` (False once the caller's hardware codec failed),
    else libx264 (constrained baseline). An NVENC that cannot open (a full session table, a
    driver error) gives libx264 with the reason logged; ``codec.name`` says which it is."""
    s = settings or _settings
    mime = mime.lower()
    if mime == "video/h264" and hardware:
        choice = hwcodec.choose(s.hw_codecs).get("h264", "encode")
        if choice.hardware:
            try:
                return hwcodec.nvenc_h264(width, height, bitrate, s)
            except Exception as exc:  # (any open error: this encoder uses libx264)
                hwcodec.note_fallback(f"h264 encode: {choice.name}", exc)
    if mime == "video/vp8":
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.bit_rate = bitrate
        codec.pix_fmt = "yuv420p"
        codec.gop_size = s.keyframe_interval
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": str(bitrate),
            "cpu-used": str(s.vp8_cpu_used),
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "noise-sensitivity": "0",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        codec.thread_count = vpx.number_of_threads(width * height, multiprocessing.cpu_count())
        return codec
    if mime == "video/h264":
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.bit_rate = bitrate
        codec.pix_fmt = "yuv420p"
        codec.framerate = fractions.Fraction(h264.MAX_FRAME_RATE, 1)
        codec.time_base = fractions.Fraction(1, h264.MAX_FRAME_RATE)
        codec.gop_size = s.keyframe_interval
        codec.options = {"level": "31", "tune": "zerolatency", "preset": s.x264_preset}
        codec.profile = "Baseline"
        return codec
    raise ValueError(f"no LiveFX encoder for {mime}")


class EncodeTimes:
    """Recent video encode durations (for the audio delay that keeps A/V in sync)."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=60)

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)

    def median_s(self) -> float:
        return statistics.median(self._recent) if self._recent else 0.0


encode_times = EncodeTimes()
encode_observers: list[Callable[[float], None]] = []  # e.g. the server's metrics histogram


def report_encode(seconds: float) -> None:
    for observe in encode_observers:
        observe(seconds)


def _encoded(seconds: float) -> None:
    encode_times.add(seconds)
    report_encode(seconds)


class _TimedDecoder:
    """aiortc's decoder, its ``decode`` timed. A wrapper and not a patched bound method: a
    method stored on its own instance is a reference cycle, and the codec (libvpx keeps a
    thread per context) would then outlive the session until the cyclic collector ran."""

    def __init__(self, inner: Any, observers: list[Callable[[float, float, list[Any]], None]]):
        self._inner = inner
        self._observers = observers

    def decode(self, encoded: Any) -> Any:
        start = time.perf_counter()
        result = self._inner.decode(encoded)
        end = time.perf_counter()
        for o in self._observers:
            o(start, end, result)
        return result


def _h264_keyframe(data: bytes) -> bool:
    """aiortc's depayloaded H.264 (Annex B) holds an IDR slice or an SPS."""
    return any(nal and nal[0] & 0x1F in (5, 7) for nal in data.split(b"\x00\x00\x01")[1:])


def _vp8_keyframe(data: bytes) -> bool:
    return bool(data) and data[0] & 1 == 0  # the frame tag's P bit: 0 is a keyframe


class HardwareDecoder:
    """An NVDEC (CUVID) decoder for one received track, and aiortc's software decoder from its
    first failure on: fed again the frames since the last keyframe (at most ``HISTORY``), so the
    picture goes on at once instead of at the sender's next keyframe. Damaged input raises as
    the software decoder's does (aiortc logs it and goes on); three such frames in a row, or any
    other error, and the session decodes in software."""

    HISTORY = 300  # 10 s at 30 fps, a few MB at most

    def __init__(self, codec: str, name: str, software: Callable[[], Any]) -> None:
        self.what = f"{codec} decode: {name}"
        self.codec: Any = hwcodec.cuvid_decoder(name)
        self.software: Any = None
        self._make_software = software
        self._keyframe = _h264_keyframe if codec == "h264" else _vp8_keyframe
        self._history: list[Any] | None = None  # since the last keyframe (None: too many)
        self._invalid = 0

    def decode(self, encoded: Any) -> Any:
        if self.software is not None:
            return self.software.decode(encoded)
        self._remember(encoded)
        packet = av.Packet(encoded.data)
        packet.pts = encoded.timestamp
        packet.time_base = VIDEO_CLOCK
        try:
            frames = self.codec.decode(packet)
        except av.InvalidDataError as exc:
            self._invalid += 1
            if self._invalid < 3:
                raise
            return self._fall_back(exc)
        except Exception as exc:  # (a driver or codec fault: software from now on)
            return self._fall_back(exc)
        self._invalid = 0
        return frames

    def _remember(self, encoded: Any) -> None:
        if self._keyframe(encoded.data):
            self._history = [encoded]
        elif self._history is not None:
            self._history.append(encoded)
            if len(self._history) > self.HISTORY:
                self._history = None  # the software decoder will wait for the next keyframe

    def _fall_back(self, exc: BaseException) -> Any:
        hwcodec.note_fallback(self.what, exc)
        self.codec = None  # the GPU's decoder is released
        self.software = self._make_software()
        frames: Any = []
        for encoded in self._history or []:
            try:
                frames = self.software.decode(encoded)
            except av.FFmpegError:
                frames = []
        self._history = None
        return frames


_decode_mode: str | None = None  # hw_codecs of install_encoders' settings (None: aiortc's)


def _video_decoder(codec: Any, make: Callable[[Any], Any]) -> Any:
    """NVDEC where chosen and it opens, else aiortc's decoder."""
    kind = codec.mimeType.lower().split("/")[-1]
    if _decode_mode is not None and kind in ("h264", "vp8"):
        choice = hwcodec.choose(_decode_mode).get(kind, "decode")
        if choice.hardware:
            try:
                return HardwareDecoder(kind, choice.name, lambda: make(codec))
            except Exception as exc:  # (could not open: this track decodes in software)
                hwcodec.note_fallback(f"{kind} decode: {choice.name}", exc)
    return make(codec)


def _install_decoders() -> Any:
    """Wrap aiortc's decoder factory once per process: NVDEC where ``install_encoders`` chose
    it, each video decoder timed when ``install_decode_timing`` asked."""
    import aiortc.rtcrtpreceiver as receiver

    if getattr(receiver.get_decoder, "_livefx", False):
        return receiver.get_decoder
    make = receiver.get_decoder
    observers: list[Callable[[float, float, list[Any]], None]] = []

    def get_decoder(codec: Any) -> Any:
        if not codec.mimeType.lower().startswith("video/"):
            return make(codec)
        inner = _video_decoder(codec, make)
        return _TimedDecoder(inner, observers) if observers else inner

    get_decoder._livefx = True  # type: ignore[attr-defined]
    get_decoder._livefx_observers = observers  # type: ignore[attr-defined]
    receiver.get_decoder = get_decoder
    return get_decoder


def install_decode_timing(observe: Callable[[float, float, list[Any]], None]) -> None:
    """Call ``observe(start, end, frames)`` (perf_counter seconds, the decoded frames) for every
    video decode of aiortc's receivers in this process, on its decoder thread (wraps aiortc's
    decoder factory once; later calls add observers)."""
    _install_decoders()._livefx_observers.append(observe)


def _stale(codec: Any, frame: av.VideoFrame, bitrate: int) -> bool:
    return bool(
        codec is None
        or frame.width != codec.width
        or frame.height != codec.height
        or abs(bitrate - codec.bit_rate) / codec.bit_rate > 0.1
    )


encode_error_observers: list[Callable[[str], None]] = []  # e.g. the server's error counter


class Faults:
    """An encoder's faults. aiortc's sender stops for good on an encoder's exception (the track
    is stopped, the session streams nothing more); LiveFX's encoders instead drop that frame,
    rebuild the codec and force a keyframe on the next one. ``in_a_row`` lets the session end
    itself when an encoder keeps failing."""

    def __init__(self) -> None:
        self.errors = 0
        self.in_a_row = 0
        self.last = ""

    def guard(
        self, encoder: Any, mime: str, encode: Callable[[], tuple[list[bytes], int]], frame: Any
    ) -> tuple[list[bytes], int]:
        try:
            faults.hit("encode", mime.split("/")[-1])
            result = encode()
        except Exception as exc:  # (any codec fault: the next frame starts over)
            self.errors += 1
            self.in_a_row += 1
            self.last = f"{mime.split('/')[-1]} encoder: {type(exc).__name__}: {exc}"
            if self.in_a_row == 1:
                log.warning("%s; the codec is rebuilt", self.last)
            name = getattr(getattr(encoder, "codec", None), "name", "")
            if name in hwcodec.HARDWARE_NAMES:  # that session's encoder goes on in software
                encoder.hardware = False
                hwcodec.note_fallback(f"{mime.split('/')[-1]} encode: {name}", exc)
            for observe in encode_error_observers:
                observe(self.last)
            encoder.codec = None  # rebuilt (with a keyframe) on the next frame
            if hasattr(encoder, "buffer_data"):
                encoder.buffer_data, encoder.buffer_pts = b"", None
            timestamp = 0
            if getattr(frame, "pts", None) is not None and frame.time_base:
                timestamp = int(frame.pts * frame.time_base * 90_000)
            return [], timestamp
        self.in_a_row = 0
        return result


class FastVp8Encoder(vpx.Vp8Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.faults = Faults()

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        return self.faults.guard(
            self, "video/vp8", lambda: self._encode(frame, force_keyframe), frame
        )

    def _encode(self, frame: Any, force_keyframe: bool) -> tuple[list[bytes], int]:
        if _stale(self.codec, frame, self.target_bitrate):
            self.codec = make_video_codec(
                "video/vp8", frame.width, frame.height, self.target_bitrate
            )
        start = time.perf_counter()
        result: tuple[list[bytes], int] = super().encode(frame, force_keyframe)
        _encoded(time.perf_counter() - start)
        return result


class FastH264Encoder(h264.H264Encoder):
    def __init__(self) -> None:
        super().__init__()
        self.faults = Faults()
        self.hardware: bool = True  # NVENC where chosen, until it fails in this session

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Any:
        if _stale(self.codec, frame, self.target_bitrate):
            self.buffer_data = b""
            self.buffer_pts = None
            codec = make_video_codec(
                "video/h264", frame.width, frame.height, self.target_bitrate, hardware=self.hardware
            )
            self.hardware = codec.name in hwcodec.HARDWARE_NAMES  # stays off once off
            self.codec = codec
        return super()._encode_frame(frame, force_keyframe)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        return self.faults.guard(
            self, "video/h264", lambda: self._encode(frame, force_keyframe), frame
        )

    def _encode(self, frame: Any, force_keyframe: bool) -> tuple[list[bytes], int]:
        start = time.perf_counter()
        result: tuple[list[bytes], int] = super().encode(frame, force_keyframe)
        _encoded(time.perf_counter() - start)
        return result


def livefx_encoder(codec: RTCRtpCodecParameters) -> Any:
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
    global _decode_mode
    _install_decoders()
    _decode_mode = None if settings is None else settings.hw_codecs
    if settings is None:
        sender.get_encoder = _original_get_encoder
        hwcodec.activate(None)
        return
    _settings = settings
    sender.get_encoder = livefx_encoder
    log.info("encoders: %s", settings)
    hwcodec.activate(settings.hw_codecs)
