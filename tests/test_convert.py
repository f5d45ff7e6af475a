"""The converted segmenters: reproducible, and equal to MediaPipe's own runtime."""

from __future__ import annotations

import numpy as np
import pytest

from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models.build import convert_spec
from engine.models.registry import SEGMENTERS, load_model
from tests.conftest import TFLITE

IMAGES = ("astronaut", "camera", "coffee", "chelsea")


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_conversion_reproduces_the_committed_onnx(name: str) -> None:
    spec = SEGMENTERS[name]
    converted = convert_spec(spec, TFLITE[name].read_bytes())
    assert converted == spec.path.read_bytes()


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_onnx_matches_mediapipe_runtime(name: str, mediapipe_fixtures: dict) -> None:
    spec = SEGMENTERS[name]
    backend = OnnxRuntimeBackend(load_model(name), input_shape=(1, 3, spec.height, spec.width))
    worst = 0.0
    for image in IMAGES:
        rgb = mediapipe_fixtures[f"{name}/{image}/input"]
        want = mediapipe_fixtures[f"{name}/{image}/mask"]
        assert rgb.shape == (spec.height, spec.width, 3)
        backend.input[0] = rgb.transpose(2, 0, 1) / np.float32(255.0)
        got = backend.run()[0, 0]
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
        # The masks are not trivial: both classes are present.
        assert want.min() < 0.1 and want.max() > 0.9
    assert worst <= 1e-3, f"max |onnx - mediapipe| = {worst}"


def test_batch_dimension_is_dynamic(mediapipe_fixtures: dict) -> None:
    spec = SEGMENTERS["general"]
    batch = np.stack(
        [mediapipe_fixtures[f"general/{i}/input"].transpose(2, 0, 1) for i in IMAGES[:3]]
    ).astype(np.float32) / np.float32(255.0)
    many = OnnxRuntimeBackend(load_model("general"), input_shape=(3, 3, spec.height, spec.width))
    one = OnnxRuntimeBackend(load_model("general"), input_shape=(1, 3, spec.height, spec.width))
    many.input[...] = batch
    together = many.run().copy()
    assert together.shape == (3, 1, spec.height, spec.width)
    for k in range(3):
        one.input[0] = batch[k]
        np.testing.assert_allclose(together[k], one.run()[0], atol=1e-5)
