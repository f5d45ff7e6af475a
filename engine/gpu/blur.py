"""The masked blur of the background: each plane's blur plan (pyramid level, box radius: the cpu
backend's), and its ops at that level, which leave uint8 levels for the last kernel
(``lfx_finish``, ``engine.gpu.composite``) to upsample on the fly.

Functions of a ``FrameChain`` (``engine.gpu.chain``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import BackendError
from engine.gpu.launch import BLOCK_2D, Op, P, grid2
from engine.gpu.refine import box_ops, resample_matte
from engine.ops import reference

if TYPE_CHECKING:
    from engine.gpu.chain import ChainSettings, FrameChain


def blur_plans(chain: FrameChain, settings: ChainSettings) -> list[tuple[int, int]]:
    """(pyramid level, box radius) per plane: the cpu backend's ``blur_plan``."""
    from engine.effects.background import blur_plan

    plans = []
    for p in chain.planes:
        levels = len(reference.pyramid_sizes(p.width, p.height, 5))
        plans.append(
            blur_plan(settings.blur_strength, p.width, p.height, levels, settings.blur_bias)
        )
    return plans


def _group_ops(
    chain: FrameChain,
    plans: list[tuple[int, int]],
    group: tuple[int, int, int, str],
    members: list[int],
) -> tuple[list[Op], int]:
    """The blur of the planes ``members`` (levels of one size, type and radius), stacked: one
    launch writes x·share of each and the share, each box pass is one launch over the stack,
    one launch takes their ratios. With the ops, the members' uint8 levels (one after the
    other)."""
    lw, lh, r, lt = group
    n = len(members) + 1
    plane_bytes = lw * lh * 4
    x_bytes = lw * lh * (1 if lt == "u8" else 4)
    stack = chain.scratch(("stack", lw, lh, n), n * plane_bytes)
    tmp = chain.scratch(("stack tmp", lw, lh, n), n * plane_bytes)
    ops, (mp, ms, msw, msh) = resample_matte(chain, lw, lh)
    xs = [chain.planes[i].level(plans[i][0]) for i in members]
    xargs: list[Any] = []
    for m in range(3):
        xp, xstride = xs[min(m, len(xs) - 1)][:2]
        xargs += [P(xp), xstride]
    tag = "+".join("YUV"[i] for i in members)

    ops.append(
        chain._kernel(
            f"blur: inputs {tag} {lw}×{lh}",
            msw * msh * 4 + len(members) * x_bytes + n * plane_bytes,
            f"lfx_blur_inputs_{lt}",
            grid2(lw, lh),
            BLOCK_2D,
            P(mp),
            ms,
            msw,
            msh,
            *xargs,
            len(members),
            P(stack),
            lw,
            lh,
        )
    )
    box_tag = f"blur ×{n} {lw}×{lh}"
    ops += box_ops(chain, stack, tmp, lw, lh, r, n, box_tag)
    ops += box_ops(chain, stack, tmp, lw, lh, r, n, box_tag)
    small = chain.scratch(("blur small", lw, lh, len(members)), len(members) * lw * lh)

    ops.append(
        chain._kernel(
            f"blur: ratio {tag}",
            n * plane_bytes + len(members) * (x_bytes + lw * lh),
            f"lfx_blur_ratio_{lt}",
            grid2(lw, lh),
            BLOCK_2D,
            P(stack),
            *xargs,
            len(members),
            P(small),
            lw,
            lh,
        )
    )
    return ops, small


def blur_ops(chain: FrameChain, s: ChainSettings) -> tuple[list[Op], list[tuple[int, int, int]]]:
    """The masked blur of each plane at its pyramid level, as uint8 levels that the last
    kernel (lfx_finish) upsamples on the fly; with the ops, each plane's level (pointer,
    width, height).

    Planes whose levels have the same size, type and radius are blurred together: one
    launch writes x·share of each and the share, stacked; each box pass is one launch over
    the stack; one launch takes their ratios."""
    plans = chain.blur_plans(s)
    groups: dict[tuple[int, int, int, str], list[int]] = {}
    for i, (level, radius) in enumerate(plans):
        _, _, lw, lh, lt = chain.planes[i].level(level)
        groups.setdefault((lw, lh, radius, lt), []).append(i)
    levels: list[tuple[int, int, int]] = [(0, 0, 0)] * 3
    ops: list[Op] = []
    for group, members in groups.items():
        group_ops, small = _group_ops(chain, plans, group, members)
        ops += group_ops
        lw, lh, _, _ = group
        for slot, i in enumerate(members):
            levels[i] = (small + slot * lw * lh, lw, lh)
    if levels[1][1:] != levels[2][1:]:
        raise BackendError("U and V blurred at different levels")  # same plane size: never
    return ops, levels
