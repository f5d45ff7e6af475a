"""The ops after the model, as one graph per setting: the matte (``engine.gpu.refine``), the
background (the blur's levels, ``engine.gpu.blur``; a still image; the frame; a colour), one
last launch (``lfx_finish``: both uint8 mattes, the background and the composite of Y, U and V),
and the download.

Functions of a ``FrameChain`` (``engine.gpu.chain``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import BackendError
from engine.gpu.blur import blur_ops
from engine.gpu.launch import BLOCK_2D, PX, Background, Op, P, grid2
from engine.gpu.refine import refine_ops

if TYPE_CHECKING:
    from engine.gpu.chain import ChainSettings, FrameChain


def background(chain: FrameChain, s: ChainSettings) -> tuple[list[Op], Background, int]:
    """The ops that make the background (the blur's), the ``Background`` that ``lfx_finish``
    reads it through, and the bytes it reads of it."""
    o = chain.plane_offsets()
    ops: list[Op] = []
    if s.background == "blur":
        ops, ((py, yw, yh), (pu, lcw, lch), (pv, _, _)) = blur_ops(chain, s)
        bg = Background(2, 0, 0, 0, P(py), P(pu), P(pv), yw, yh, lcw, lch)
        bg_bytes = yw * yh + 2 * lcw * lch
    elif s.background in ("image", "video", "frame"):
        if s.background != "frame" and chain._still is None:
            raise BackendError("no background image uploaded (set_background_image)")
        src = chain._still if s.background != "frame" else chain.d_in
        assert src is not None
        bg = Background(1, 0, 0, 0, P(src), P(src + o[1]), P(src + o[2]))
        bg_bytes = chain.frame_bytes
    elif s.background == "colour":
        bg = Background(0, *(int(c) for c in s.colour))
        bg_bytes = 0
    elif s.background == "matte":  # the mask effect: white (chain.white_frame) over black
        bg = Background(0, 0 if chain.full_range else 16, 128, 128)
        bg_bytes = 0
    else:
        raise BackendError(f"unknown background {s.background!r}")
    return ops, bg, bg_bytes


def finish_op(
    chain: FrameChain, s: ChainSettings, bg: Background, bg_bytes: int, fg: int | None = None
) -> Op:
    """``lfx_finish``: the matte upsampled to both uint8 mattes, the background, and the
    composite of Y, U and V into the output frame. ``fg``: the foreground frame (default: the
    frame itself)."""
    mw, mh = chain.mask_w, chain.mask_h
    f4 = mw * mh * 4
    w, h = chain.width, chain.height
    cw, ch = chain.chroma
    o = chain.plane_offsets()
    n_y, n_c = w * h, cw * ch
    fin, out = chain.d_in, chain.d_out
    if s.background == "matte":
        fin = chain.white_frame()
    if fg is not None:
        fin = fg
    return chain._kernel(
        f"mattes + background + composite ({s.background})",
        f4 + 2 * chain.frame_bytes + n_y + n_c + bg_bytes,
        "lfx_finish",
        grid2((w + PX - 1) // PX, h),
        BLOCK_2D,
        P(fin),
        w,
        P(fin + o[1]),
        P(fin + o[2]),
        cw,
        P(chain.d_matte),
        mw,
        mh,
        P(chain.d_alpha_y),
        P(chain.d_alpha_uv),
        P(out),
        P(out + o[1]),
        P(out + o[2]),
        w,
        h,
        cw,
        ch,
        bg,
    )


def download_op(chain: FrameChain) -> Op:
    """The output frame (device → pinned host)."""
    total = chain.frame_bytes
    return Op(
        "download (device → host)",
        total,
        lambda: chain._copy_d2h(chain.host_out.ptr, chain.d_out, total),
    )


def post_ops(chain: FrameChain, s: ChainSettings) -> list[Op]:
    """Everything after the model: refine → [blur] → finish → download."""
    ops = refine_ops(chain, s)
    bg_ops, bg, bg_bytes = background(chain, s)
    ops += bg_ops
    ops.append(finish_op(chain, s, bg, bg_bytes))
    ops.append(download_op(chain))
    return ops
