"""The frame's gate (kernels/pixel.cuh's frame_gate, the lfx_gate kernel's math) on the host
build, against the cpu pipeline's static-frame and scene-cut rules (engine/pipeline/
pipeline.py). No GPU needed."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from engine.pipeline.pipeline import SCENE_CUT_LUMA_DELTA, STATIC_LUMA_DELTA

U8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
I32 = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")


@pytest.fixture(scope="module")
def gate(net_lib: ctypes.CDLL):  # type: ignore[no-untyped-def]
    fn = net_lib.lfx_gate
    fn.argtypes = [U8, U8, ctypes.c_int, I32, ctypes.c_float, ctypes.c_float, I32, I32]
    fn.restype = ctypes.c_int
    return fn


@pytest.mark.parametrize(
    ("change", "has_mask", "reuse", "skip_static", "run", "scene"),
    [
        (0.0, 0, 0, 0, 1, 0),  # no mask yet: run
        (0.0, 1, 0, 0, 1, 0),  # full quality: run every frame
        (1.0, 1, 0, 1, 0, 0),  # barely changed, skip-static: reuse
        (3.0, 1, 0, 1, 1, 0),  # changed: run
        (3.0, 1, 1, 1, 0, 0),  # infer_every allows reuse
        (60.0, 1, 1, 1, 1, 1),  # a new scene: run, cut
        (60.0, 0, 0, 0, 1, 0),  # no mask: no cut to make
    ],
)
def test_gate_follows_the_cpu_rules(  # type: ignore[no-untyped-def]
    gate, change: float, has_mask: int, reuse: int, skip_static: int, run: int, scene: int
) -> None:
    rng = np.random.default_rng(0)
    last = rng.integers(70, 180, 256 * 144).astype(np.uint8)
    luma = last.copy()
    k = round(change)  # every pixel moved by ``change`` code values
    luma = (luma.astype(int) + k).astype(np.uint8)
    flags = np.array([has_mask, reuse, skip_static, 0], np.int32)
    out = np.zeros(4, np.int32)
    first = np.zeros(1, np.int32)
    before = last.copy()
    got = gate(luma, last, luma.size, flags, STATIC_LUMA_DELTA, SCENE_CUT_LUMA_DELTA, out, first)
    assert (got, out[0], out[1]) == (run, run, scene)
    assert out[2:3].view(np.float32)[0] == pytest.approx(k)
    assert first[0] == scene  # a cut restarts the smoothing
    assert np.array_equal(last, luma if run else before)  # the reference moves when it runs
