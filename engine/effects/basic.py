"""``none`` and ``mask``: the pass-through and the matte itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.effects.base import Effect, register
from engine.ops import cpu

if TYPE_CHECKING:
    from engine.pipeline.state import FrameState


@register
class NoEffect(Effect):
    """The input frame, unchanged (no model runs): the pass-through for latency baselines."""

    name = "none"
    needs_matte = False
    composites = False

    def render(self, s: FrameState) -> None:
        s.frame.copy_into(s.out)
        return None


@register
class MaskEffect(Effect):
    """The person matte as a grey frame (white = person)."""

    name = "mask"
    composites = False

    def render(self, s: FrameState) -> None:
        cpu.matte_to_yuv420p(s.alpha_full(), s.out)
        return None
