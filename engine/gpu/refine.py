"""The matte's ops at the mask's size: the box mean (two passes over stacked planes, also the
blur's), the guided filter fused with temporal smoothing and the ramp (or smoothing and the ramp
alone), and the matte's halvings towards a pyramid level.

Functions of a ``FrameChain`` (``engine.gpu.chain``); ``engine.gpu.composite`` puts them in the
post-model graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.gpu.launch import BLOCK_1D, BLOCK_2D, BOX_H_BLOCK, BOX_V_BLOCK, Op, P, grid1, grid2
from engine.ops import reference

if TYPE_CHECKING:
    from engine.gpu.chain import ChainSettings, FrameChain


def box_ops(
    chain: FrameChain,
    src: int,
    tmp: int,
    w: int,
    h: int,
    r: int,
    planes: int,
    tag: str,
    dst: int | None = None,
) -> list[Op]:
    """One box mean (horizontal then vertical pass) of ``planes`` stacked w × h planes:
    src → tmp → dst (default: src)."""
    dst = src if dst is None else dst
    smem_h = (BOX_H_BLOCK + 2 * r) * 4
    bx, by, _ = BOX_V_BLOCK
    smem_v = (by + 2 * r) * bx * 4
    grid_h = ((w + BOX_H_BLOCK - 1) // BOX_H_BLOCK, h, planes)
    grid_v = ((w + bx - 1) // bx, (h + by - 1) // by, planes)
    nbytes = 2 * planes * w * h * 4
    return [
        chain._kernel(
            f"box_h r{r} {tag}",
            nbytes,
            "lfx_box_h",
            grid_h,
            (BOX_H_BLOCK, 1, 1),
            P(src),
            P(tmp),
            w,
            h,
            r,
            smem=smem_h,
        ),
        chain._kernel(
            f"box_v r{r} {tag}",
            nbytes,
            "lfx_box_v",
            grid_v,
            BOX_V_BLOCK,
            P(tmp),
            P(dst),
            w,
            h,
            r,
            smem=smem_v,
        ),
    ]


def mask_upload_op(chain: FrameChain) -> Op:
    """ONNX Runtime's mask (pinned, host) to the device."""
    f4 = chain.mask_w * chain.mask_h * 4
    return Op(
        "mask (host → device)",
        f4,
        lambda: chain._copy_h2d(chain.d_mask, chain.mask.ptr, f4),
    )


def smooth_args(chain: FrameChain, s: ChainSettings) -> tuple[Any, ...]:
    """Temporal smoothing and the ramp: history, matte, count, first-frame flag, settings."""
    return (
        P(chain.d_prev),
        P(chain.d_matte),
        chain.mask_w * chain.mask_h,
        P(chain.d_first),
        float(s.smoothing),
        float(s.threshold),
        float(s.feather),
    )


def guided_ops(chain: FrameChain, s: ChainSettings) -> list[Op]:
    """The guided filter (products, their box means, a and b, theirs), its output fused with
    temporal smoothing and the ramp."""
    mw, mh = chain.mask_w, chain.mask_h
    n_m = mw * mh
    f4 = n_m * 4
    ops = [
        chain._kernel(
            "guided: products",
            n_m + f4 + 4 * f4,
            "lfx_guided_products",
            grid2(mw, mh),
            BLOCK_2D,
            P(chain.d_luma),
            mw,
            P(chain.d_mask),
            P(chain.d_stack4),
            mw,
            mh,
        )
    ]
    ops += box_ops(
        chain, chain.d_stack4, chain.d_tmp4, mw, mh, s.radius, 4, "guided ×4", dst=chain.d_means4
    )
    m4 = chain.d_means4
    ops.append(
        chain._kernel(
            "guided: fit a, b",
            4 * f4 + 2 * f4,
            "lfx_guided_ab",
            grid1(n_m),
            (BLOCK_1D, 1, 1),
            P(m4),
            P(m4 + f4),
            P(m4 + 2 * f4),
            P(m4 + 3 * f4),
            P(chain.d_ab),
            P(chain.d_ab + f4),
            n_m,
            float(s.eps),
        )
    )
    ops += box_ops(
        chain, chain.d_ab, chain.d_tmp4, mw, mh, s.radius, 2, "guided ×2", dst=chain.d_mab
    )
    ops.append(
        chain._kernel(
            "guided: output + smooth + ramp",
            3 * f4 + 2 * f4 + f4,
            "lfx_guided_smooth_ramp",
            grid1(n_m),
            (BLOCK_1D, 1, 1),
            P(chain.d_mab),
            P(chain.d_mab + f4),
            P(chain.d_stack4),
            *smooth_args(chain, s),
        )
    )
    return ops


def smooth_op(chain: FrameChain, s: ChainSettings) -> Op:
    """Temporal smoothing and the ramp of the model's mask (no guided filter)."""
    n_m = chain.mask_w * chain.mask_h
    f4 = n_m * 4
    return chain._kernel(
        "smooth + ramp",
        f4 + 2 * f4 + f4,
        "lfx_smooth_ramp",
        grid1(n_m),
        (BLOCK_1D, 1, 1),
        P(chain.d_mask),
        *smooth_args(chain, s),
    )


def refine_ops(chain: FrameChain, s: ChainSettings) -> list[Op]:
    """The model's mask to the matte (``d_matte``): [its upload, for ONNX Runtime] → guided
    filter + smoothing + ramp, or smoothing + ramp."""
    ops: list[Op] = []
    if chain.ort:
        ops.append(mask_upload_op(chain))
    if s.guided:
        ops += guided_ops(chain, s)
    else:
        ops.append(smooth_op(chain, s))
    return ops


def resample_matte(chain: FrameChain, w: int, h: int) -> tuple[list[Op], tuple[int, int, int, int]]:
    """The low-resolution matte's halvings towards w × h (ptr, stride, width, height)."""
    mw, mh = chain.mask_w, chain.mask_h
    k = reference.halvings(mw, mh, w, h)
    ops: list[Op] = []
    src, sw, sh = chain.d_matte, mw, mh
    for i in range(k):
        dw, dh = sw // 2, sh // 2
        dst = chain.scratch(("matte", i), dw * dh * 4)

        ops.append(
            chain._kernel(
                f"halve matte → {dw}×{dh}",
                (sw * sh + dw * dh) * 4,
                "lfx_halve_f32",
                grid2(dw, dh),
                BLOCK_2D,
                P(src),
                sw,
                0,
                P(dst),
                dw,
                dh,
                0,
            )
        )
        src, sw, sh = dst, dw, dh
    return ops, (src, sw, sw, sh)
