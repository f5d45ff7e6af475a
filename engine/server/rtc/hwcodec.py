"""Hardware video codecs: NVENC encode and NVDEC (CUVID) decode through PyAV's FFmpeg.

A codec compiled into FFmpeg may still not open here (no NVIDIA driver, a GPU without NVENC as
the H100/H200, a full session table), so ``probe`` opens a small context of each once per
process and keeps what opened; ``choose("auto"|"off")`` gives each direction its codec and a
one-line reason ("h264 encode: libx264 (h264_nvenc present but cannot open: …)"). The server's
encoders and decoders (``encoders.py``) ask ``choose`` and fall back to the software codec for
that session when a hardware one fails later (``note_fallback``: one log line, counted).

Covered: H.264 encode (``h264_nvenc``), H.264 and VP8 decode (``h264_cuvid``, ``vp8_cuvid``).
VP8 encode is always libvpx (NVENC has no VP8); VP9 is not probed (aiortc negotiates only VP8
and H.264 video).
"""

from __future__ import annotations

import fractions
import logging
import threading
from dataclasses import dataclass
from typing import Any

import av
import av.logging

from engine.config import EncoderConfig

log = logging.getLogger(__name__)

# (codec, direction) → (hardware FFmpeg codec, what it is, the software one).
HARDWARE: dict[tuple[str, str], tuple[str, str, str]] = {
    ("h264", "encode"): ("h264_nvenc", "NVIDIA NVENC", "libx264"),
    ("h264", "decode"): ("h264_cuvid", "NVIDIA NVDEC", "h264"),
    ("vp8", "decode"): ("vp8_cuvid", "NVIDIA NVDEC", "libvpx"),
}
SOFTWARE_ONLY: dict[tuple[str, str], tuple[str, str]] = {
    ("vp8", "encode"): ("libvpx", "NVENC has no VP8"),
}
HARDWARE_NAMES = frozenset(hw for hw, _, _ in HARDWARE.values())
FRAME_RATE = 30  # aiortc's H.264 time base (h264.MAX_FRAME_RATE)


@dataclass(frozen=True)
class CodecChoice:
    """One direction of one codec: the FFmpeg codec used and why."""

    codec: str  # "h264", "vp8"
    direction: str  # "encode", "decode"
    name: str  # the FFmpeg codec: "h264_nvenc", "libx264", …
    hardware: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.codec} {self.direction}: {self.name} ({self.reason})"


@dataclass(frozen=True)
class CodecChoices:
    mode: str  # "auto" or "off"
    choices: tuple[CodecChoice, ...]

    def get(self, codec: str, direction: str) -> CodecChoice:
        for c in self.choices:
            if (c.codec, c.direction) == (codec, direction):
                return c
        raise KeyError(f"no codec choice for {codec} {direction}")

    def lines(self) -> list[str]:
        return [str(c) for c in self.choices]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hw_codecs": self.mode}
        for c in self.choices:
            out[f"{c.codec}_{c.direction}"] = {
                "codec": c.name,
                "hardware": c.hardware,
                "reason": c.reason,
            }
        return out


def nvenc_h264(width: int, height: int, bitrate: int, settings: EncoderConfig) -> Any:
    """An opened ``h264_nvenc`` context for real-time WebRTC: the fastest preset tuned for
    ultra-low latency, no B-frames, no lookahead, no output delay, CBR at ``bitrate``, a
    keyframe every ``keyframe_interval`` frames (an IDR when a frame is forced to I, with its
    SPS/PPS), baseline profile with CAVLC so every browser decodes it. Raises when it cannot
    open (FFmpeg's error, with its log line)."""
    codec = av.CodecContext.create("h264_nvenc", "w")
    codec.width, codec.height = width, height
    codec.bit_rate = bitrate
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(FRAME_RATE, 1)
    codec.time_base = fractions.Fraction(1, FRAME_RATE)
    codec.gop_size = settings.keyframe_interval
    codec.max_b_frames = 0
    codec.options = nvenc_options(bitrate)
    codec.open()
    return codec


def nvenc_options(bitrate: int) -> dict[str, str]:
    return {
        "preset": "p1",
        "tune": "ull",
        "zerolatency": "1",
        "delay": "0",
        "rc": "cbr",
        "maxrate": str(bitrate),
        "bufsize": str(bitrate),
        "rc-lookahead": "0",
        "bf": "0",
        "no-scenecut": "1",
        "forced-idr": "1",
        "profile": "baseline",
        "coder": "cavlc",
    }


def cuvid_decoder(name: str) -> Any:
    """An opened CUVID decoder that returns each frame as soon as it is decoded (low delay:
    no display queue) in system memory (NV12; ``engine.media`` converts it)."""
    codec = av.CodecContext.create(name, "r")
    codec.flags |= av.codec.context.Flags.low_delay
    codec.open()
    return codec


def why(exc: BaseException) -> str:
    """FFmpeg's error in one line, with the codec's own log message when there is one."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    logged = getattr(exc, "log", None)
    if isinstance(logged, tuple) and len(logged) == 3 and str(logged[2]).strip():
        text = f"{str(logged[2]).strip().rstrip('.')} ({text})"
    return " ".join(str(text).split())


def open_error(name: str, direction: str) -> str | None:
    """None when FFmpeg's ``name`` is in PyAV's build and opens on this machine; else why not."""
    if name not in av.codecs_available:
        return f"{name} not in PyAV's FFmpeg build"
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # errors carry the codec's own message
    try:
        with av.logging.Capture():  # … which is not printed
            if direction == "encode":
                nvenc_h264(320, 240, 500_000, EncoderConfig())
            else:
                cuvid_decoder(name)
    except Exception as exc:  # (whatever FFmpeg or the driver says: that codec is not used)
        return f"{name} present but cannot open: {why(exc)}"
    finally:
        av.logging.set_level(level)
    return None


def _probe() -> CodecChoices:
    choices = []
    for (codec, direction), (hw, what, sw) in HARDWARE.items():
        error = open_error(hw, direction)
        if error is None:
            choices.append(CodecChoice(codec, direction, hw, True, what))
        else:
            choices.append(CodecChoice(codec, direction, sw, False, error))
    for (codec, direction), (sw, reason) in SOFTWARE_ONLY.items():
        choices.append(CodecChoice(codec, direction, sw, False, reason))
    return CodecChoices("auto", tuple(sorted(choices, key=lambda c: (c.codec, c.direction))))


def _software(reason: str) -> CodecChoices:
    choices = [CodecChoice(c, d, sw, False, reason) for (c, d), (_, _, sw) in HARDWARE.items()]
    choices += [CodecChoice(c, d, sw, False, r) for (c, d), (sw, r) in SOFTWARE_ONLY.items()]
    return CodecChoices("off", tuple(sorted(choices, key=lambda c: (c.codec, c.direction))))


_lock = threading.Lock()
_probed: CodecChoices | None = None
_active: CodecChoices | None = None  # the server's choice (``activate``), for /stats
fallbacks = 0
last_fallback = ""


def probe() -> CodecChoices:
    """What this machine's PyAV can use, opened once per process (the first call takes the
    driver's start-up time where there is a GPU; milliseconds where there is none)."""
    global _probed
    with _lock:
        if _probed is None:
            _probed = _probe()
        return _probed


def choose(mode: str) -> CodecChoices:
    """``auto``: the probe's choice; ``off``: software everywhere."""
    if mode == "off":
        return _software("--hw-codecs off")
    if mode == "auto":
        return probe()
    raise ValueError(f"hw_codecs: {mode!r} is not one of auto, off")


def activate(mode: str | None) -> CodecChoices | None:
    """The server's choice (None: aiortc's own codecs), logged one line per direction."""
    global _active
    _active = None if mode is None else choose(mode)
    for line in _active.lines() if _active else ():
        log.info("codec %s", line)
    return _active


def note_fallback(what: str, exc: BaseException | str) -> None:
    """A hardware codec failed in a session: that session uses the software one from now on."""
    global fallbacks, last_fallback
    reason = exc if isinstance(exc, str) else why(exc)
    with _lock:
        fallbacks += 1
        last_fallback = f"{what}: {reason}"
    log.warning("%s failed (%s); software for this session", what, reason)


def status() -> dict[str, Any] | None:
    """The active choice, its reasons and the hardware codecs' failures so far (for /stats)."""
    if _active is None:
        return None
    return {**_active.as_dict(), "fallbacks": fallbacks, "last_fallback": last_fallback or None}


def summary() -> dict[str, str] | None:
    """Each direction's codec, no reasons (for /health)."""
    if _active is None:
        return None
    return {f"{c.codec}_{c.direction}": c.name for c in _active.choices}


def reset() -> None:
    """Forget the probe and the counters (tests)."""
    global _probed, _active, fallbacks, last_fallback
    with _lock:
        _probed = _active = None
        fallbacks, last_fallback = 0, ""
