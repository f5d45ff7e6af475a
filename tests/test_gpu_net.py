"""The net engine on a GPU: each kernel against its host build, each shipped model against
ONNX Runtime with the arena poisoned before every run, the same bits from run to run and
across batch sizes 1, 4 and 16. Skipped, with the reason, where there is no GPU path."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from engine.inference.net import load_net
from engine.inference.net.host import HostNet
from engine.models.registry import load_body_model, load_generator, load_model
from engine.pipeline.backend import gpu_status
from tests import test_net_ops as ops_cases
from tests.test_net_host import frames

STATUS = gpu_status()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(STATUS.missing is not None, reason=f"no GPU path here: {STATUS.missing}"),
]
POISONS = (0x00, 0xFF)  # 0xFFFFFFFF is a NaN


@pytest.fixture(scope="module")
def gpu() -> Any:
    from engine.gpu.module import Gpu

    return Gpu.shared()


@pytest.fixture(scope="module")
def stream(gpu: Any) -> Any:
    from engine.gpu import driver as cd

    s = cd.Stream()
    yield s
    s.close()


def on_gpu(
    gpu: Any, stream: Any, model: bytes, x: np.ndarray, poison: int
) -> dict[str, np.ndarray]:
    from engine.gpu.net import DeviceNet

    net = DeviceNet(gpu, load_net(model, "m").plan(tuple(x.shape)))
    try:
        net.poison(poison)
        return net.run(x, stream)
    finally:
        net.close()


def shipped() -> list[tuple[str, bytes, tuple[int, int]]]:
    return [
        ("general", load_model("general"), (256, 256)),
        ("landscape", load_model("landscape"), (144, 256)),
        ("cartoon", load_generator("cartoon")[0], (180, 320)),
        ("enhance", load_generator("enhance")[0], (180, 320)),
        ("pose_lite", load_body_model("lite"), (256, 256)),
    ]


@pytest.mark.parametrize("case", sorted(ops_cases.CASES))
def test_kernels_match_their_host_build(gpu: Any, stream: Any, net_lib: Any, case: str) -> None:
    """The op cases of tests/test_net_ops.py, on the GPU against the host build of the same
    per-element code (fp16 weights both sides; the GPU may fuse a multiply-add)."""
    g, outputs, _ = ops_cases.CASES[case]()
    model = g.model(outputs)
    x = np.random.default_rng(1).uniform(0, 1, g.shape).astype(np.float32)
    host = HostNet(load_net(model, "t").plan(g.shape), net_lib).run(x)
    for poison in POISONS:
        dev = on_gpu(gpu, stream, model, x, poison)
        for name in outputs:
            scale = max(1.0, float(np.abs(host[name]).max()))
            assert np.isfinite(dev[name]).all(), f"{name}: an element no thread wrote"
            assert np.abs(dev[name] - host[name]).max() <= 1e-4 * scale, name


@pytest.mark.parametrize("index", range(5))
def test_shipped_models_match_onnxruntime(gpu: Any, stream: Any, index: int) -> None:
    name, model, (h, w) = shipped()[index]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    for label, x in frames("general", h, w)[:3]:
        want = sess.run(None, {inp: x})
        for poison in POISONS:
            got = on_gpu(gpu, stream, model, x, poison)
            for out_name, ref in zip([o.name for o in sess.get_outputs()], want, strict=True):
                out = got[out_name]
                assert np.isfinite(out).all(), f"{name} {label}: an element no thread wrote"
                if name in ("general", "landscape"):
                    assert np.abs(out - ref).max() <= 2e-2
                    a, b = out >= 0.5, ref >= 0.5
                    union = int((a | b).sum())
                    assert union == 0 or (a & b).sum() / union >= 0.995
                elif name in ("cartoon", "enhance"):
                    assert np.mean(np.abs(out - ref) <= 2 / 255) >= 0.999
                elif out_name == "landmarks":
                    assert np.abs(out - ref).max() <= 0.05


def test_same_bits_run_to_run_and_across_batches(gpu: Any, stream: Any) -> None:
    from engine.gpu.net import DeviceNet

    model = load_model("landscape")
    net = load_net(model, "landscape")
    xs = [x for _, x in frames("landscape", 144, 256)]
    x16 = np.concatenate([xs[i % len(xs)] for i in range(16)])
    results = {}
    for batch in (1, 4, 16):
        dn = DeviceNet(gpu, net.plan((batch, 3, 144, 256)))
        first = dn.run(x16[:batch], stream)["mask"]
        again = dn.run(x16[:batch], stream)["mask"]
        assert np.array_equal(first, again), f"batch {batch}: results differ from run to run"
        results[batch] = first
        dn.close()
    for batch in (4, 16):
        assert np.array_equal(results[batch][:1], results[1]), f"batch {batch} vs batch 1"
    assert np.array_equal(results[16][:4], results[4])
