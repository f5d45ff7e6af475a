"""Frame identity in the pixels: a frame's number written into its picture and read back.

A block of 3 × 12 cells of black or white luma, each cell 1/30 of the frame's height: the first
cell of each row is black and the last white (the reference levels for that row), the 30 cells
between carry 22 bits of frame number and an 8-bit CRC. It goes on the person (by default where
the shipped sample's torso is), so that background effects keep it. Positions are fractions of
the frame, so a code still reads when a server rescales the picture; cells are read by the mean
luma of their inner half, so codec ringing at their edges does not matter. A frame whose code
does not check out is unreadable, never guessed.

The same layout is read in the browser (``engine/bench/browser.py``): ``layout()`` gives it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

ROWS, COLS = 3, 12
DATA_BITS = ROWS * (COLS - 2)  # 30: 22 of frame number, 8 of CRC
NUMBER_BITS = 22
CRC_BITS = 8
MODULO = 1 << NUMBER_BITS  # frame numbers wrap after 4 194 304 frames (38 h at 30 fps)
CELL_OF_HEIGHT = 1 / 30
BLACK, WHITE = 16, 235  # limited-range luma
MIN_CONTRAST = 60  # white − black reference, in code values, below which nothing is read
SAMPLE_TORSO = (0.45, 0.72)  # the code's centre on the shipped sample: her torso


def crc8(value: int, bits: int = NUMBER_BITS) -> int:
    """CRC-8 (polynomial 0x07) of the low ``bits`` bits of ``value``, most significant first."""
    crc = 0
    for i in range(bits - 1, -1, -1):
        bit = (value >> i) & 1
        top = (crc >> 7) & 1
        crc = ((crc << 1) & 0xFF) ^ (0x07 if top ^ bit else 0)
    return crc


def to_bits(number: int) -> list[int]:
    n = number % MODULO
    word = (n << CRC_BITS) | crc8(n)
    return [(word >> (DATA_BITS - 1 - i)) & 1 for i in range(DATA_BITS)]


def from_bits(bits: list[int]) -> int | None:
    word = 0
    for b in bits:
        word = (word << 1) | b
    n, crc = word >> CRC_BITS, word & 0xFF
    return n if crc8(n) == crc else None


@dataclass(frozen=True)
class Layout:
    """Where the cells are, in fractions of the frame: centre (cx, cy), cell size (cw, ch)."""

    cx: float = SAMPLE_TORSO[0]
    cy: float = SAMPLE_TORSO[1]

    def cells(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """(x0, y0, x1, y1) of every cell in row-major order, for a width × height frame."""
        side = max(4.0, height * CELL_OF_HEIGHT)
        x_start = self.cx * width - COLS * side / 2
        y_start = self.cy * height - ROWS * side / 2
        out = []
        for r in range(ROWS):
            for c in range(COLS):
                x0 = round(x_start + c * side)
                y0 = round(y_start + r * side)
                x1 = round(x_start + (c + 1) * side)
                y1 = round(y_start + (r + 1) * side)
                out.append((max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)))
        return out

    def fits(self, width: int, height: int) -> bool:
        side = max(4.0, height * CELL_OF_HEIGHT)
        return (
            self.cx * width - COLS * side / 2 >= 0
            and self.cx * width + COLS * side / 2 <= width
            and self.cy * height - ROWS * side / 2 >= 0
            and self.cy * height + ROWS * side / 2 <= height
        )

    def as_dict(self) -> dict[str, float | int]:
        return {
            "cx": self.cx,
            "cy": self.cy,
            "rows": ROWS,
            "cols": COLS,
            "cell_of_height": CELL_OF_HEIGHT,
            "number_bits": NUMBER_BITS,
            "min_contrast": MIN_CONTRAST,
        }


def stamp(y: np.ndarray, number: int, layout: Layout) -> None:
    """Write ``number`` into the luma plane ``y`` (in place)."""
    height, width = y.shape
    bits = iter(to_bits(number))
    for i, (x0, y0, x1, y1) in enumerate(layout.cells(width, height)):
        col = i % COLS
        if col == 0:
            level = BLACK
        elif col == COLS - 1:
            level = WHITE
        else:
            level = WHITE if next(bits) else BLACK
        y[y0:y1, x0:x1] = level


@functools.lru_cache(maxsize=64)
def _reader(layout: Layout, width: int, height: int) -> tuple[Any, ...] | None:
    """The code's box and, per cell, the corners of its inner half in that box (cached)."""
    cells = layout.cells(width, height)
    x0, y0 = min(c[0] for c in cells), min(c[1] for c in cells)
    x1, y1 = max(c[2] for c in cells), max(c[3] for c in cells)
    corners = []
    for cx0, cy0, cx1, cy1 in cells:
        qx, qy = (cx1 - cx0) // 4, (cy1 - cy0) // 4
        a, b, c, d = cx0 + qx - x0, cx1 - qx - x0, cy0 + qy - y0, cy1 - qy - y0
        if b <= a or d <= c:
            return None
        corners.append((a, b, c, d))
    ia, ib, ic, id_ = (np.array(v) for v in zip(*corners, strict=True))
    return (x0, y0, x1, y1), ia, ib, ic, id_, ((ib - ia) * (id_ - ic)).astype(np.float64)


def read(y: np.ndarray, layout: Layout) -> int | None:
    """The number in the luma plane ``y``, or None when the code is missing or does not check."""
    height, width = y.shape
    reader = _reader(layout, width, height)
    if reader is None:
        return None
    (x0, y0, x1, y1), a, b, c, d, area = reader
    # One summed-area table of the code's box; each cell's inner half is four lookups.
    table = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.int64)
    np.cumsum(np.cumsum(y[y0:y1, x0:x1], axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    means = (table[d, b] - table[c, b] - table[d, a] + table[c, a]) / area
    rows = means.reshape(ROWS, COLS)
    black, white = rows[:, 0], rows[:, -1]
    if np.any(white - black < MIN_CONTRAST):
        return None
    bits = rows[:, 1:-1] > ((black + white) / 2)[:, None]
    return from_bits([int(v) for v in bits.reshape(-1)])
