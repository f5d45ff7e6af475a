"""The ops before the model: the upload, the planes' halvings (as deep as the model and the blur
need), and the preprocess that writes the model input and the luma guide in one launch (and, for
ONNX Runtime, the model input's download).

Functions of a ``FrameChain`` (``engine.gpu.chain``), which captures their ops as one graph per
pyramid depth.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.gpu.launch import BLOCK_2D, Op, P, grid2

if TYPE_CHECKING:
    from engine.gpu.chain import ChainSettings, FrameChain, PlaneLevels


def ensure_levels(chain: FrameChain, planes: list[PlaneLevels], k: int) -> None:
    """Float levels 1..k of ``planes`` (all of one size: U and V), each level's planes
    in one allocation, one after the other, so that one launch halves them all."""
    while len(planes[0].levels) < k:
        _, _, w, h, _ = planes[0].level(len(planes[0].levels))
        size = (w // 2) * (h // 2) * 4
        base = chain._bufs.alloc(size * len(planes))
        for i, p in enumerate(planes):
            p.levels.append((base + i * size, w // 2, h // 2))


def halve_ops(chain: FrameChain, planes: list[PlaneLevels], k: int, tag: str) -> list[Op]:
    """Levels 1..k of ``planes`` (Y alone, or U and V together: one launch per level)."""
    ensure_levels(chain, planes, k)
    ops = []
    z = len(planes)
    for level in range(1, k + 1):
        sp, ss, sw, sh, st = planes[0].level(level - 1)
        dp, _, dw, dh, _ = planes[0].level(level)
        src_plane = (planes[-1].level(level - 1)[0] - sp) // (1 if st == "u8" else 4)
        dst_plane = dw * dh
        nbytes = z * (sw * sh * (1 if st == "u8" else 4) + dw * dh * 4)
        ops.append(
            chain._kernel(
                f"halve {tag} → {dw}×{dh}",
                nbytes,
                f"lfx_halve_{st}",
                grid2(dw, dh, z),
                BLOCK_2D,
                P(sp),
                ss,
                src_plane,
                P(dp),
                dw,
                dh,
                dst_plane,
            )
        )
    return ops


def depths(chain: FrameChain, settings: ChainSettings) -> tuple[int, int]:
    """How many halvings of Y and of U/V a frame needs: the model's, and the blur's level
    (worked out once per setting: this is asked every frame)."""
    found = chain._depths.get(settings)
    if found is None:
        dy, duv = chain.k_model[0], chain.k_model[1]
        if settings.background == "blur":
            (ly, _), (lu, _), (lv, _) = chain.blur_plans(settings)
            dy, duv = max(dy, ly), max(duv, lu, lv)
        if settings.gan is not None:
            from engine.gpu.gan import halvings

            gy, guv = halvings(chain, settings.gan[:2])
            if settings.background == "gan":  # no segmenter: the generator's depth alone
                dy, duv = gy, guv
            dy, duv = max(dy, gy), max(duv, guv)
        found = chain._depths[settings] = (dy, duv)
    return found


def preprocess_op(chain: FrameChain) -> Op:
    """Planes at the model's level → the model input (NCHW RGB, the model's type) and the luma
    guide at the mask's size, one launch."""
    mw, mh = chain.mask_w, chain.mask_h
    yp, ys, yw, yh, yt = chain.planes[0].level(chain.k_model[0])
    up, cs, cw, ch, ct = chain.planes[1].level(chain.k_model[1])
    vp, _, _, _, _ = chain.planes[2].level(chain.k_model[1])
    name = f"lfx_preprocess_{yt}{ct}_{chain.model_dtype}"
    in_bytes = yw * yh * (1 if yt == "u8" else 4) + 2 * cw * ch * (1 if ct == "u8" else 4)
    return chain._kernel(
        "preprocess + luma guide",
        in_bytes + chain.model_nbytes + mw * mh,
        name,
        grid2(mw, mh),
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
        P(chain.d_model_in),
        P(chain.d_luma),
        mw,
        mh,
    )


def pre_ops(chain: FrameChain, settings: ChainSettings) -> list[Op]:
    """Upload, halvings (as deep as ``settings`` need), preprocess with the luma guide (and
    the model input's download for ONNX Runtime)."""
    ops = [
        Op(
            "upload (host → device)",
            chain.frame_bytes,
            lambda: chain._copy_h2d(chain.d_in, chain.host_in.ptr, chain.frame_bytes),
        )
    ]
    if settings.background == "video":  # this frame's background, filled by the caller
        assert chain._video is not None and chain._still is not None
        video, still = chain._video, chain._still
        ops.append(
            Op(
                "background (host → device)",
                chain.frame_bytes,
                lambda: chain._copy_h2d(still, video.ptr, chain.frame_bytes),
            )
        )
    dy, duv = chain.depths(settings)
    ops += halve_ops(chain, chain.planes[:1], dy, "Y")
    ops += halve_ops(chain, chain.planes[1:], duv, "U+V")
    if settings.background == "gan":  # the generator alone: no segmenter input
        return ops
    ops.append(preprocess_op(chain))
    if chain.ort:
        ops.append(
            Op(
                "model input (device → host)",
                chain.model_nbytes,
                lambda: chain._copy_d2h(
                    chain.model_input.ptr, chain.d_model_in, chain.model_nbytes
                ),
            )
        )
    return ops
