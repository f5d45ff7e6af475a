"""The benchmark's PyTorch peer (benchmarks/torch_peer.py) against ONNX Runtime, in fp32 on the
CPU: every shipped model, every op case of tests/test_net_ops.py, and every Resize mode. The GPU
benchmark times this very module in fp16 channels-last; this test is what makes its figures the
same computation as LiveFX's and ONNX Runtime's. Skipped where PyTorch is not installed (the
``train`` extra brings it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from benchmarks.torch_peer import fold, peer  # noqa: E402
from engine.models.registry import load_body_model, load_generator, load_model  # noqa: E402
from engine.samples import composited_clip  # noqa: E402

torch.set_num_threads(max(1, min(4, torch.get_num_threads())))


def pictures(n: int, h: int, w: int) -> np.ndarray:
    """``n`` frames of the composited clip (the astronaut over a photo), NCHW in [0, 1]."""
    clip = composited_clip(w, h, n + 1, keep_rgb=True, seed=3)
    rgb = np.stack(clip.rgb[1 : n + 1]).astype(np.float32) / 255.0
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


def both(model: bytes, name: str, x: np.ndarray, **kw: Any) -> tuple[list, list]:
    net = peer(fold(model, name, tuple(x.shape)), name=name, **kw)
    dtype = next((b.dtype for b in net.buffers() if b.is_floating_point()), torch.float32)
    t = torch.from_numpy(x).to(dtype)
    if kw.get("channels_last"):
        t = t.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = [o.float().numpy() for o in net(t)]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: x})
    return got, want


@pytest.mark.parametrize(
    ("name", "shape", "tol"),
    [
        ("general", (1, 3, 256, 256), 1e-4),
        ("landscape", (2, 3, 144, 256), 1e-4),
        ("cartoon", (1, 3, 72, 128), 1e-3),
        ("enhance", (1, 3, 72, 128), 1e-3),
        ("pose_lite", (1, 3, 256, 256), 1e-3),
    ],
)
def test_shipped_models_match_onnxruntime(name: str, shape: tuple[int, ...], tol: float) -> None:
    if name in ("general", "landscape"):
        model = load_model(name)
    elif name == "pose_lite":
        model = load_body_model("lite")
    else:
        model = load_generator(name)[0]
    x = pictures(shape[0], shape[2], shape[3])
    got, want = both(model, name, x)
    assert len(got) == len(want)
    for out, ref in zip(got, want, strict=True):
        assert out.shape == ref.shape
        scale = 1.0 if name != "pose_lite" else max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(out - ref).max())
        assert err <= tol * scale, f"{name}: max |torch - onnxruntime| {err:.3g}"


def _op_cases() -> dict[str, Any]:
    from tests import test_net_ops

    return dict(test_net_ops.CASES)


@pytest.mark.parametrize("case", sorted(_op_cases()))
def test_op_cases_match_onnxruntime(case: str) -> None:
    """Conv with groups, dilation, asymmetric and SAME pads; ConvTranspose with output_padding
    and groups; every activation; pooling with pads; DepthToSpace DCR and CRD; Pad's modes;
    Concat; elementwise with constants and per-channel gates."""
    g, outputs, _ = _op_cases()[case]()
    x = np.random.default_rng(1).uniform(0, 1, g.shape).astype(np.float32)
    got, want = both(g.model(outputs), case, x)
    for name, out, ref in zip(outputs, got, want, strict=True):
        assert out.shape == ref.shape, name
        scale = max(1.0, float(np.abs(ref).max()))
        assert float(np.abs(out - ref).max()) <= 1e-4 * scale, name


@pytest.mark.parametrize(
    "coord", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
)
def test_resize_modes_match_onnxruntime(coord: str) -> None:
    """Where F.interpolate computes ONNX's coordinates it is used, else the gathers: both
    within float rounding of ONNX Runtime."""
    from tests.test_net_ops import resize_graph

    g, outs = resize_graph(coord)
    x = np.random.default_rng(2).uniform(0, 1, g.shape).astype(np.float32)
    got, want = both(g.model(outs), "resize", x)
    for name, out, ref in zip(outs, got, want, strict=True):
        assert out.shape == ref.shape, name
        assert float(np.abs(out - ref).max()) <= 1e-5, name


def test_pads_pytorch_cannot_express() -> None:
    """Pools with asymmetric pads (count_include_pad 0 and 1, max) and a transposed conv with
    asymmetric pads: the padded and cropped paths."""
    from tests.test_net_ops import RNG, G

    g = G(c=3, h=9, w=10)
    pads = [0, 2, 1, 0]
    outs = [
        g.op("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=pads),
        g.op("AveragePool", ["x"], kernel_shape=[3, 3], pads=pads, count_include_pad=0),
        g.op("AveragePool", ["x"], kernel_shape=[2, 3], strides=[2, 1], pads=pads,
             count_include_pad=1),
        g.op("AveragePool", ["x"], kernel_shape=[3, 3], auto_pad="SAME_LOWER", strides=[2, 2]),
        g.op(
            "ConvTranspose",
            ["x", g.const(RNG.normal(0, 0.4, (3, 4, 3, 3)).astype(np.float32)),
             g.const(RNG.normal(0, 0.1, 4).astype(np.float32))],
            kernel_shape=[3, 3], strides=[2, 2], pads=[0, 1, 2, 1], output_padding=[1, 0],
        ),
    ]  # fmt: skip
    x = np.random.default_rng(3).uniform(-1, 1, g.shape).astype(np.float32)
    got, want = both(g.model(outs), "pads", x)
    for name, out, ref in zip(outs, got, want, strict=True):
        assert out.shape == ref.shape, name
        assert float(np.abs(out - ref).max()) <= 1e-5 * max(1.0, float(np.abs(ref).max())), name


def test_fp16_channels_last_is_the_same_net() -> None:
    """The benchmark's configuration (fp16 constants, NHWC weights and input) on the CPU: the
    same outputs within fp16's rounding."""
    x = pictures(1, 72, 128)
    try:
        got, want = both(load_generator("cartoon")[0], "cartoon", x, dtype=torch.float16,
                         channels_last=True)  # fmt: skip
    except (RuntimeError, NotImplementedError) as exc:  # an op without a CPU fp16 kernel
        pytest.skip(f"PyTorch's CPU build lacks an fp16 kernel here: {exc}")
    assert float(np.abs(got[0] - want[0]).max()) <= 2e-2


def test_an_op_the_planner_refuses_is_refused() -> None:
    from engine.errors import ModelError
    from tests.test_net_ops import G

    g = G()
    out = g.op("Softmax", ["x"], axis=1)
    with pytest.raises(ModelError, match="Softmax"):
        peer(fold(g.model([out]), "mine.onnx", g.shape))
