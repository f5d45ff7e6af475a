"""LiveFX's net engine (engine/inference/net) run through the host build of its kernels'
math (kernels/net.cuh via kernels/net_host.cpp) against ONNX Runtime. No GPU needed: this is
CI's proof that every shipped model runs right on LiveFX's kernels.

The arena is poisoned with NaN before every run, so an element no step writes shows. Inputs are
real photos (people, and a room with none) and frames of the composited clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from engine.inference.net import load_net
from engine.inference.net.host import HostNet
from engine.models.registry import load_body_model, load_generator, load_model
from engine.samples import composited_clip

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "mediapipe_masks.npz"


def frames(kind: str, h: int, w: int) -> list[tuple[str, np.ndarray]]:
    """NCHW float inputs in [0, 1]: the recorded MediaPipe inputs (people, a cat, a room) at
    the segmenters' sizes, else photos and clip frames resized to (h, w)."""
    import cv2

    out: list[tuple[str, np.ndarray]] = []
    data = np.load(FIXTURES)
    for key in data.files:
        if key.startswith(f"{kind}/") and key.endswith("/input"):
            img = data[key]
            if img.shape[:2] != (h, w):
                img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
            out.append((key.split("/")[1], img))
    clip = composited_clip(max(w, 64), max(h, 64), 3, keep_rgb=True, seed=3)
    for i, rgb in enumerate(clip.rgb[1:], 1):
        out.append((f"clip{i}", cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)))
    return [(n, (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()) for n, img in out]


def run_both(net_lib, model: bytes, name: str, x: np.ndarray) -> tuple[dict, list]:
    net = load_net(model, name)
    got = HostNet(net.plan(tuple(x.shape)), net_lib).run(x, poison=np.nan)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    want = sess.run(None, {net.graph.input: x})
    return got, want


@pytest.mark.parametrize(
    ("model", "kind", "size"),
    [("general", "general", (256, 256)), ("landscape", "landscape", (144, 256))],
)
def test_segmenters_match_onnxruntime(
    net_lib, model: str, kind: str, size: tuple[int, int]
) -> None:
    data = load_model(model)
    inputs = frames(kind, *size)
    assert len(inputs) >= 6
    for label, x in inputs:
        got, want = run_both(net_lib, data, model, x)
        m, ref = got["mask"], want[0]
        assert np.isfinite(m).all(), f"{label}: an element no step wrote"
        err = float(np.abs(m - ref).max())
        a, b = m >= 0.5, ref >= 0.5
        union = int((a | b).sum())
        iou = 1.0 if union == 0 else int((a & b).sum()) / union
        assert err <= 2e-2, f"{model} on {label}: max |mask - onnxruntime| {err:.3g}"
        assert iou >= 0.995, f"{model} on {label}: IoU at 0.5 {iou:.4f}"


@pytest.mark.parametrize("model", ["cartoon", "enhance"])
@pytest.mark.parametrize("size", [(180, 320), (132, 244)])
def test_generators_match_onnxruntime(net_lib, model: str, size: tuple[int, int]) -> None:
    data, _ = load_generator(model)
    for label, x in frames("general", *size)[:4]:
        got, want = run_both(net_lib, data, model, x)
        out, ref = got["output"], want[0]
        assert out.shape == ref.shape == x.shape
        assert np.isfinite(out).all(), f"{label}: an element no step wrote"
        within = float(np.mean(np.abs(out - ref) <= 2 / 255))
        assert within >= 0.999, f"{model} {size} on {label}: {within:.5f} of values within 2/255"


@pytest.mark.slow
@pytest.mark.parametrize("model", ["pose_landmark_lite", "pose_landmark_full"])
def test_body_models_match_onnxruntime(net_lib, model: str) -> None:
    data = load_body_model(model.removeprefix("pose_landmark_"))
    for label, x in frames("general", 256, 256)[:2]:
        got, want = run_both(net_lib, data, model, x)
        lm, flag, seg = (got[k] for k in ("landmarks", "pose_flag", "segmentation"))
        assert np.abs(lm - want[0]).max() <= 0.05, f"{label}: landmarks (pixels of 256)"
        assert np.abs(flag - want[1]).max() <= 1e-3, f"{label}: pose flag"
        sig = lambda v: 0.5 * (1 + np.tanh(v / 2))  # noqa: E731
        assert np.abs(sig(seg) - sig(want[2])).max() <= 2e-2, f"{label}: segmentation"


def test_batches_give_the_same_bits(net_lib) -> None:
    """Frames of several sessions in one launch: each sample's result is the one it gets alone."""
    data = load_model("landscape")
    net = load_net(data, "landscape")
    xs = np.concatenate([x for _, x in frames("landscape", 144, 256)[:4]])
    batched = HostNet(net.plan(xs.shape), net_lib).run(xs, poison=np.nan)["mask"]
    single = HostNet(net.plan((1, 3, 144, 256)), net_lib)
    for i in range(4):
        alone = single.run(xs[i : i + 1], poison=np.nan)["mask"]
        assert np.array_equal(alone[0], batched[i])


def test_plan_fuses_the_segmenter(net_lib) -> None:
    """136 ONNX nodes: conv + bias + activation (+ residual) one step, squeeze-and-excite one
    pooling and one gate step, the gated residual adds one step each."""
    net = load_net(load_model("general"), "seg")
    plan = net.plan((1, 3, 256, 256))
    kinds = [st.kernel for st in plan.steps]
    assert len(kinds) < 70
    assert kinds.count("lfx_net_se") == 10 and kinds.count("lfx_net_gap") == 10
    assert kinds[-1] == "lfx_net_convt" and "Sigmoid" in plan.steps[-1].what
    # buffers shared by live range: far less than every tensor apart
    total = sum(plan.size(st.y) for st in plan.steps)
    assert plan.arena_floats < total / 2


def test_weights_are_uploaded_as_fp16(net_lib) -> None:
    net = load_net(load_model("general"), "seg")
    plan = net.plan((1, 3, 256, 256))
    assert plan.w16.dtype == np.uint16
    assert 100_000 < plan.w16.size < 110_000  # every weight once (106 k parameters)
