"""The segmenters' CPU graphs (engine/models/fold.py) and the ONNX Runtime session LiveFX builds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engine import samples
from engine.errors import ModelError
from engine.inference.onnxruntime import OnnxRuntimeBackend, cpu_session
from engine.models import registry
from engine.models.registry import SEGMENTERS, load_cpu_graph, load_model
from tests.conftest import damaged_shipped_file

pytest.importorskip("onnx")


def held_out_inputs(name: str) -> np.ndarray:
    """Model inputs of other people and backgrounds than the usual test clip's: the cameraman
    photo through a panning camera, the astronaut photo with its own background, and the cut-out
    over ``hubble`` with a cat in front of her."""
    spec = SEGMENTERS[name]
    w, h = (1280, 720) if name == "landscape" else (960, 720)
    frames = samples.camera_frames(samples.sample_rgb("cameraman"), w, h, 3)
    frames += samples.camera_frames(samples.sample_rgb("astronaut"), w, h, 2)
    frames += samples.scene_clip("cat-front", w, h, 3, background="hubble", keep_rgb=True).rgb
    small = [cv2.resize(f, (spec.width, spec.height), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack([s.transpose(2, 0, 1) for s in small]).astype(np.float32) / 255.0


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_cpu_graph_is_the_converted_graph_folded(name: str) -> None:
    from engine.models.fold import fold_for_cpu

    folded = fold_for_cpu(load_model(name))
    assert folded == load_cpu_graph(name)  # the committed file, byte for byte


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_cpu_graph_gives_the_converted_graphs_masks(name: str) -> None:
    spec = SEGMENTERS[name]
    shape = (1, 3, spec.height, spec.width)
    folded = OnnxRuntimeBackend(load_model(name), input_shape=shape)
    converted = OnnxRuntimeBackend(load_model(name), input_shape=shape, cpu_graph=False)
    for x in held_out_inputs(name):
        folded.input[0] = converted.input[0] = x
        a, b = folded.run(), converted.run()
        assert np.abs(a - b).max() < 1e-3  # the conversion's own bound against MediaPipe
        fa, fb = a > 0.5, b > 0.5
        assert (fa & fb).sum() >= 0.999 * (fa | fb).sum()


def folded_from(b: OnnxRuntimeBackend) -> str | None:
    return b.session.get_modelmeta().custom_metadata_map.get("folded_from_sha256")


def test_the_backend_runs_the_cpu_graph_for_shipped_segmenters_at_batch_1() -> None:
    spec = SEGMENTERS["landscape"]
    shape = (1, 3, spec.height, spec.width)
    assert folded_from(OnnxRuntimeBackend(load_model("landscape"), input_shape=shape)) == (
        spec.sha256
    )
    assert folded_from(OnnxRuntimeBackend(load_model("landscape"))) == spec.sha256
    unfolded = OnnxRuntimeBackend(load_model("landscape"), input_shape=shape, cpu_graph=False)
    assert folded_from(unfolded) is None
    # The CPU graph is batch 1; another batch runs the converted graph.
    batch2 = OnnxRuntimeBackend(load_model("landscape"), input_shape=(2, *shape[1:]))
    assert folded_from(batch2) is None and batch2.output.shape == (2, 1, 144, 256)
    # Any other model runs as given.
    assert registry.onnxruntime_graph(b"not a shipped model") == b"not a shipped model"


def reorders(model: bytes, tmp_path: Path) -> int:
    """Layout conversions in the graph ONNX Runtime optimises ``model`` to (0 without NCHWc)."""
    import onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    path = tmp_path / "optimised.onnx"
    opts.optimized_model_filepath = str(path)
    ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return sum(n.op_type.startswith("Reorder") for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_cpu_graph_stays_in_the_nchwc_layout(name: str, tmp_path: Path) -> None:
    folded, converted = (
        reorders(load_cpu_graph(name), tmp_path),
        reorders(load_model(name), tmp_path),
    )
    assert folded <= 4 and folded <= converted


def test_a_damaged_cpu_graph_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SEGMENTERS["landscape"]
    converted = load_model("landscape")
    with (
        damaged_shipped_file(spec.cpu_path, tmp_path, monkeypatch, registry.load_cpu_graph),
        pytest.raises(ModelError, match="damaged or replaced"),
    ):
        OnnxRuntimeBackend(converted, input_shape=(1, 3, 144, 256))


def test_session_options_are_applied() -> None:
    session = cpu_session(load_cpu_graph("general"), 2)
    opts = session.get_session_options()
    assert opts.intra_op_num_threads == 2 and opts.inter_op_num_threads == 1
    assert opts.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert opts.get_session_config_entry("session.set_denormal_as_zero") == "1"
