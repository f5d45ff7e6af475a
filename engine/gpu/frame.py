"""The whole frame as one CUDA graph (``FrameChain.launch_frame``): its ops, the frame's gate,
and the GAN effect's frame.

    upload → halvings → preprocess → [the gate → the model's launches] → refine → background →
    composite → download [→ the gate's decision]

The gate (``lfx_gate``, kernels/livefx.cu) is the cpu pipeline's static-frame and scene-cut
test on the device: it opens or shuts the segmenter's launches (their gate word) and restarts
the temporal smoothing on a cut; the host's per-frame flags go up in the graph, its decision
comes down with the frame. Functions of a ``FrameChain`` (``engine.gpu.chain``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from engine.gpu import composite, gan
from engine.gpu.launch import Background, Op, P
from engine.gpu.refine import refine_ops

if TYPE_CHECKING:
    from engine.gpu.chain import ChainSettings, FrameChain


def frame_ops(
    chain: FrameChain, settings: ChainSettings, model: Callable[[], list[Op]] | None
) -> list[Op]:
    """The whole frame: upload → halvings → preprocess → [the model's launches] → refine →
    background → composite → download. ``model`` None: the mask of an earlier frame is
    used again (the budget's ``infer_every``). The ``none`` effect: upload → download."""
    if settings.background == "none":
        n = chain.frame_bytes
        return [
            Op(
                "upload (host → device)",
                n,
                lambda: chain._copy_h2d(chain.d_in, chain.host_in.ptr, n),
            ),
            Op(
                "download (device → host)",
                n,
                lambda: chain._copy_d2h(chain.host_out.ptr, chain.d_in, n),
            ),
        ]
    if settings.gan is not None:
        return gan_frame_ops(chain, settings, model)
    ops = chain.pre_ops(settings) + model_ops(chain, model) + chain.post_ops(settings)
    return ops + gate_download(chain, model)


def model_ops(chain: FrameChain, model: Callable[[], list[Op]] | None) -> list[Op]:
    """[The gate →] the model's launches (none: the mask of an earlier frame again)."""
    if model is None:
        return []
    return (gate_ops(chain) if chain.gate is not None else []) + model()


def gate_ops(chain: FrameChain) -> list[Op]:
    """The host's flags up, and the gate: does the model run on this frame (its launches
    do nothing where not), is it a new scene (the smoothing starts again)."""
    from engine.pipeline.pipeline import SCENE_CUT_LUMA_DELTA, STATIC_LUMA_DELTA

    assert chain.gate is not None
    n = chain.mask_w * chain.mask_h
    flags, d_flags = chain.flags, chain.d_flags
    return [
        Op("flags (host → device)", 16, lambda: chain._copy_h2d(d_flags, flags.ptr, 16)),
        chain._kernel(
            "gate: static frame, scene cut",
            3 * n + 32,
            "lfx_gate",
            (1, 1, 1),
            (256, 1, 1),
            P(chain.d_luma),
            P(chain.d_last_luma),
            n,
            P(chain.d_flags),
            float(STATIC_LUMA_DELTA),
            float(SCENE_CUT_LUMA_DELTA),
            P(chain.gate),
            P(chain.d_first),
        ),
    ]


def gate_download(chain: FrameChain, model: Callable[[], list[Op]] | None) -> list[Op]:
    """The gate's decision back to the host with the frame (where a gate ran)."""
    gate = chain.gate
    if model is None or gate is None:
        return []
    out = chain.gate_result
    return [Op("gate (device → host)", 12, lambda: chain._copy_d2h(out.ptr, gate, 12))]


def gate_decision(chain: FrameChain) -> tuple[bool, bool, float]:
    """After the frame: (the model ran, a scene cut, the luma's change). A scene cut set the
    device's first-frame flag: the next frame's launch clears it."""
    run, scene = bool(chain.gate_result.array[0]), bool(chain.gate_result.array[1])
    delta = float(chain.gate_result.array[2:3].view(np.float32)[0])
    if scene:
        chain._first, chain._first_set = False, True
    return run, scene, delta


def gan_frame_ops(
    chain: FrameChain, s: ChainSettings, model: Callable[[], list[Op]] | None
) -> list[Op]:
    """upload → halvings → [the segmenter, refine] → the generator and its way back to
    full size (``engine.gpu.gan``) → [the styled frame over the frame, with the matte] →
    download."""
    ops = chain.pre_ops(s)
    if s.background == "gan_person":
        ops += model_ops(chain, model) + refine_ops(chain, s)
        styled = chain.scratch("gan frame", chain.frame_bytes)
        ops += gan.gan_ops(chain, s, styled)
        o = chain.plane_offsets()
        bg = Background(1, 0, 0, 0, P(chain.d_in), P(chain.d_in + o[1]), P(chain.d_in + o[2]))
        ops.append(composite.finish_op(chain, s, bg, chain.frame_bytes, fg=styled))
    else:
        ops += gan.gan_ops(chain, s, chain.d_out)
    ops.append(composite.download_op(chain))
    return ops + gate_download(chain, model)
