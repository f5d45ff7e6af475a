"""The TensorRT backend: its engine cache everywhere; the engines themselves only where TensorRT
and an NVIDIA GPU are present (skipped elsewhere, with the reason)."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np
import pytest

from engine.errors import BackendError
from engine.inference import create_backend
from engine.inference.engine_cache import MAGIC, EngineCache, EngineKey
from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models.registry import load_model

KEY = EngineKey("ab" * 32, "NVIDIA H100 80GB HBM3", "tensorrt 10.7.0", "fp16 batch 1-8 3x256x256")


def test_engine_cache_round_trip(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.load(KEY) is None
    path = cache.store(KEY, b"engine bytes")
    assert path.read_bytes().startswith(MAGIC)
    assert cache.load(KEY) == b"engine bytes"
    assert "NVIDIA-H100" in path.name and "tensorrt-10.7.0" in path.name
    assert not list(tmp_path.glob(".tmp-*"))  # the temporary file was renamed away


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:-3], "is truncated"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "is corrupt"),
        (lambda b: b"garbage" + b, "is not a LiveFX engine file"),
        (lambda b: MAGIC + b"{not json\n" + b"x", "damaged header"),
        (lambda b: MAGIC, "has no header"),
    ],
)
def test_a_damaged_cache_file_is_rebuilt_not_trusted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, reason: str
) -> None:
    cache = EngineCache(tmp_path)
    path = cache.store(KEY, b"engine bytes" * 10)
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert cache.load(KEY) is None
    assert reason in caplog.text and "rebuilding" in caplog.text


def test_another_gpu_or_runtime_does_not_share_an_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    cache.store(KEY, b"engine bytes")
    for other in (
        EngineKey(KEY.model_sha256, "NVIDIA L4", KEY.runtime, KEY.settings),
        EngineKey(KEY.model_sha256, KEY.device, "tensorrt 10.8.0", KEY.settings),
        EngineKey("cd" * 32, KEY.device, KEY.runtime, KEY.settings),
    ):
        assert cache.path(other) != cache.path(KEY)
        assert cache.load(other) is None
    # A file renamed to another key's name is caught by its header.
    cache.path(KEY).rename(cache.path(other))
    with caplog.at_level(logging.WARNING):
        assert cache.load(other) is None
    assert "built for another model, GPU or runtime" in caplog.text


def test_cache_folder_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEFX_ENGINE_CACHE", str(tmp_path / "engines"))
    assert EngineCache().folder == tmp_path / "engines"


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_without_tensorrt_the_backend_says_so_in_one_line() -> None:
    with pytest.raises(BackendError, match=r"(TensorRT|cuda-python) is not installed") as err:
        create_backend("tensorrt", load_model("general"), input_shape=(1, 3, 256, 256))
    assert "\n" not in str(err.value)


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (it cannot be on LiveFX's development machines)"
    try:
        from engine.gpu.driver import Device

        Device()
    except BackendError as exc:
        return f"no usable NVIDIA GPU: {exc}"
    return None


needs_gpu = pytest.mark.skipif(_gpu_reason() is not None, reason=str(_gpu_reason()))


@pytest.mark.gpu
@needs_gpu
def test_tensorrt_segmenter_matches_onnxruntime(tmp_path: Path) -> None:
    from engine.inference.tensorrt import TensorRTBackend

    rng = np.random.default_rng(0)
    model = load_model("general")
    trt_b = TensorRTBackend(model, input_shape=(2, 3, 256, 256), cache=EngineCache(tmp_path))
    ort_b = OnnxRuntimeBackend(model, input_shape=(2, 3, 256, 256))
    x = rng.random((2, 3, 256, 256), dtype=np.float32)
    trt_b.input[...] = x
    ort_b.input[...] = x
    trt_b.output[...] = np.nan  # poisoned: an unwritten element fails
    got, want = trt_b.run().copy(), ort_b.run()
    rel = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    assert np.isfinite(got).all() and rel < 1e-2  # fp16 engine
    # The second backend for the same model and GPU loads the cached engine.
    files = list(tmp_path.glob("*.engine"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = TensorRTBackend(model, input_shape=(2, 3, 256, 256), cache=EngineCache(tmp_path))
    again.input[...] = x
    assert np.allclose(again.run(), got, atol=1e-3)
    assert files[0].stat().st_mtime_ns == mtime
    # A corrupt cache file is rebuilt.
    files[0].write_bytes(files[0].read_bytes()[:-10])
    rebuilt = TensorRTBackend(model, input_shape=(2, 3, 256, 256), cache=EngineCache(tmp_path))
    rebuilt.input[...] = x
    assert np.allclose(rebuilt.run(), got, atol=1e-3)
