"""Hardware codecs (NVENC/NVDEC through PyAV): the probe, the choice, and the fallback to software.

No test here needs a GPU: where NVENC/NVDEC would open, a fake codec stands in for it, and the
real ``h264_nvenc``/``h264_cuvid`` of this machine's PyAV (compiled in, no driver) is the codec
that fails to open.
"""

from __future__ import annotations

import fractions
import json
import urllib.request
from typing import Any

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import H264Decoder, h264_depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from engine.cli import build_parser
from engine.config import EncoderConfig
from engine.errors import ConfigError
from engine.server.rtc import encoders, hwcodec
from engine.server.rtc.hwcodec import CodecChoice, CodecChoices
from tests.conftest import ServerProcess

W, H = 320, 240


@pytest.fixture(autouse=True)
def fresh() -> Any:
    hwcodec.reset()
    yield
    hwcodec.reset()


def pretend(*hardware: str) -> CodecChoices:
    """The probe's answer on a machine where these hardware codecs open."""
    choices = []
    for (codec, direction), (hw, what, sw) in hwcodec.HARDWARE.items():
        if hw in hardware:
            choices.append(CodecChoice(codec, direction, hw, True, what))
        else:
            choices.append(CodecChoice(codec, direction, sw, False, "pretend"))
    return CodecChoices("auto", tuple(choices))


def frames(n: int) -> list[av.VideoFrame]:
    out = []
    yy, xx = np.mgrid[0:H, 0:W]
    for i in range(n):
        rgb = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy) % 256], axis=-1).astype(
            np.uint8
        )
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        f.pts = i * 3000
        f.time_base = fractions.Fraction(1, 90_000)
        out.append(f)
    return out


def rtp_to_access_unit(payloads: list[bytes]) -> bytes:
    return b"".join(h264_depayload(p) for p in payloads)


def decodes(units: list[bytes]) -> int:
    """How many pictures aiortc's software H.264 decoder makes of these access units."""
    decoder = H264Decoder()
    n = 0
    for i, data in enumerate(units):
        n += len(decoder.decode(JitterFrame(data=data, timestamp=i * 3000)))
    return n


# -- the probe ----------------------------------------------------------------------------------


def test_the_probe_here_says_software_and_why() -> None:
    choices = hwcodec.probe()
    assert hwcodec.probe() is choices  # once per process
    lines = choices.lines()
    assert len(lines) == 4
    h264 = choices.get("h264", "encode")
    if h264.hardware:  # a machine with a working NVENC
        assert str(h264) == "h264 encode: h264_nvenc (NVIDIA NVENC)"
    else:
        assert h264.name == "libx264"
        assert str(h264).startswith("h264 encode: libx264 (h264_nvenc ")
        assert "not in PyAV's FFmpeg build" in h264.reason or "cannot open: " in h264.reason
    for c in choices.choices:
        assert c.reason and "\n" not in c.reason
        assert c.hardware == (c.name in hwcodec.HARDWARE_NAMES)
    assert str(choices.get("vp8", "encode")) == "vp8 encode: libvpx (NVENC has no VP8)"


def test_a_codec_missing_from_the_build_is_said_so(monkeypatch) -> None:
    monkeypatch.setattr(hwcodec.av, "codecs_available", frozenset({"libx264", "h264"}))
    assert hwcodec.open_error("h264_nvenc", "encode") == "h264_nvenc not in PyAV's FFmpeg build"


def test_off_is_software_everywhere(monkeypatch) -> None:
    monkeypatch.setattr(hwcodec, "probe", lambda: pretend("h264_nvenc", "h264_cuvid"))
    off = hwcodec.choose("off")
    assert not any(c.hardware for c in off.choices)
    assert "h264 encode: libx264 (--hw-codecs off)" in off.lines()

    def no_nvenc(*args: Any) -> Any:
        raise AssertionError("NVENC opened with --hw-codecs off")

    monkeypatch.setattr(hwcodec, "nvenc_h264", no_nvenc)
    codec = encoders.make_video_codec("video/h264", W, H, 500_000, EncoderConfig(hw_codecs="off"))
    assert codec.name == "libx264"


def test_the_setting_and_the_flag() -> None:
    assert EncoderConfig().hw_codecs == "auto"
    with pytest.raises(ConfigError, match="hw_codecs: 'on' is not one of auto, off"):
        EncoderConfig(hw_codecs="on")
    args = build_parser().parse_args(["serve", "--hw-codecs", "off"])
    assert args.hw_codecs == "off"


# -- encode -------------------------------------------------------------------------------------


class FakeContext:
    """Records what ``nvenc_h264`` sets; opens without a GPU."""

    def __init__(self, name: str, mode: str) -> None:
        self.name, self.mode = name, mode
        self.options: dict[str, str] = {}
        self.opened = False

    def open(self) -> None:
        self.opened = True


def test_nvenc_gets_real_time_settings_where_it_opens(monkeypatch) -> None:
    monkeypatch.setattr(hwcodec, "probe", lambda: pretend("h264_nvenc"))
    made: list[FakeContext] = []

    def create(name: str, mode: str) -> FakeContext:
        made.append(FakeContext(name, mode))
        return made[-1]

    monkeypatch.setattr(hwcodec.av.CodecContext, "create", create, raising=False)
    settings = EncoderConfig(keyframe_interval=60)
    codec = encoders.make_video_codec("video/h264", 1280, 720, 2_000_000, settings)
    assert codec is made[0] and codec.name == "h264_nvenc" and codec.mode == "w" and codec.opened
    assert (codec.width, codec.height, codec.bit_rate) == (1280, 720, 2_000_000)
    assert codec.gop_size == 60 and codec.max_b_frames == 0 and codec.pix_fmt == "yuv420p"
    assert codec.time_base == fractions.Fraction(1, 30)
    o = codec.options
    assert (o["preset"], o["tune"], o["zerolatency"], o["delay"]) == ("p1", "ull", "1", "0")
    assert (o["rc"], o["maxrate"], o["bf"], o["rc-lookahead"]) == ("cbr", "2000000", "0", "0")
    assert (o["profile"], o["coder"], o["forced-idr"]) == ("baseline", "cavlc", "1")
    # VP8 has no hardware encoder: libvpx whatever the probe says.
    assert encoders.make_video_codec("video/vp8", W, H, 500_000, settings).name == "libvpx"


def test_an_nvenc_that_cannot_open_gives_libx264_packets_that_decode(monkeypatch) -> None:
    """The probe says NVENC opens; at the session it does not (here: no driver at all)."""
    monkeypatch.setattr(hwcodec, "probe", lambda: pretend("h264_nvenc"))
    hwcodec.activate("auto")
    encoder = encoders.FastH264Encoder()
    units = []
    for i, f in enumerate(frames(8)):
        if i == 4:
            encoder.target_bitrate = encoder.target_bitrate * 2  # a rebuild: NVENC not retried
        payloads, _ = encoder.encode(f, force_keyframe=i == 0)
        units.append(rtp_to_access_unit(payloads))
    assert encoder.codec.name == "libx264" and encoder.hardware is False
    assert hwcodec.fallbacks == 1
    assert hwcodec.last_fallback.startswith("h264 encode: h264_nvenc: ")
    assert all(units) and decodes(units) == 8
    assert hwcodec.status()["fallbacks"] == 1  # type: ignore[index]


class FailingNvenc:
    """An NVENC that opened, then fails on its third frame (a driver reset, say)."""

    name = "h264_nvenc"

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.width, self.height, self.bit_rate = inner.width, inner.height, inner.bit_rate
        self.calls = 0

    def encode(self, frame: Any) -> Any:
        self.calls += 1
        if self.calls == 3:
            raise av.FFmpegError(5, "Input/output error")
        return self.inner.encode(frame)


def test_an_nvenc_that_fails_mid_session_goes_on_in_libx264(monkeypatch) -> None:
    monkeypatch.setattr(hwcodec, "probe", lambda: pretend("h264_nvenc"))
    built: list[FailingNvenc] = []

    def nvenc(width: int, height: int, bitrate: int, settings: EncoderConfig) -> FailingNvenc:
        x264 = encoders.make_video_codec("video/h264", width, height, bitrate, hardware=False)
        built.append(FailingNvenc(x264))
        return built[-1]

    monkeypatch.setattr(hwcodec, "nvenc_h264", nvenc)
    encoder = encoders.FastH264Encoder()
    units = []
    for i, f in enumerate(frames(8)):
        payloads, _ = encoder.encode(f, force_keyframe=i == 0)
        units.append(rtp_to_access_unit(payloads))
    assert len(built) == 1  # the session did not go back to NVENC
    assert units[2] == b"" and all(u for j, u in enumerate(units) if j != 2)
    assert encoder.codec.name == "libx264" and not encoder.hardware
    assert encoder.faults.errors == 1 and hwcodec.fallbacks == 1
    # The frame after the failure starts the new codec with a keyframe: it all decodes.
    assert decodes(units[:2]) == 2 and decodes(units[3:]) == 5


# -- decode -------------------------------------------------------------------------------------

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)


def x264_units(n: int) -> list[bytes]:
    codec = encoders.make_video_codec("video/h264", W, H, 500_000, hardware=False)
    return [bytes(p) for f in frames(n) for p in codec.encode(f)]


class FailingCuvid:
    """A CUVID decoder that decodes (in software) until its ``fail_at``-th frame."""

    def __init__(self, fail_at: int, error: Exception) -> None:
        self.inner = av.CodecContext.create("h264", "r")
        self.fail_at, self.error, self.calls = fail_at, error, 0

    def decode(self, packet: Any) -> Any:
        self.calls += 1
        if self.calls >= self.fail_at:
            raise self.error
        return self.inner.decode(packet)


def test_an_nvdec_that_cannot_open_gives_aiortcs_decoder(monkeypatch) -> None:
    monkeypatch.setattr(hwcodec, "probe", lambda: pretend("h264_cuvid"))
    monkeypatch.setattr(encoders, "_decode_mode", "auto")
    decoder = encoders._video_decoder(H264, lambda c: H264Decoder())
    assert isinstance(decoder, H264Decoder)  # h264_cuvid here: no driver
    assert hwcodec.fallbacks == 1 and "h264 decode: h264_cuvid" in hwcodec.last_fallback
    monkeypatch.setattr(encoders, "_decode_mode", None)  # bare-echo: aiortc's, no probe
    hwcodec.reset()
    assert isinstance(encoders._video_decoder(H264, lambda c: H264Decoder()), H264Decoder)
    assert hwcodec.fallbacks == 0


@pytest.mark.parametrize(
    "error", [av.FFmpegError(5, "Input/output error"), RuntimeError("CUDA_ERROR_LAUNCH_FAILED")]
)
def test_an_nvdec_that_fails_mid_stream_is_replaced_from_the_last_keyframe(
    monkeypatch, error: Exception
) -> None:
    monkeypatch.setattr(hwcodec, "probe", lambda: pretend("h264_cuvid"))
    monkeypatch.setattr(encoders, "_decode_mode", "auto")
    monkeypatch.setattr(hwcodec, "cuvid_decoder", lambda name: FailingCuvid(5, error))
    decoder = encoders._video_decoder(H264, lambda c: H264Decoder())
    assert isinstance(decoder, encoders.HardwareDecoder)
    out = [
        decoder.decode(JitterFrame(data=u, timestamp=i * 3000)) for i, u in enumerate(x264_units(8))
    ]
    assert [len(f) for f in out] == [1] * 8  # no picture lost at the switch
    assert decoder.software is not None and decoder.codec is None
    assert hwcodec.fallbacks == 1


def test_damaged_input_is_not_a_reason_to_leave_nvdec_unless_it_repeats(monkeypatch) -> None:
    monkeypatch.setattr(
        hwcodec, "cuvid_decoder", lambda n: FailingCuvid(2, av.InvalidDataError(1094995529, "x"))
    )
    decoder = encoders.HardwareDecoder("h264", "h264_cuvid", H264Decoder)
    units = x264_units(4)
    decoder.decode(JitterFrame(data=units[0], timestamp=0))
    for i in (1, 2):
        with pytest.raises(av.InvalidDataError):  # as aiortc's own decoder raises (it goes on)
            decoder.decode(JitterFrame(data=units[i], timestamp=i))
    assert decoder.software is None
    assert len(decoder.decode(JitterFrame(data=units[3], timestamp=3))) == 1  # third: software
    assert decoder.software is not None and hwcodec.fallbacks == 1


def test_keyframes_are_found_in_depayloaded_frames() -> None:
    units = x264_units(3)
    assert [encoders._h264_keyframe(u) for u in units] == [True, False, False]
    vp8 = encoders.make_video_codec("video/vp8", W, H, 500_000)
    packets = [bytes(p) for f in frames(3) for p in vp8.encode(f)]
    assert [encoders._vp8_keyframe(p) for p in packets] == [True, False, False]


# -- the server ---------------------------------------------------------------------------------


def test_the_server_logs_the_choice_and_shows_it_in_stats_and_health() -> None:
    s = ServerProcess("--hw-codecs", "off")
    try:
        with urllib.request.urlopen(s.url + "/stats", timeout=10) as r:
            stats = json.loads(r.read())
        with urllib.request.urlopen(s.url + "/health", timeout=10) as r:
            health = json.loads(r.read())
    finally:
        log = s.stop()
    assert "livefx: codec h264 encode: libx264 (--hw-codecs off)\n" in log
    codecs = stats["codecs"]
    assert codecs["hw_codecs"] == "off" and codecs["fallbacks"] == 0
    assert codecs["h264_encode"] == {
        "codec": "libx264",
        "hardware": False,
        "reason": "--hw-codecs off",
    }
    assert health["codecs"]["h264_decode"] == "h264"
