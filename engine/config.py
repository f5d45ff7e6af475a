"""Typed, validated settings: one definition of each setting and its default.

Every config is a frozen dataclass checked in ``__post_init__``; a bad value raises ``ConfigError``
(a ``ValueError``) naming the field and what is accepted. The CLI builds these types, and so will
the server's query strings and WebSocket messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import ConfigError
from engine.models.registry import PERSON_MODEL_CHOICES, SEGMENTER_CHOICES

GUIDES = ("grey", "colour")

EFFECTS = ("none", "mask", "blur", "replace", "colour", "gan")
GENERATOR_NAMES = ("cartoon", "enhance")
REGIONS = ("frame", "person")
INFERENCE_BACKENDS = ("onnxruntime",)
NAMED_COLOURS = {
    "green": (0, 177, 64),  # broadcast chroma-key green
    "blue": (0, 71, 187),  # chroma-key blue
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "grey": (128, 128, 128),
}


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def _check_range(name: str, value: float, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{name}: {value!r} is outside [{lo}, {hi}]")


@dataclass(frozen=True)
class ModelConfig:
    """Which segmentation model runs, and how ``auto`` decides."""

    segmenter: str = "auto"  # auto | general | landscape
    landscape_min_aspect: float = 1.5  # width/height at or above which auto picks landscape
    # off | lite | full: the body prior (engine/person). Off by default until its cost fits: +4.4 ms
    # per 720p frame here, and on two cores its thread costs a live session's encoder and A/V sync.
    person_model: str = "off"

    def __post_init__(self) -> None:
        _check_choice("segmenter", self.segmenter, SEGMENTER_CHOICES)
        _check_choice("person_model", self.person_model, PERSON_MODEL_CHOICES)
        _check_range("landscape_min_aspect", self.landscape_min_aspect, 0.1, 10.0)


@dataclass(frozen=True)
class InferenceConfig:
    backend: str = "onnxruntime"
    threads: int = 1  # ONNX Runtime intra-op threads; 0 = one per core

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, INFERENCE_BACKENDS)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int):
            raise ConfigError(f"threads: {self.threads!r} is not an integer")
        _check_range("threads", self.threads, 0, 256)


def parse_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb', 'rrggbb' or a name in NAMED_COLOURS → (r, g, b)."""
    t = str(text).strip().lower()
    if t in NAMED_COLOURS:
        return NAMED_COLOURS[t]
    h = t[1:] if t.startswith("#") else t
    if len(h) != 6 or any(c not in "0123456789abcdef" for c in h):
        raise ConfigError(f"colour: {text!r} is not #rrggbb or one of {', '.join(NAMED_COLOURS)}")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


@dataclass(frozen=True)
class EffectConfig:
    """The effect and its parameters (each used by the effect of the same name)."""

    name: str = "blur"
    strength: float = 0.6  # blur: 0 = none … 1 = strongest
    background: str | None = None  # replace: image or video file; None = the shipped default
    colour: str = "green"  # colour: #rrggbb or a name; default broadcast chroma green
    model: str = "cartoon"  # gan: cartoon | enhance | a path to an image-to-image .onnx
    region: str = "frame"  # gan: the whole frame, or the person only
    # gan: the generator runs with the frame's short side at most this many pixels, its result
    # brought back to full size along the frame's edges (guided upsampling); 0 = full size.
    gan_size: int = 360

    def __post_init__(self) -> None:
        _check_choice("effect", self.name, EFFECTS)
        _check_range("strength", self.strength, 0.0, 1.0)
        if not isinstance(self.model, str) or not (
            self.model in GENERATOR_NAMES or self.model.lower().endswith(".onnx")
        ):
            raise ConfigError(
                f"model: {self.model!r} is not one of {', '.join(GENERATOR_NAMES)} or a .onnx file"
            )
        _check_choice("region", self.region, REGIONS)
        if (
            not isinstance(self.gan_size, int)
            or isinstance(self.gan_size, bool)
            or not (self.gan_size == 0 or 64 <= self.gan_size <= 4320)
        ):
            raise ConfigError(
                f"gan_size: {self.gan_size!r} is not 0 (full size) or a short side of 64 … 4320"
            )
        if self.background is not None and not isinstance(self.background, str):
            raise ConfigError(f"background: {self.background!r} is not a file path")
        if self.background == "":
            raise ConfigError("background: empty path")
        parse_colour(self.colour)

    @property
    def rgb(self) -> tuple[int, int, int]:
        return parse_colour(self.colour)


@dataclass(frozen=True)
class MatteConfig:
    """How the model's low-resolution mask becomes the matte."""

    threshold: float = 0.5  # mask value at the middle of the edge ramp
    feather: float = 0.5  # width of the edge ramp in mask units; 0 = hard edge, 1 = as is
    smoothing: float = 0.7  # temporal smoothing of small changes; 0 = off
    guided: bool = True  # guided filter: the matte's edges follow the picture's
    radius: int = 1  # guided filter radius, in mask pixels
    eps: float = 1e-4  # guided filter regularisation (guide in [0, 1])
    guide: str = "grey"  # grey | colour: the guided filter's guide (the frame's luma or RGB)

    def __post_init__(self) -> None:
        _check_choice("guide", self.guide, GUIDES)
        _check_range("threshold", self.threshold, 0.0, 1.0)
        _check_range("feather", self.feather, 0.0, 1.0)
        _check_range("smoothing", self.smoothing, 0.0, 1.0)
        if not isinstance(self.guided, bool):
            raise ConfigError(f"guided: {self.guided!r} is not true or false")
        if isinstance(self.radius, bool) or not isinstance(self.radius, int):
            raise ConfigError(f"radius: {self.radius!r} is not an integer")
        _check_range("radius", self.radius, 1, 16)
        _check_range("eps", self.eps, 1e-6, 1.0)


@dataclass(frozen=True)
class BudgetConfig:
    """The per-frame latency budget the BudgetController holds (None: always full quality)."""

    budget_ms: float | None = None
    window: int = 15  # frames looked at for each decision
    headroom: float = 0.6  # step back up when p90 stays under headroom × budget …
    recover_frames: int = 60  # … for this many frames

    def __post_init__(self) -> None:
        if self.budget_ms is not None:
            _check_range("budget_ms", self.budget_ms, 0.1, 10_000.0)
        _check_range("window", self.window, 1, 10_000)
        _check_range("headroom", self.headroom, 0.05, 0.95)
        _check_range("recover_frames", self.recover_frames, 1, 100_000)


@dataclass(frozen=True)
class PipelineConfig:
    effect: EffectConfig = field(default_factory=EffectConfig)
    matte: MatteConfig = field(default_factory=MatteConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    stats_window: int = 100_000  # per-stage timings kept for the summary
    backend: str = "auto"  # auto | cpu | cuda (engine.pipeline.backend)
    # How the models run on the cuda backend: LiveFX's kernels, TensorRT, or ONNX Runtime on
    # the CPU (engine.pipeline.backend.MODEL_RUNTIMES).
    model_runtime: str = "kernels"

    def __post_init__(self) -> None:
        _check_choice("backend", self.backend, ("auto", "cpu", "cuda"))
        _check_choice("model_runtime", self.model_runtime, ("kernels", "tensorrt", "onnxruntime"))
        for name, kind in (
            ("effect", EffectConfig),
            ("matte", MatteConfig),
            ("model", ModelConfig),
            ("inference", InferenceConfig),
            ("budget", BudgetConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"{name}: expected {kind.__name__}")
        _check_range("stats_window", self.stats_window, 1, 10_000_000)


def describe(config: Any) -> dict[str, Any]:
    """A plain dict of a config (nested configs included), for logs and JSON."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = describe(value) if hasattr(value, "__dataclass_fields__") else value
    return out


@dataclass(frozen=True)
class EncoderConfig:
    """Video encoder speed for the WebRTC sender (aiortc's own defaults are slow: libx264 with
    no preset, libvpx at cpu-used −6, a keyframe every 3000 frames)."""

    # Measured (benchmarks/e2e.py, 640×480): libvpx at −6 (adaptive) with its denoiser off is
    # faster than aiortc's −6 with it on and as good; 16, its fastest, loses 7 dB PSNR. x264's
    # superfast is 5× faster than its default and within 0.1 dB; ultrafast loses 2.5 dB.
    vp8_cpu_used: int = -6  # libvpx speed, −16 … 16 (negative: adaptive to the deadline)
    x264_preset: str = "superfast"
    keyframe_interval: int = 90  # frames between keyframes (3 s at 30 fps)
    hw_codecs: str = "auto"  # NVENC/NVDEC where they open (engine/server/rtc/hwcodec.py), or off

    def __post_init__(self) -> None:
        if isinstance(self.vp8_cpu_used, bool) or not isinstance(self.vp8_cpu_used, int):
            raise ConfigError(f"vp8_cpu_used: {self.vp8_cpu_used!r} is not an integer")
        _check_range("vp8_cpu_used", self.vp8_cpu_used, -16, 16)
        _check_choice("x264_preset", self.x264_preset, X264_PRESETS)
        if isinstance(self.keyframe_interval, bool) or not isinstance(self.keyframe_interval, int):
            raise ConfigError(f"keyframe_interval: {self.keyframe_interval!r} is not an integer")
        _check_range("keyframe_interval", self.keyframe_interval, 1, 10_000)
        _check_choice("hw_codecs", self.hw_codecs, HW_CODECS)


X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)  # fmt: skip
HW_CODECS = ("auto", "off")
SERVER_MODES = ("livefx", "bare-echo")
ICE_SCHEMES = ("stun", "stuns", "turn", "turns")


def is_loopback_host(host: str) -> bool:
    """A bind address that only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server (``--ice-server URL[,username,credential]``)."""

    url: str
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        scheme = self.url.split(":", 1)[0].lower() if ":" in self.url else ""
        if scheme not in ICE_SCHEMES or len(self.url) <= len(scheme) + 1:
            raise ConfigError(
                f"ice_server: {self.url!r} is not a {'/'.join(ICE_SCHEMES)}: URL "
                "(e.g. stun:stun.example.net:3478)"
            )
        if any(c in self.url for c in '<>" \t\r\n'):
            raise ConfigError(f"ice_server: {self.url!r} contains spaces, quotes or brackets")
        if scheme.startswith("turn") and (not self.username or not self.credential):
            raise ConfigError(
                f"ice_server: {self.url!r} is a TURN server: give url,username,credential"
            )
        for name in ("username", "credential"):
            value = getattr(self, name)
            if value is not None and any(c in value for c in '"\\\r\n'):
                raise ConfigError(
                    f"ice_server: the {name} contains quotes, backslashes or newlines"
                )

    @classmethod
    def parse(cls, text: str) -> IceServer:
        """'URL' or 'URL,username,credential'."""
        parts = text.split(",")
        if len(parts) == 1:
            return cls(parts[0].strip())
        if len(parts) == 3:
            return cls(parts[0].strip(), parts[1], parts[2])
        raise ConfigError(f"ice_server: {text!r} is not URL or URL,username,credential")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_sessions: int = 32  # sessions that run a pipeline (browser, /offer, WHIP publishers)
    max_players: int = 64  # WHEP players (no pipeline of their own)
    idle_timeout_s: float = 10.0  # a session with no incoming frame for this long is ended
    stats_interval_s: float = 1.0
    max_message_bytes: int = 64 * 1024  # one WebSocket message
    max_upload_bytes: int = 8 * 1024 * 1024  # one background image
    max_sdp_bytes: int = 64 * 1024  # one SDP offer or trickle fragment
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    mode: str = "livefx"  # bare-echo: aiortc's plain relay, no pipeline (a baseline)
    token: str | None = None  # Bearer token for every request that touches a session
    no_auth: bool = False  # allow a non-loopback bind without a token
    cert: str | None = None  # HTTPS certificate (PEM) …
    key: str | None = None  # … and its private key
    ice_servers: tuple[IceServer, ...] = ()
    allow_origins: tuple[str, ...] = ()  # CORS: origins allowed to call the API ("*": any)
    whep_bitrate: int = 1_500_000  # bits/s of the shared WHEP encoders (lowered by players' REMB)
    connect_timeout_s: float = 10.0  # a session whose peer has not connected by then is ended
    max_pending: int = 8  # sessions still connecting, all clients together
    max_pending_per_client: int = 2  # … from one client address
    offer_rate: float = 1.0  # offers per second per client address (token bucket) …
    offer_burst: int = 5  # … and how many may come at once
    workers: int = 0  # frame workers serving every session's pipeline (0: one per core)
    admit_load: float = 0.9  # refuse a session when the load with it would pass this (0: off)
    batch_wait_ms: float = 2.0  # the shared inference worker waits this long for a batch …
    shared_models: bool = True  # … (False: each session runs its own models)

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host: {self.host!r} is not a host name or address")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise ConfigError(f"port: {self.port!r} is not an integer")
        _check_range("port", self.port, 0, 65535)
        _check_range("max_sessions", self.max_sessions, 1, 1000)
        _check_range("max_players", self.max_players, 0, 10_000)
        _check_range("idle_timeout_s", self.idle_timeout_s, 0.5, 3600.0)
        _check_range("stats_interval_s", self.stats_interval_s, 0.1, 60.0)
        _check_range("max_message_bytes", self.max_message_bytes, 1024, 16 * 1024 * 1024)
        _check_range("max_upload_bytes", self.max_upload_bytes, 1024, 256 * 1024 * 1024)
        _check_range("max_sdp_bytes", self.max_sdp_bytes, 1024, 1024 * 1024)
        _check_range("whep_bitrate", self.whep_bitrate, 100_000, 50_000_000)
        _check_range("connect_timeout_s", self.connect_timeout_s, 0.5, 600.0)
        _check_range("max_pending", self.max_pending, 1, 10_000)
        _check_range("max_pending_per_client", self.max_pending_per_client, 1, 1000)
        _check_range("offer_rate", self.offer_rate, 0.01, 10_000.0)
        _check_range("offer_burst", self.offer_burst, 1, 10_000)
        _check_range("workers", self.workers, 0, 1024)
        _check_range("admit_load", self.admit_load, 0.0, 100.0)
        _check_range("batch_wait_ms", self.batch_wait_ms, 0.0, 2.0)
        _check_choice("mode", self.mode, SERVER_MODES)
        if self.token is not None:
            if not isinstance(self.token, str) or len(self.token) < 8:
                raise ConfigError("token: use at least 8 characters (or --token auto)")
            if any(ord(c) < 0x21 or ord(c) > 0x7E for c in self.token):
                raise ConfigError("token: printable ASCII only, no spaces")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("cert/key: give both --cert and --key for HTTPS, or neither")
        for origin in self.allow_origins:
            if origin != "*" and not (
                origin.startswith(("http://", "https://")) and "/" not in origin.split("//", 1)[1]
            ):
                raise ConfigError(
                    f"allow_origin: {origin!r} is not '*' or an origin like https://example.com"
                )
        if not is_loopback_host(self.host) and self.token is None and not self.no_auth:
            raise ConfigError(
                f"host: binding to {self.host} lets other machines open sessions; "
                "set --token (or LIVEFX_TOKEN, or --token auto), or pass --no-auth"
            )

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"


# Settings a client may change, by name, and the config section each belongs to. The CLI, the
# query string of POST /offer and the WebSocket "settings" message all go through ``update``.
SETTINGS: dict[str, tuple[str, str, type]] = {
    "effect": ("effect", "name", str),
    "strength": ("effect", "strength", float),
    "background": ("effect", "background", str),
    "colour": ("effect", "colour", str),
    "color": ("effect", "colour", str),
    "threshold": ("matte", "threshold", float),
    "feather": ("matte", "feather", float),
    "smoothing": ("matte", "smoothing", float),
    "guided": ("matte", "guided", bool),
    "guide": ("matte", "guide", str),
    "budget_ms": ("budget", "budget_ms", float),
    "segmenter": ("model", "segmenter", str),
    "person_model": ("model", "person_model", str),
    "model": ("effect", "model", str),
    "region": ("effect", "region", str),
    "gan_size": ("effect", "gan_size", int),
}


def _coerce(name: str, value: Any, kind: type) -> Any:
    if value is None and name in ("budget_ms", "background"):
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{name}: {value!r} is not true or false")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: {value!r} is not a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not a number") from None
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ConfigError(f"{name}: {value!r} is not a whole number")
        try:
            return int(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: {value!r} is not a whole number") from None
    if not isinstance(value, str):
        raise ConfigError(f"{name}: {value!r} is not a string")
    return value


def update(config: PipelineConfig, changes: dict[str, Any]) -> PipelineConfig:
    """A new PipelineConfig with ``changes`` (setting name → value) applied and validated.

    Unknown names are an error that lists the known ones; values are coerced from strings (query
    strings) or JSON types, then checked by the config dataclasses.
    """
    from dataclasses import replace

    sections: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        if name not in SETTINGS:
            raise ConfigError(f"unknown setting {name!r}; known: {', '.join(sorted(SETTINGS))}")
        section, attr, kind = SETTINGS[name]
        sections.setdefault(section, {})[attr] = _coerce(name, value, kind)
    updated = {s: replace(getattr(config, s), **v) for s, v in sections.items()}
    return replace(config, **updated)
