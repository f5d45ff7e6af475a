from __future__ import annotations

import numpy as np

from engine.config import EffectConfig, ModelConfig, PipelineConfig
from engine.ops import cpu
from engine.pipeline import Pipeline
from engine.samples import camera_frames


def test_buffers_are_reused_and_remade_on_a_new_size(astronaut_rgb: np.ndarray) -> None:
    p = Pipeline()
    a, b = (
        cpu.rgb_to_yuv420p(f, full_range=False) for f in camera_frames(astronaut_rgb, 640, 480, 2)
    )
    out_a = p.process(a)
    alpha_a = p.alpha
    out_b = p.process(b)
    assert out_b is out_a and p.alpha is alpha_a  # same size: nothing new allocated
    assert p.model is not None and p.model.name == "general"
    wide = cpu.rgb_to_yuv420p(camera_frames(astronaut_rgb, 1280, 720, 1)[0], full_range=False)
    out_c = p.process(wide)
    assert out_c is not out_a and out_c.size == (1280, 720)
    assert p.model is not None and p.model.name == "landscape"
    assert p.frames == 3


def test_timings_cover_every_stage(astronaut_rgb: np.ndarray) -> None:
    p = Pipeline()
    stages = ["ingest", "preprocess", "segment", "refine", "effect", "composite"]
    for f in camera_frames(astronaut_rgb, 320, 240, 5):
        p.process(cpu.rgb_to_yuv420p(f, full_range=False))
        last = p.times.last_ms()
        assert list(last) == [*stages, "total"]
        # Each frame's stages are back to back: they add up to its total, to the nanosecond.
        assert abs(sum(last[k] for k in stages) - last["total"]) < 1e-6
    s = p.times.summary()
    assert all(v["count"] == 5 for v in s.values())


def test_none_effect_skips_the_model(astronaut_rgb: np.ndarray) -> None:
    calls = []

    def factory(spec):  # would load a model; must not be called
        calls.append(spec)
        raise AssertionError("no model for effect none")

    p = Pipeline(PipelineConfig(effect=EffectConfig(name="none")), backend_factory=factory)
    frame = cpu.rgb_to_yuv420p(astronaut_rgb, full_range=False)
    out = p.process(frame)
    np.testing.assert_array_equal(out.y, frame.y)
    assert not calls and list(p.times.summary()) == ["ingest", "effect", "total"]


def test_forced_model_is_used(astronaut_rgb: np.ndarray) -> None:
    p = Pipeline(
        PipelineConfig(effect=EffectConfig(name="mask"), model=ModelConfig(segmenter="landscape"))
    )
    p.process(cpu.rgb_to_yuv420p(astronaut_rgb))
    assert p.model is not None and p.model.name == "landscape"
    assert p.alpha is not None and p.alpha[40:120, 180:270].mean() > 200
