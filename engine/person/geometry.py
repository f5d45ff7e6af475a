"""Crops around the body: where they are in the frame, and the warps in and out of them.

A crop is a square of side ``side`` frame pixels centred on ``(cx, cy)``, turned by ``angle``
radians, seen by the body model at 256×256. Coordinates are continuous (a pixel's centre is at
+0.5); the matrices handed to OpenCV are converted to its pixel-index convention here and only
here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engine.frame import FrameBuffer, chroma_size
from engine.ops import cpu
from engine.ops.color import yuv_to_rgb

SIZE = 256


@dataclass(frozen=True)
class Crop:
    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def to_frame(self) -> np.ndarray:
        """3×3: continuous crop coordinates (0…256) → continuous frame coordinates."""
        s = self.side / SIZE
        c, n = math.cos(self.angle) * s, math.sin(self.angle) * s
        half = SIZE / 2
        return np.array(
            [
                [c, -n, self.cx - c * half + n * half],
                [n, c, self.cy - n * half - c * half],
                [0.0, 0.0, 1.0],
            ]
        )

    def points_to_frame(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) crop coordinates → (N, 2) frame coordinates."""
        m = self.to_frame()
        out: np.ndarray = xy @ m[:2, :2].T + m[:2, 2]
        return out


def _scale(f: float) -> np.ndarray:
    return np.array([[f, 0.0, 0.0], [0.0, f, 0.0], [0.0, 0.0, 1.0]])


def _shift(d: float) -> np.ndarray:
    return np.array([[1.0, 0.0, d], [0.0, 1.0, d], [0.0, 0.0, 1.0]])


def index_matrix(dst_to_src: np.ndarray) -> np.ndarray:
    """Continuous dst→src (3×3) → OpenCV's pixel-index matrix for WARP_INVERSE_MAP (2×3)."""
    m: np.ndarray = (_shift(-0.5) @ dst_to_src @ _shift(0.5))[:2]
    return m


def frame_to_grid(width: int, height: int, grid_w: int, grid_h: int) -> np.ndarray:
    """3×3: continuous frame coordinates → continuous coordinates of a grid over the frame."""
    return np.array([[grid_w / width, 0.0, 0.0], [0.0, grid_h / height, 0.0], [0.0, 0.0, 1.0]])


class CropSampler:
    """Cuts a crop out of a yuv420p frame's pyramids into the body model's RGB input."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._yuv = np.empty((3, SIZE, SIZE), np.uint8)
        self._flat = np.empty((3, SIZE * SIZE), np.float32)

    def __call__(
        self, pyramids: cpu.FramePyramids, frame: FrameBuffer, crop: Crop, out: np.ndarray
    ) -> None:
        """Write the crop as float32 RGB in [0, 1] into ``out`` (3, 256, 256)."""
        to_frame = crop.to_frame()
        black_y = 0 if frame.full_range else 16
        cw, _ = chroma_size(self.width, self.height)
        cs = cw / self.width
        planes = ((pyramids.y, 1.0, black_y), (pyramids.u, cs, 128), (pyramids.v, cs, 128))
        for k, (pyr, plane_scale, fill) in enumerate(planes):
            # The smallest pyramid level at which the crop is still 256 pixels across.
            shrink = crop.side * plane_scale / SIZE
            level = math.floor(math.log2(shrink)) if shrink >= 2 else 0
            src = pyr.level(min(level, len(pyr.sizes) - 1))
            m = index_matrix(_scale(src.shape[1] / self.width) @ to_frame)
            cv2.warpAffine(
                src,
                m,
                (SIZE, SIZE),
                dst=self._yuv[k],
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=fill,
            )
        mat, offset = yuv_to_rgb(frame.colorspace, frame.full_range)
        np.subtract(
            self._yuv.reshape(3, -1),
            offset.astype(np.float32)[:, None],
            out=self._flat,
            casting="unsafe",
        )
        flat = out.reshape(3, -1)
        np.matmul(mat.astype(np.float32), self._flat, out=flat)
        np.clip(flat, 0.0, 1.0, out=flat)


def crop_to_grid(
    prob: np.ndarray, crop: Crop, width: int, height: int, grid_w: int, grid_h: int
) -> np.ndarray:
    """The crop's 256×256 map brought into a grid over the frame (0 outside the crop)."""
    grid_to_crop = np.linalg.inv(frame_to_grid(width, height, grid_w, grid_h) @ crop.to_frame())
    out: np.ndarray = cv2.warpAffine(
        prob,
        index_matrix(grid_to_crop),
        (grid_w, grid_h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return out
