"""Per-frame buffers and per-session temporal state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.inference import InferenceBackend
from engine.models.registry import ModelSpec
from engine.ops import cpu
from engine.pipeline.budget import QUALITY_LEVELS, Quality


@dataclass
class FrameState:
    """What the stages of one frame hand each other. Made once per resolution and reused: every
    array here is overwritten in place by the next frame of the same size."""

    frame: FrameBuffer
    out: FrameBuffer
    bg: FrameBuffer  # background planes the effect renders (composite effects)
    alpha_y: np.ndarray  # uint8 matte at the Y plane's size
    alpha_uv: np.ndarray  # uint8 matte at the U/V planes' size
    pyramids: cpu.FramePyramids
    model: ModelSpec | None = None
    backend: InferenceBackend | None = None
    preprocessor: cpu.Preprocessor | None = None
    refiner: cpu.MatteRefiner | None = None
    mask: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    quality: Quality = QUALITY_LEVELS[0]
    scratch_y: list[np.ndarray] = field(default_factory=list)  # two uint8 Y-size planes
    scratch_uv: list[np.ndarray] = field(default_factory=list)  # two uint8 U/V-size planes
    extra: dict[Any, np.ndarray] = field(default_factory=dict)  # other per-size buffers

    @classmethod
    def for_frame(cls, frame: FrameBuffer) -> FrameState:
        w, h = frame.size
        cw, ch = chroma_size(w, h)
        return cls(
            frame=frame,
            out=frame.like(),
            bg=frame.like(),
            alpha_y=np.zeros((h, w), np.uint8),
            alpha_uv=np.zeros((ch, cw), np.uint8),
            pyramids=cpu.FramePyramids(w, h),
            scratch_y=[np.empty((h, w), np.uint8) for _ in range(2)],
            scratch_uv=[np.empty((ch, cw), np.uint8) for _ in range(2)],
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
