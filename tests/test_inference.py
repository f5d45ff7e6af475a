"""The ONNX Runtime backend, the model registry and the refusal of wrong models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from engine.config import ModelConfig
from engine.errors import BackendError, ConfigError, ModelError
from engine.inference import InferenceBackend, create_backend
from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models import registry
from engine.models.registry import choose_segmenter, load_model
from tests.conftest import damaged_shipped_file


def tiny_model(inputs: int = 1, dtype: int = TensorProto.FLOAT, dims=("N", 3, 8, 8)) -> bytes:
    ins = [helper.make_tensor_value_info(f"x{i}", dtype, list(dims)) for i in range(inputs)]
    out = helper.make_tensor_value_info("y", dtype, list(dims))
    op = "Sum" if inputs > 1 else ("Relu" if dtype == TensorProto.FLOAT else "Identity")
    node = helper.make_node(op, [f"x{i}" for i in range(inputs)], ["y"])
    graph = helper.make_graph([node], "tiny", ins, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_backend_reuses_its_buffers() -> None:
    b = create_backend("onnxruntime", tiny_model(), threads=1)
    assert isinstance(b, InferenceBackend)
    assert b.input.shape == (1, 3, 8, 8)
    b.input[...] = -1.0
    b.input[0, 0, 0, 0] = 5.0
    first = b.run()
    assert first is b.output and first[0, 0, 0, 0] == 5.0 and first.sum() == 5.0
    b.input[0, 0, 0, 0] = 7.0
    assert b.run() is first and first[0, 0, 0, 0] == 7.0


def test_dynamic_spatial_size_needs_a_shape() -> None:
    model = tiny_model(dims=("N", 3, "H", "W"))
    with pytest.raises(ModelError, match="dynamic; give the size"):
        OnnxRuntimeBackend(model)
    b = OnnxRuntimeBackend(model, input_shape=(1, 3, 20, 30))
    assert b.output.shape == (1, 3, 20, 30)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (b"this is not an onnx model", "ONNX Runtime cannot load the model"),
        (tiny_model(inputs=2), "one input and one output, got 2 inputs"),
        (tiny_model(dtype=TensorProto.INT64), "is tensor\\(int64\\), expected tensor\\(float\\)"),
    ],
)
def test_wrong_models_are_refused_clearly(model: bytes, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        OnnxRuntimeBackend(model)


def test_fixed_shape_mismatch_is_refused() -> None:
    with pytest.raises(ModelError, match="fixes shape"):
        OnnxRuntimeBackend(load_model("general"), input_shape=(1, 3, 144, 256))


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(BackendError, match="unknown inference backend 'tpu'"):
        create_backend("tpu", tiny_model())


@pytest.mark.parametrize(
    ("w", "h", "expect"),
    [(1280, 720, "landscape"), (1920, 1080, "landscape"), (640, 480, "general"),
     (480, 640, "general"), (512, 512, "general"), (960, 640, "landscape")],
)  # fmt: skip
def test_auto_picks_the_model_by_aspect_ratio(w: int, h: int, expect: str) -> None:
    assert choose_segmenter(w, h).name == expect


def test_selection_and_threshold_are_configurable() -> None:
    assert choose_segmenter(1280, 720, "general").name == "general"
    assert choose_segmenter(640, 480, "auto", landscape_min_aspect=1.3).name == "landscape"
    with pytest.raises(ConfigError, match="unknown segmentation model 'tiny'"):
        choose_segmenter(640, 480, "tiny")
    with pytest.raises(ConfigError, match="segmenter"):
        ModelConfig(segmenter="tiny")


def test_a_damaged_model_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = registry.SEGMENTERS["general"].path
    with (
        damaged_shipped_file(path, tmp_path, monkeypatch, registry.load_model),
        pytest.raises(ModelError, match="damaged or replaced"),
    ):
        load_model("general")


def test_shipped_models_load_and_segment_a_person(astronaut_rgb: np.ndarray) -> None:
    import cv2

    b = OnnxRuntimeBackend(load_model("general"), input_shape=(1, 3, 256, 256))
    small = cv2.resize(astronaut_rgb, (256, 256), interpolation=cv2.INTER_AREA)
    b.input[0] = small.transpose(2, 0, 1) / np.float32(255.0)
    mask = b.run()[0, 0]
    # Eileen Collins' face (centre-top) is person; the flag's corner (top-left) is not.
    assert mask[20:60, 110:150].mean() > 0.9
    assert mask[0:30, 0:30].mean() < 0.1
