"""Typed, validated settings: one definition of each setting and its default.

Every config is a frozen dataclass checked in ``__post_init__``; a bad value raises ``ConfigError``
(a ``ValueError``) naming the field and what is accepted. The CLI builds these types, and so will
the server's query strings and WebSocket messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from engine.errors import ConfigError
from engine.models.registry import SEGMENTER_CHOICES

EFFECTS = ("none", "mask")
INFERENCE_BACKENDS = ("onnxruntime",)


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

    def __post_init__(self) -> None:
        _check_choice("segmenter", self.segmenter, SEGMENTER_CHOICES)
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


@dataclass(frozen=True)
class PipelineConfig:
    effect: str = "mask"
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    stats_window: int = 100_000  # per-stage timings kept for the summary

    def __post_init__(self) -> None:
        _check_choice("effect", self.effect, EFFECTS)
        _check_range("stats_window", self.stats_window, 1, 10_000_000)


def describe(config: Any) -> dict[str, Any]:
    """A plain dict of a config (nested configs included), for logs and JSON."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = describe(value) if hasattr(value, "__dataclass_fields__") else value
    return out
