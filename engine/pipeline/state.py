"""Per-frame buffers and per-session temporal state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.inference import InferenceBackend
from engine.models.registry import ModelSpec
from engine.ops import cpu, fused
from engine.pipeline.budget import QUALITY_LEVELS, Quality


@dataclass
class FrameState:
    """What the stages of one frame hand each other. Made once per resolution and reused: every
    array here is overwritten in place by the next frame of the same size."""

    frame: FrameBuffer
    out: FrameBuffer
    bg: FrameBuffer  # background planes the effect renders (composite effects)
    alpha_y: np.ndarray  # uint8 matte at the Y plane's size (made on demand: ``alpha_full``)
    pyramids: cpu.FramePyramids
    model: ModelSpec | None = None
    backend: InferenceBackend | None = None
    preprocessor: cpu.Preprocessor | None = None
    refiner: cpu.MatteRefiner | None = None
    mask: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    quality: Quality = QUALITY_LEVELS[0]
    extra: dict[Any, np.ndarray] = field(default_factory=dict)  # other per-size buffers
    # The matte as rows resampled across to each plane's width (the composite lerps them down),
    # and the buffers that resample low-resolution planes across: "alpha_y", "alpha_uv" for the
    # matte, "bg_y", "bg_u", "bg_v" for an effect's background.
    alpha_rows_y: fused.Rows | None = None
    alpha_rows_uv: fused.Rows | None = None
    across: dict[str, fused.AcrossRows] = field(default_factory=dict)
    compositor: fused.Compositor = field(default_factory=fused.Compositor)
    alpha_made: bool = False  # alpha_y holds this frame's matte

    def alpha_full(self) -> np.ndarray:
        """This frame's matte at the Y plane's size (``alpha_y``), made on the first call."""
        if not self.alpha_made and self.alpha_rows_y is not None:
            fused.expand(self.alpha_rows_y, self.alpha_y)
            self.alpha_made = True
        return self.alpha_y

    @classmethod
    def for_frame(cls, frame: FrameBuffer) -> FrameState:
        w, h = frame.size
        cw, ch = chroma_size(w, h)
        return cls(
            frame=frame,
            out=frame.like(),
            bg=frame.like(),
            alpha_y=np.zeros((h, w), np.uint8),
            pyramids=cpu.FramePyramids(w, h),
            across={
                "alpha_y": fused.AcrossRows(w, h),
                "alpha_uv": fused.AcrossRows(cw, ch),
                "bg_y": fused.AcrossRows(w, h),
                "bg_u": fused.AcrossRows(cw, ch),
                "bg_v": fused.AcrossRows(cw, ch),
            },
        )

    def matches(self, frame: FrameBuffer) -> bool:
        f = self.frame
        return (
            f.size == frame.size
            and f.colorspace == frame.colorspace
            and f.full_range == frame.full_range
        )


@dataclass
class SessionState:
    """Temporal state of one stream: reset on a scene cut or a new resolution.

    (The smoothed mask itself lives in the refiner, ``MatteRefiner.previous``; ``reset`` clears
    it through the pipeline.)"""

    last_luma: np.ndarray | None = None  # model-size luma of the last frame the model ran on
    last_mask: np.ndarray | None = None  # that frame's raw mask
    since_inference: int = 0
    inferences: int = 0
    reused: int = 0
    scene_cuts: int = 0

    def reset(self) -> None:
        self.last_luma = None
        self.last_mask = None
        self.since_inference = 0
