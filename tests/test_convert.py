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


@pytest.mark.parametrize("cpu_graph", [False, True], ids=["converted", "cpu-graph"])
@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_onnx_matches_mediapipe_runtime(name: str, cpu_graph: bool, mediapipe_fixtures) -> None:
    # The converter's graph, and the folded graph ONNX Runtime runs in its place.
    spec = SEGMENTERS[name]
    backend = OnnxRuntimeBackend(
        load_model(name), input_shape=(1, 3, spec.height, spec.width), cpu_graph=cpu_graph
    )
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


# -- the BlazePose landmark models (the body prior) ------------------------------------------------

POSE_CROPS = ("astronaut", "camera", "coffee", "chelsea", "astronaut_small", "astronaut_turned")


@pytest.fixture(scope="module")
def pose_fixtures() -> dict:
    from tests.conftest import FIXTURES

    with np.load(FIXTURES / "mediapipe_pose.npz") as f:
        return {k: f[k] for k in f.files}


def test_lite_body_conversion_reproduces_the_committed_onnx() -> None:
    from engine.models.build import convert_body
    from engine.models.registry import BODY_MODELS
    from tests.conftest import FIXTURES

    spec = BODY_MODELS["lite"]
    tflite = (FIXTURES / "tflite" / "pose_landmark_lite.tflite").read_bytes()
    assert convert_body(spec, tflite) == spec.path.read_bytes()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -80.0, 80.0)))


@pytest.mark.parametrize("name", ["lite", "full"])
def test_body_model_matches_mediapipe_runtime(name: str, pose_fixtures: dict) -> None:
    """Landmarks, presence and segmentation as MediaPipe's own graph outputs them (its
    TensorsToLandmarks / TensorsToFloats / TensorsToSegmentation calculators) on the same crops."""
    from engine.person.model import BodyModel

    model = BodyModel(name)
    worst = {"landmarks": 0.0, "flag": 0.0, "segmentation": 0.0}
    persons = 0
    for crop in POSE_CROPS:
        out = model.run_rgb(pose_fixtures[f"{crop}/input"])
        want_lm = pose_fixtures[f"{name}/{crop}/landmarks"]
        got_lm = np.concatenate(
            [out.landmarks[:, :3] / 256.0, _sigmoid(out.landmarks[:, 3:])], axis=1
        )
        worst["landmarks"] = max(worst["landmarks"], float(np.abs(got_lm - want_lm).max()))
        worst["flag"] = max(
            worst["flag"], abs(out.flag - float(pose_fixtures[f"{name}/{crop}/flag"]))
        )
        want_seg = pose_fixtures[f"{name}/{crop}/segmentation_u16"] / 65535.0
        seg = _sigmoid(out.segmentation)
        worst["segmentation"] = max(worst["segmentation"], float(np.abs(seg - want_seg).max()))
        persons += float(pose_fixtures[f"{name}/{crop}/flag"]) > 0.5
    assert persons >= 3  # the crops with the astronaut and the cameraman are found as persons
    assert max(worst.values()) <= 1e-3, worst
