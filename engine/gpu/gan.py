"""The GAN effect on the GPU: the generator on LiveFX's net kernels, inside the frame's graph.

After the upload and the halvings (as deep as the generator's size needs, ``pre.depths``):

    lfx_gan_pre (the generator's input, NCHW RGB at its size, and the planes there as 8 bits)
    → the generator's launches (``engine.gpu.net.DeviceNet``, one per size, made by the
      pipeline and registered in ``chain.generators``)
    → lfx_gan_yuv (its RGB back to three 8-bit planes at its size)
    → per plane: where the generator's size covers the plane (Y at full size; U and V often),
      halvings and a bilinear resample (``engine.ops.cpu.resize_into``); else the self-guided
      upsampling of ``engine.ops.guided.GuidedUpsampler``: lfx_gan_stack → box means of radius
      2 (four planes each, one launch pair) → lfx_gan_noise (the frame's noise, for enhance's
      eps) → lfx_gan_ab → lfx_gan_up, U and V in one launch each
    → the styled frame: the output itself (``--region frame``), or composited over the frame
      with the matte (``--region person``: ``lfx_finish``, the segmenter's matte).

Functions of a ``FrameChain`` (``engine.gpu.chain``); the math is kernels/gan.cuh, tested on
the host against the cpu backend.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import numpy as np

from engine.gpu.launch import BLOCK_2D, PX, ColorMatrix, Op, P, grid2
from engine.gpu.refine import box_ops
from engine.ops import reference
from engine.ops.color import rgb_to_yuv

if TYPE_CHECKING:
    from engine.gpu.chain import ChainSettings, FrameChain

RADIUS = 2  # GuidedUpsampler's default


def inverse_matrix(colorspace: str, full_range: bool) -> ColorMatrix:
    """RGB → Y, U, V code values (the matrix and offsets of ``engine.ops.color.rgb_to_yuv``)."""
    mat, off = rgb_to_yuv(colorspace, full_range)
    m = np.asarray(mat, np.float64).ravel()
    return ColorMatrix((ctypes.c_float * 9)(*m), (ctypes.c_float * 3)(*np.asarray(off)))


def halvings(chain: FrameChain, size: tuple[int, int]) -> tuple[int, int]:
    """The exact halvings of Y and of U/V before the generator's size."""
    gw, gh = size
    y, u = chain.planes[0], chain.planes[1]
    return (
        reference.halvings(y.width, y.height, gw, gh),
        reference.halvings(u.width, u.height, gw, gh),
    )


def gan_ops(chain: FrameChain, s: ChainSettings, dst: int) -> list[Op]:
    """The styled frame into ``dst`` (a packed yuv420p frame on the device)."""
    assert s.gan is not None
    gw, gh = s.gan[:2]
    net = chain.generators[(gw, gh)]
    n = gw * gh
    small = chain.scratch(("gan small", gw, gh), 3 * n)
    styled = chain.scratch(("gan styled", gw, gh), 3 * n)
    ky, kuv = halvings(chain, (gw, gh))
    yp, ys, yw, yh, yt = chain.planes[0].level(ky)
    up, cs, cw, ch, ct = chain.planes[1].level(kuv)
    vp = chain.planes[2].level(kuv)[0]
    in_bytes = yw * yh * (1 if yt == "u8" else 4) + 2 * cw * ch * (1 if ct == "u8" else 4)
    rgb_in, rgb_out = net.ptr(net.plan.input), net.ptr(net.plan.outputs[0])
    ops = [
        chain._kernel(
            f"gan input {gw}×{gh}",
            in_bytes + 3 * n + 12 * n,
            f"lfx_gan_pre_{yt}{ct}",
            grid2(gw, gh),
            BLOCK_2D,
            P(yp),
            ys,
            yw,
            yh,
            P(up),
            P(vp),
            cs,
            cw,
            ch,
            chain._cm,
            P(small),
            P(rgb_in),
            gw,
            gh,
        ),
        *net.ops(chain.stream),
        chain._kernel(
            "gan RGB → Y, U, V",
            12 * n + 3 * n,
            "lfx_gan_yuv",
            grid2(gw, gh),
            BLOCK_2D,
            P(rgb_out),
            inverse_matrix(chain.colorspace, chain.full_range),
            P(styled),
            gw,
            gh,
        ),
    ]
    o = chain.plane_offsets()
    w, h = chain.width, chain.height
    cw_, ch_ = chain.chroma
    for first, count, (pw, ph) in ((0, 1, (w, h)), (1, 2, (cw_, ch_))):
        if gw >= pw and gh >= ph:
            ops += _resample_ops(chain, styled + first * n, gw, gh, count, dst + o[first], pw, ph)
        else:
            ops += _guided_ops(chain, s, small, styled, first, count, dst + o[first], pw, ph)
    return ops


def _resample_ops(
    chain: FrameChain, src: int, gw: int, gh: int, count: int, dst: int, pw: int, ph: int
) -> list[Op]:
    """``count`` planes (gw × gh, uint8, one after another) to pw × ph: halvings, bilinear."""
    ops: list[Op] = []
    k = reference.halvings(gw, gh, pw, ph)
    ptr, sw, sh, t = src, gw, gh, "u8"
    for level in range(k):
        dw, dh = sw // 2, sh // 2
        half = chain.scratch(("gan half", src, level), count * dw * dh * 4)
        ops.append(
            chain._kernel(
                f"gan halve → {dw}×{dh}",
                count * (sw * sh * (1 if t == "u8" else 4) + dw * dh * 4),
                f"lfx_halve_{t}",
                grid2(dw, dh, count),
                BLOCK_2D,
                P(ptr),
                sw,
                sw * sh,
                P(half),
                dw,
                dh,
                dw * dh,
            )
        )
        ptr, sw, sh, t = half, dw, dh, "f32"
    ops.append(
        chain._kernel(
            f"gan resample → {pw}×{ph}",
            count * (sw * sh * (1 if t == "u8" else 4) + pw * ph),
            f"lfx_resample_u8_{t}",
            grid2((pw + PX - 1) // PX, ph, count),
            BLOCK_2D,
            P(ptr),
            sw,
            sw,
            sh,
            sw * sh,
            P(dst),
            pw,
            ph,
            pw * ph,
        )
    )
    return ops


def _guided_ops(
    chain: FrameChain,
    s: ChainSettings,
    small: int,
    styled: int,
    first: int,
    count: int,
    dst: int,
    pw: int,
    ph: int,
) -> list[Op]:
    """``count`` planes from ``first``: the self-guided upsampling to pw × ph."""
    assert s.gan is not None
    gw, gh, eps, noise_eps = s.gan
    n = gw * gh
    stack = chain.scratch(("gan stack", gw, gh, first), count * 4 * n * 4)
    tmp = chain.scratch(("gan tmp", gw, gh, first), count * 4 * n * 4)
    ab = chain.scratch(("gan ab", gw, gh, first), count * 2 * n * 4)
    sums = chain.scratch(("gan noise", first), count * 4)
    full = chain.d_in + chain.plane_offsets()[first]
    tag = "Y" if first == 0 else "U+V"
    return [
        chain._kernel(
            f"gan guide stack {tag}",
            count * (2 * n + 16 * n),
            "lfx_gan_stack",
            grid2(gw, gh, count),
            BLOCK_2D,
            P(small + first * n),
            P(styled + first * n),
            P(stack),
            gw,
            gh,
        ),
        *box_ops(chain, stack, tmp, gw, gh, RADIUS, 4 * count, f"gan {tag}"),
        chain._kernel(
            f"gan noise {tag}",
            count * n,
            "lfx_gan_noise",
            (count, 1, 1),
            (256, 1, 1),
            P(small + first * n),
            P(sums),
            gw,
            gh,
        ),
        chain._kernel(
            f"gan fit {tag}",
            count * (16 * n + 8 * n),
            "lfx_gan_ab",
            grid2(gw, gh, count),
            BLOCK_2D,
            P(stack),
            P(sums),
            P(ab),
            gw,
            gh,
            float(eps),
            float(noise_eps),
        ),
        chain._kernel(
            f"gan upsample {tag} → {pw}×{ph}",
            count * (8 * n + 2 * pw * ph),
            "lfx_gan_up",
            grid2(pw, ph, count),
            BLOCK_2D,
            P(ab),
            gw,
            gh,
            P(full),
            pw * ph,
            P(dst),
            pw * ph,
            pw,
            ph,
        ),
    ]
