"""Backend choice (auto | cpu | cuda): what is picked, why, and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import PipelineConfig
from engine.errors import BackendError, ConfigError
from engine.pipeline import Pipeline, choose_backend, make_pipeline
from engine.pipeline.backend import GpuStatus, gpu_status
from tests.conftest import ROOT, run_cli

NO_GPU = GpuStatus(missing="no NVIDIA driver: libcuda.so not found")
GPU_ONLY = GpuStatus(missing=None, gpu="NVIDIA H100", kernels="prebuilt livefx.fatbin")
GPU_TRT = GpuStatus(
    missing=None, gpu="NVIDIA H100", kernels="prebuilt livefx.fatbin", tensorrt="10.13"
)


def test_cpu_is_always_cpu() -> None:
    assert choose_backend("cpu", "gan", GPU_TRT).name == "cpu"


def test_auto_picks_cuda_with_a_gpu_and_the_kernels() -> None:
    c = choose_backend("auto", "blur", NO_GPU)
    assert c.name == "cpu" and "libcuda.so not found" in c.reason
    c = choose_backend("auto", "blur", GPU_ONLY)  # TensorRT is no longer needed
    assert c.name == "cuda" and c.model_runtime == "kernels" and not c.tensorrt
    assert "NVIDIA H100" in c.reason and "LiveFX's kernels" in c.reason
    c = choose_backend("auto", "mask", GPU_ONLY)
    assert c.name == "cuda"
    c = choose_backend("auto", "blur", GPU_ONLY, runtime="tensorrt")
    assert c.name == "cpu" and "TensorRT is not installed" in c.reason
    c = choose_backend("auto", "blur", GPU_TRT, runtime="tensorrt")
    assert c.name == "cuda" and c.tensorrt and "TensorRT 10.13" in c.reason
    no_onnx = GpuStatus(missing=None, gpu="NVIDIA H100", kernels="NVRTC", net="no onnx")
    c = choose_backend("auto", "blur", no_onnx)
    assert c.name == "cpu" and "no onnx" in c.reason


def test_cuda_runs_the_models_on_the_runtime_asked_for() -> None:
    c = choose_backend("cuda", "replace", GPU_ONLY, runtime="onnxruntime")
    assert c.name == "cuda" and not c.tensorrt and "ONNX Runtime" in c.reason
    c = choose_backend("cuda", "replace", GPU_ONLY)
    assert c.model_runtime == "kernels"
    with pytest.raises(BackendError, match=r"^backend cuda: TensorRT is not installed"):
        choose_backend("cuda", "blur", GPU_ONLY, runtime="tensorrt")
    with pytest.raises(ConfigError, match="model_runtime: 'cudnn' is not one of"):
        choose_backend("cuda", "blur", GPU_ONLY, runtime="cudnn")
    with pytest.raises(ConfigError, match="model_runtime"):
        PipelineConfig(model_runtime="cudnn")


def test_cuda_where_it_cannot_run_is_one_line() -> None:
    with pytest.raises(BackendError, match=r"^backend cuda: no NVIDIA driver") as e:
        choose_backend("cuda", "blur", NO_GPU)
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="effect 'sepia' has no GPU path"):
        choose_backend("cuda", "sepia", GPU_TRT)
    with pytest.raises(ConfigError, match="backend: 'gpu' is not one of"):
        choose_backend("gpu", "blur", GPU_TRT)
    with pytest.raises(ConfigError, match="backend"):
        PipelineConfig(backend="gpu")


needs_no_gpu = pytest.mark.skipif(
    gpu_status().missing is None, reason="this machine has a GPU path"
)


@needs_no_gpu
def test_make_pipeline_falls_back_to_cpu_and_says_why() -> None:
    p = make_pipeline(PipelineConfig())
    assert type(p) is Pipeline and p.backend_name == "cpu"
    assert p.backend_reason.startswith("no GPU path: ")
    assert p.stats()["backend"] == "cpu"


@needs_no_gpu
def test_cli_backend_choice(tmp_path: Path) -> None:
    photo = str(ROOT / "samples" / "astronaut.jpg")
    r = run_cli("process", photo, str(tmp_path / "a.jpg"), "--backend", "cuda")
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("livefx: error: backend cuda: ")
    assert not (tmp_path / "a.jpg").exists()
    r = run_cli("process", photo, str(tmp_path / "b.jpg"))
    assert r.returncode == 0, r.stderr
    assert "backend cpu (no GPU path: " in r.stdout + r.stderr


def test_every_effect_has_a_gpu_path_as_configured(tmp_path: Path) -> None:
    """gan runs its generator on the net kernels: a user's generator with a layer they do not
    run, or another model runtime, is refused for the GPU with the reason (auto then picks the
    cpu backend, which runs it)."""
    from engine.config import EffectConfig
    from engine.pipeline.backend import GPU_EFFECTS
    from engine.pipeline.cuda_pipeline import check_gpu_effect
    from tests.test_net_ops import G

    for effect in ("blur", "replace", "colour", "mask", "none", "gan"):
        assert effect in GPU_EFFECTS
        check_gpu_effect(PipelineConfig(effect=EffectConfig(name=effect)))
    g = G(c=3, h=16, w=16)
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(g.model([g.op("Softmax", [g.conv("x", 3, 3, k=1)], axis=1)]))
    with pytest.raises(ConfigError, match=r"Softmax.*the cpu backend runs this generator"):
        check_gpu_effect(PipelineConfig(effect=EffectConfig(name="gan", model=str(mine))))
    with pytest.raises(ConfigError, match="--model-runtime kernels"):
        check_gpu_effect(
            PipelineConfig(effect=EffectConfig(name="gan"), model_runtime="onnxruntime")
        )
