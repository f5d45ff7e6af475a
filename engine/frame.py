"""FrameBuffer: the one frame type every stage speaks.

A frame is three yuv420p planes held as NumPy arrays (views with their own strides: a plane's row
pitch may be wider than its width, as in PyAV/FFmpeg frames), a size, a presentation timestamp and
the colour conventions needed to turn it into RGB. Conversion from and to ``av.VideoFrame`` or an
image file happens once, at the edge (``engine.media``); nothing in the pipeline imports av.

Chroma planes are ``ceil(width/2) × ceil(height/2)``, so odd sizes are allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from engine.errors import InputError

COLORSPACES = ("bt601", "bt709")


def chroma_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the U and V planes of a yuv420p frame."""
    return (width + 1) // 2, (height + 1) // 2


@dataclass
class FrameBuffer:
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None
    colorspace: str = "bt601"
    full_range: bool = False
    meta: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.y.ndim != 2 or self.y.dtype != np.uint8:
            raise InputError(
                f"Y plane must be a 2-D uint8 array, got {self.y.dtype} {self.y.shape}"
            )
        h, w = self.y.shape
        if h == 0 or w == 0:
            raise InputError(f"zero-sized frame ({w}×{h})")
        cw, ch = chroma_size(w, h)
        for name, plane in (("U", self.u), ("V", self.v)):
            if plane.dtype != np.uint8 or plane.shape != (ch, cw):
                raise InputError(
                    f"{name} plane must be uint8 {cw}×{ch} for a {w}×{h} frame, "
                    f"got {plane.dtype} {plane.shape[::-1]}"
                )
        if self.colorspace not in COLORSPACES:
            raise InputError(
                f"unknown colorspace {self.colorspace!r}; expected one of {COLORSPACES}"
            )

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.width, self.height

    @classmethod
    def allocate(
        cls, width: int, height: int, *, colorspace: str = "bt601", full_range: bool = False
    ) -> FrameBuffer:
        """A new frame with contiguous planes (contents uninitialised)."""
        if width <= 0 or height <= 0:
            raise InputError(f"zero-sized frame ({width}×{height})")
        cw, ch = chroma_size(width, height)
        return cls(
            np.empty((height, width), np.uint8),
            np.empty((ch, cw), np.uint8),
            np.empty((ch, cw), np.uint8),
            colorspace=colorspace,
            full_range=full_range,
        )

    def like(self) -> FrameBuffer:
        """A new frame of the same size and colour conventions."""
        out = FrameBuffer.allocate(
            self.width, self.height, colorspace=self.colorspace, full_range=self.full_range
        )
        out.pts, out.time_base = self.pts, self.time_base
        return out

    def copy_into(self, out: FrameBuffer) -> None:
        np.copyto(out.y, self.y)
        np.copyto(out.u, self.u)
        np.copyto(out.v, self.v)
        out.pts, out.time_base = self.pts, self.time_base
