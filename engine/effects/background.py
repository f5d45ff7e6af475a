"""Effects that put something behind the person: ``blur``, ``replace`` and ``colour``."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from engine.config import EffectConfig
from engine.effects.base import Effect, register
from engine.frame import FrameBuffer
from engine.ops import cpu, fused, reference
from engine.ops.color import rgb_to_yuv

if TYPE_CHECKING:
    from engine.pipeline.state import FrameState

log = logging.getLogger(__name__)

DEFAULT_BACKGROUND = (
    Path(__file__).resolve().parent.parent.parent / "samples" / "backgrounds" / "rocket.jpg"
)


def blur_plan(
    strength: float, width: int, height: int, levels: int, bias: int = 0
) -> tuple[int, int]:
    """(pyramid level, box radius) for a blur of ``strength`` on a width × height plane.

    The blur's size is a share of the picture (σ = 6 % of the short side at strength 1), so it
    looks the same at any resolution. It runs on the pyramid level where σ is about 3 pixels or
    more, so its cost hardly depends on the strength: two box passes of radius r give a tent
    filter of variance 2r(r+1)/3 = σ².
    """
    sigma = strength * 0.06 * min(width, height)
    level = max(0, math.floor(math.log2(sigma / 3.0))) if sigma > 3.0 else 0
    level = min(level + bias, levels - 1)
    s = sigma / (1 << level)
    radius = max(1, round((-1.0 + math.sqrt(1.0 + 6.0 * s * s)) / 2.0))
    return level, radius


@register
class BlurEffect(Effect):
    """The background blurred at reduced resolution (halo-free: the person does not bleed)."""

    name = "blur"

    def __init__(self, config: EffectConfig, threads: int = 1) -> None:
        super().__init__(config, threads)
        self._blur = cpu.BackgroundBlur()

    def render(self, s: FrameState) -> FrameBuffer | fused.Background:
        assert s.refiner is not None
        if self.config.strength <= 0.0:
            return s.frame  # no blur: the frame is its own background
        bias = s.quality.blur_level_bias
        self._blur.new_frame()
        planes = []
        for pyramid, key in (
            (s.pyramids.y, "bg_y"),
            (s.pyramids.u, "bg_u"),
            (s.pyramids.v, "bg_v"),
        ):
            # The plan is relative to each plane's own size, so chroma gets the same picture blur.
            w, h = pyramid.sizes[0]
            level, radius = blur_plan(self.config.strength, w, h, len(pyramid.sizes), bias)
            small = self._blur(pyramid, level, s.refiner.matte, radius)
            planes.append(s.across[key](small))  # the composite samples it down to full size
        return planes[0], planes[1], planes[2]


def fit_planes(src: FrameBuffer, out: FrameBuffer) -> None:
    """Cover-fit a frame's planes onto ``out`` (centre crop to the aspect, then resample)."""
    x, y, w, h = reference.cover_crop(src.width, src.height, out.width, out.height)
    cpu.resize_into(src.y[y : y + h, x : x + w], out.y)
    cx, cy, cw, ch = x // 2, y // 2, max(1, w // 2), max(1, h // 2)
    cpu.resize_into(src.u[cy : cy + ch, cx : cx + cw], out.u)
    cpu.resize_into(src.v[cy : cy + ch, cx : cx + cw], out.v)


def convert_range(frame: FrameBuffer, full_range: bool) -> None:
    """Rescale a frame's code values in place between limited and full range."""
    if frame.full_range == full_range:
        return
    if full_range:  # limited → full
        luma = np.clip(np.rint((np.arange(256) - 16) * 255 / 219), 0, 255)
        chroma = np.clip(np.rint((np.arange(256) - 128) * 255 / 224 + 128), 0, 255)
    else:
        luma = np.rint(16 + np.arange(256) * 219 / 255)
        chroma = np.rint(128 + (np.arange(256) - 128) * 224 / 255)
    lut_y, lut_c = luma.astype(np.uint8), chroma.astype(np.uint8)
    cv2.LUT(frame.y, lut_y, dst=frame.y)
    cv2.LUT(frame.u, lut_c, dst=frame.u)
    cv2.LUT(frame.v, lut_c, dst=frame.v)
    frame.full_range = full_range


@register
class ReplaceEffect(Effect):
    """A background image (cover-fitted) or a looping video instead of the real background."""

    name = "replace"

    def __init__(self, config: EffectConfig, threads: int = 1) -> None:
        super().__init__(config, threads)
        from engine import media

        path = Path(config.background) if config.background else DEFAULT_BACKGROUND
        media.check_readable(path)
        self.path = path
        self._rgb: np.ndarray | None = None
        self._video: media.LoopingVideo | None = None
        if media.is_image_path(path):
            self._rgb = media.read_rgb(path)
        else:
            self._video = media.LoopingVideo(path)

    def configure(self, frame: FrameBuffer) -> None:
        if self._rgb is None:
            return
        # A still image: fitted and converted once per resolution, then reused for every frame.
        x, y, w, h = reference.cover_crop(self._rgb.shape[1], self._rgb.shape[0], *frame.size)
        fitted = np.empty((frame.height, frame.width, 3), np.uint8)
        cpu.resize_into(np.ascontiguousarray(self._rgb[y : y + h, x : x + w]), fitted)
        self.still = cpu.rgb_to_yuv420p(
            fitted, colorspace=frame.colorspace, full_range=frame.full_range
        )

    def render(self, s: FrameState) -> FrameBuffer:
        if self._video is None:
            return self.still
        src = self._video.next_frame()
        fit_planes(src, s.bg)
        s.bg.full_range = src.full_range
        convert_range(s.bg, s.frame.full_range)
        return s.bg

    def close(self) -> None:
        if self._video is not None:
            self._video.close()


@register
class ColourEffect(Effect):
    """A solid colour behind the person (default: broadcast chroma-key green)."""

    name = "colour"

    def configure(self, frame: FrameBuffer) -> None:
        mat, offset = rgb_to_yuv(frame.colorspace, frame.full_range)
        yuv = np.clip(np.rint(mat @ (np.array(self.config.rgb) / 255.0) + offset), 0, 255)
        self.yuv = tuple(int(v) for v in yuv)  # Y, U, V code values (the GPU path reads them)
        cw, ch = frame.u.shape[1], frame.u.shape[0]
        self._rows = (
            fused.constant_rows(frame.width, frame.height, self.yuv[0]),
            fused.constant_rows(cw, ch, self.yuv[1]),
            fused.constant_rows(cw, ch, self.yuv[2]),
        )

    def render(self, s: FrameState) -> fused.Background:
        return self._rows  # one row of each plane's value
