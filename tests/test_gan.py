"""The GAN generators: export fidelity, a training smoke run, the effect on photos, bad models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper

from engine import metrics
from engine.config import EffectConfig, PipelineConfig
from engine.effects.gan import check_generator
from engine.errors import ModelError
from engine.inference.onnxruntime import OnnxRuntimeBackend
from engine.models.registry import load_generator
from engine.ops import cpu
from engine.pipeline import Pipeline
from engine.samples import sample_rgb


@pytest.mark.parametrize("task", ["cartoon", "enhance"])
def test_onnx_export_matches_pytorch(tmp_path: Path, task: str) -> None:
    torch = pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from engine.models.train.nets import Generator
    from engine.models.train.train import TASK_DEFAULTS, export_onnx

    torch.manual_seed(0)
    d = TASK_DEFAULTS[task]
    g = Generator(skip_kernel=d["skip_kernel"], head=d["head"], **d["net"])
    with torch.no_grad():  # non-trivial weights: a freshly initialised residual is near zero
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    blob = export_onnx(g, tmp_path / "g.onnx")
    for shape in ((1, 3, 64, 64), (2, 3, 48, 80), (1, 3, 120, 160)):
        x = torch.rand(*shape)
        with torch.no_grad():
            want = g(x).numpy()
        backend = OnnxRuntimeBackend(blob, input_shape=shape)
        backend.input[...] = x.numpy()
        got = backend.run()
        assert got.shape == want.shape
        assert float(np.abs(got - want).max()) <= 1e-4
        assert float(np.abs(want - x.numpy()).mean()) > 1e-3  # the net does something


def test_training_smoke_run() -> None:
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    pytest.importorskip("skimage", reason="the train extra (scikit-image) is not installed")
    from engine.models.train.train import train

    g1, log = train("enhance", steps=4, batch=2, patch=32, threads=1, progress=False)
    g2, _ = train("enhance", steps=4, batch=2, patch=32, threads=1, progress=False)
    assert log["steps"] == 4 and log["parameters"] < 100_000
    # Deterministic with a seed: the same weights twice.
    for a, b in zip(g1.parameters(), g2.parameters(), strict=True):
        assert a.detach().equal(b.detach())
    # The other task, its own head and loss, on a photo given directly.
    photo = sample_rgb("astronaut")[:160, 160:320]
    _, log3 = train(
        "cartoon", steps=2, batch=2, patch=32, threads=1, photos=[photo], progress=False
    )
    assert log3["head"] == "shuffle" and log3["loss"] == "l1" and "d" in log3["final"]


def test_shipped_generators_are_small_onnx_with_dynamic_size() -> None:
    for name in ("cartoon", "enhance"):
        blob, _ = load_generator(name)
        assert len(blob) < 2 * 1024 * 1024
        for shape in ((1, 3, 64, 64), (1, 3, 480, 640)):
            b = OnnxRuntimeBackend(blob, input_shape=shape)
            assert b.output.shape == shape


def run_gan(rgb: np.ndarray, **effect: str | int) -> np.ndarray:
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="gan", **effect)))
    out = p.process(cpu.rgb_to_yuv420p(rgb))
    return cpu.yuv420p_to_rgb(out)


def enhance_cases(degradations: list[str]) -> list[tuple[float, float]]:
    """(PSNR gain dB, SSIM gain) of ``enhance`` through the pipeline over what the pipeline
    shows without it, on 1280×720 frames of the held-out photos (never trained on) degraded as
    ``data.EVAL_SET`` says (the same seeds as ``benchmarks/gan_quality.py``)."""
    import zlib

    from engine.models.train import data

    effect = Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model="enhance")))
    plain = Pipeline(PipelineConfig(effect=EffectConfig(name="none")))
    gains = []
    for name, photo in data.held_out_photos().items():
        clean = data.cover(photo[: photo.shape[0] // 2 * 2, : photo.shape[1] // 2 * 2], 1280, 720)
        for deg in degradations:
            seed = zlib.crc32(f"{name}|{deg}|pipeline 720p".encode())
            bad = data.degrade(clean, data.EVAL_SET[deg][0], np.random.default_rng(seed))
            shown = cpu.yuv420p_to_rgb(plain.process(cpu.rgb_to_yuv420p(bad)))
            out = cpu.yuv420p_to_rgb(effect.process(cpu.rgb_to_yuv420p(shown)))
            gains.append(
                (
                    metrics.psnr(out, clean) - metrics.psnr(shown, clean),
                    metrics.ssim(out, clean) - metrics.ssim(shown, clean),
                )
            )
    return gains


def test_enhance_clears_low_light_noise_on_held_out_photos() -> None:
    pytest.importorskip("skimage", reason="the degradation model lives in the train extra")
    # Under-exposed, gained, noisy and JPEG-compressed: better in PSNR and SSIM on every photo
    # (measured +0.76 … +1.13 dB, +0.018 … +0.041).
    for psnr_gain, ssim_gain in enhance_cases(["low light, JPEG"]):
        assert psnr_gain > 0.3 and ssim_gain > 0.01


def test_enhance_does_little_harm_across_held_out_degradations() -> None:
    pytest.importorskip("skimage", reason="the degradation model lives in the train extra")
    from engine.models.train import data

    gains = np.array(enhance_cases(list(data.EVAL_SET)))
    # Not the issue's +0.5 dB (see the README): on average no worse in PSNR and better in SSIM
    # (measured +0.006 dB, +0.0018), and never far below the input (worst measured −1.66 dB,
    # the mildest JPEG, where the generator's own error is larger than the picture's).
    assert gains[:, 0].mean() > -0.1
    assert gains[:, 1].mean() > 0.0
    assert gains[:, 0].min() > -2.5


def test_cartoon_moves_a_held_out_photo_towards_the_classical_look() -> None:
    pytest.importorskip("skimage", reason="the classical target lives in the train extra")
    from engine.models.train import data

    photo = sample_rgb("astronaut")
    target = data.cartoon_target(photo)
    out = run_gan(photo, model="cartoon")
    assert metrics.psnr(out, target) > metrics.psnr(photo, target) + 1.0


def test_person_region_keeps_the_background() -> None:
    photo = sample_rgb("astronaut")
    whole = run_gan(photo, model="cartoon")
    person = run_gan(photo, model="cartoon", region="person")
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="mask")))
    p.process(cpu.rgb_to_yuv420p(photo))
    assert p.alpha is not None
    bg, fg = p.alpha < 5, p.alpha > 250
    same = np.abs(person.astype(int) - cpu.yuv420p_to_rgb(cpu.rgb_to_yuv420p(photo)).astype(int))
    assert same[bg].mean() < 2.0  # background untouched
    styled = np.abs(person.astype(int) - whole.astype(int))
    assert styled[fg].mean() < 2.0  # the person styled as in the whole-frame run
    assert np.abs(whole.astype(int) - photo.astype(int))[bg].mean() > 3.0


def test_reduced_resolution_at_a_lower_quality_level() -> None:
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model="enhance")))
    p.budget.index = 3  # "half-rate": gan_scale 0.5
    frame = cpu.rgb_to_yuv420p(np.zeros((240, 320, 3), np.uint8))
    out = p.process(frame)
    assert out.size == (320, 240)
    assert list(p.effect._backends) == [(160, 120)]  # type: ignore[attr-defined]


def tiny(
    inputs: int = 1, out_channels: int = 3, op: str = "Relu", size: tuple[int, int] | None = None
) -> bytes:
    h, w = size or ("H", "W")
    ins = [
        helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["N", 3, h, w])
        for i in range(inputs)
    ]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_channels, h, w])
    nodes = [helper.make_node("Sum" if inputs > 1 else op, [f"x{i}" for i in range(inputs)], ["t"])]
    if out_channels != 3:
        nodes.append(helper.make_node("ReduceMean", ["t"], ["y"], axes=[1], keepdims=1))
    else:
        nodes.append(helper.make_node("Identity", ["t"], ["y"]))
    m = helper.make_model(
        helper.make_graph(nodes, "t", ins, [out]), opset_imports=[helper.make_opsetid("", 17)]
    )
    m.ir_version = 8
    return m.SerializeToString()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (tiny(out_channels=1), r"maps \(1, 3, 64, 64\) to \(1, 1, 64, 64\)"),
        (tiny(inputs=2), "one input and one output"),
        (b"garbage", "cannot load the model"),
    ],
)
def test_a_bad_user_model_is_refused_clearly(tmp_path: Path, blob: bytes, message: str) -> None:
    path = tmp_path / "user.onnx"
    path.write_bytes(blob)
    with pytest.raises(ModelError, match=r"expected an image-to-image model.*" + message):
        Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model=str(path))))


def test_a_good_user_model_runs(tmp_path: Path) -> None:
    path = tmp_path / "identity.onnx"
    path.write_bytes(tiny(op="Identity"))
    check_generator(path.read_bytes(), "identity")
    photo = sample_rgb("astronaut")
    out = run_gan(photo, model=str(path))
    ref = cpu.yuv420p_to_rgb(cpu.rgb_to_yuv420p(photo))
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 2.0  # identity in, photo out


def test_a_fixed_size_user_model_gets_frames_resized_to_it(tmp_path: Path) -> None:
    path = tmp_path / "fixed.onnx"
    path.write_bytes(tiny(op="Identity", size=(96, 128)))
    assert check_generator(path.read_bytes(), "fixed") == (128, 96)
    assert check_generator(tiny(op="Identity"), "dynamic") is None
    photo = sample_rgb("astronaut")
    out = run_gan(photo, model=str(path))
    assert out.shape == photo.shape  # back at the frame's size
    ref = cpu.yuv420p_to_rgb(cpu.rgb_to_yuv420p(photo))
    diff = np.abs(out.astype(int) - ref.astype(int))
    # An identity model through 128×96: the guided upsampling restores the frame's own detail
    # (a plain bilinear return leaves the photo softened: 9.0 levels off, measured).
    assert diff.mean() < 3.0


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model=str(tmp_path / "no.onnx"))))


def test_a_damaged_shipped_generator_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.models import registry

    (tmp_path / "cartoon.onnx").write_bytes(tiny(op="Identity"))  # a valid model, not ours
    monkeypatch.setattr(registry, "MODEL_DIR", tmp_path)
    with pytest.raises(ModelError, match=r"model 'cartoon': .* has sha256 .*damaged or replaced"):
        Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model="cartoon")))


@pytest.mark.parametrize("model", ["cartoon", "enhance"])
def test_a_reduced_size_generator_keeps_the_full_size_result(model: str) -> None:
    photo = cv2.resize(sample_rgb("astronaut"), (1280, 720), interpolation=cv2.INTER_CUBIC)
    full = run_gan(photo, model=model, gan_size=0)
    reduced = run_gan(photo, model=model)  # the default: short side 360
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model=model)))
    p.effect.upsampling = "bilinear"  # type: ignore[attr-defined]
    plain = cpu.yuv420p_to_rgb(p.process(cpu.rgb_to_yuv420p(photo)))  # the same size, bilinear
    assert reduced.shape == full.shape
    gain = metrics.psnr(reduced, full) - metrics.psnr(plain, full)
    assert gain > 0.5, gain
