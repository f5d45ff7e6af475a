"""The Effect interface and its registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from engine.config import EffectConfig
from engine.errors import ConfigError
from engine.frame import FrameBuffer

if TYPE_CHECKING:
    from engine.ops.fused import Background
    from engine.pipeline.state import FrameState


class Effect:
    """An effect renders, for each frame, either a background that the composite stage blends
    under the person (``composites = True``; usually ``s.bg``, filled in place) or the output
    ``s.out`` itself (``composites = False``)."""

    name: ClassVar[str]
    needs_matte: ClassVar[bool] = True
    composites: ClassVar[bool] = True

    def __init__(self, config: EffectConfig, threads: int = 1) -> None:
        self.config = config
        self.threads = threads  # inference threads, for an effect that runs a model of its own

    def configure(self, frame: FrameBuffer) -> None:
        """Called when the frame size or colour conventions change, before ``render``."""

    def render(self, s: FrameState) -> FrameBuffer | Background | None:
        """The background to composite under the person (a frame, or planes given as rows that
        the composite resamples, ``engine.ops.fused``), or None when ``s.out`` is written."""
        raise NotImplementedError

    def close(self) -> None:
        """Release files or threads the effect holds."""


EFFECTS: dict[str, type[Effect]] = {}


def register(cls: type[Effect]) -> type[Effect]:
    EFFECTS[cls.name] = cls
    return cls


def create_effect(config: EffectConfig, threads: int = 1) -> Effect:
    _load_builtin()
    try:
        cls = EFFECTS[config.name]
    except KeyError:
        raise ConfigError(
            f"effect: {config.name!r} is not one of {', '.join(sorted(EFFECTS))}"
        ) from None
    return cls(config, threads)


_loaded: list[Callable[[], None]] = []


def _load_builtin() -> None:
    if not _loaded:
        from engine.effects import background, basic, gan  # noqa: F401  (registers the effects)

        _loaded.append(_load_builtin)
