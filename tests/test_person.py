"""The body prior (engine/person): objects beside or behind the person removed, the person and
what she holds kept, and the fallbacks to the selfie matte alone, visible in stats."""

from __future__ import annotations

import numpy as np
import pytest

from engine.config import EffectConfig, ModelConfig, PipelineConfig
from engine.errors import ConfigError, StageError
from engine.frame import FrameBuffer
from engine.ops import cpu
from engine.person.geometry import Crop, crop_to_grid
from engine.pipeline import Pipeline
from engine.samples import background_rgb, scene_clip

W, H, N = 640, 360, 16


def run(frames: list[FrameBuffer], person_model: str, **kw) -> tuple[list[np.ndarray], Pipeline]:
    p = Pipeline(
        PipelineConfig(
            effect=EffectConfig(name="mask"), model=ModelConfig(person_model=person_model)
        ),
        **kw,
    )
    alphas = []
    for f in frames:
        p.process(f)
        assert p.alpha is not None
        alphas.append(p.alpha.copy())
    return alphas, p


def kept(alphas: list[np.ndarray], objects: list[np.ndarray]) -> float:
    """Share of the object's pixels the matte keeps as person (over all frames)."""
    hits = sum(int(((a > 127) & (o > 127)).sum()) for a, o in zip(alphas, objects, strict=True))
    return hits / max(sum(int((o > 127).sum()) for o in objects), 1)


def iou(alphas: list[np.ndarray], truths: list[np.ndarray]) -> float:
    inter = sum(int(((a > 127) & (t > 127)).sum()) for a, t in zip(alphas, truths, strict=True))
    union = sum(int(((a > 127) | (t > 127)).sum()) for a, t in zip(alphas, truths, strict=True))
    return inter / union


@pytest.fixture(scope="module")
def clips() -> dict:
    return {s: scene_clip(s, W, H, N) for s in ("plain", "cup-beside", "logo-behind", "cup-held")}


@pytest.mark.parametrize("scene", ["cup-beside", "logo-behind"])
def test_objects_beside_or_behind_are_removed(clips: dict, scene: str) -> None:
    clip = clips[scene]
    selfie, _ = run(clip.frames, "off")
    fused, p = run(clip.frames, "lite")
    # The selfie model keeps most of the object as person; the fused matte does not.
    assert kept(selfie, clip.objects) > 0.5
    assert kept(fused, clip.objects) < 0.1
    assert iou(fused, clip.alphas) > iou(selfie, clip.alphas) + 0.1
    assert iou(fused, clip.alphas) > 0.85
    stats = p.stats()["person"]
    assert stats["state"] == "fused" and stats["runs"] >= 2 and stats["fused_frames"] == N


def test_plain_scene_is_no_worse_than_selfie_alone(clips: dict) -> None:
    """No object: the person (and the helmet she holds) as the selfie model alone has her."""
    clip = clips["plain"]
    selfie, _ = run(clip.frames, "off")
    fused, _ = run(clip.frames, "lite")
    assert iou(fused, clip.alphas) >= iou(selfie, clip.alphas) - 0.01


def test_what_she_holds_is_shown(clips: dict) -> None:
    clip = clips["cup-held"]
    fused, _ = run(clip.frames, "lite")
    assert kept(fused, clip.held) > 0.95
    assert iou(fused, clip.shown()) > 0.9


def test_several_people_fall_back_to_the_selfie_matte() -> None:
    clip = scene_clip("two-people", W, H, 6)
    selfie, _ = run(clip.frames, "off")
    fused, p = run(clip.frames, "lite")
    st = p.stats()["person"]
    assert st["state"] == "several people"
    assert st["checks"] >= 1 and st["fallback_frames"]["several people"] >= 4
    # Once the second person is seen, the matte is the selfie model's (up to the temporal
    # smoothing of the first frame, which was fused).
    assert np.abs(fused[-1].astype(int) - selfie[-1].astype(int)).max() <= 2


def test_no_person_and_no_body_fall_back() -> None:
    empty = cpu.rgb_to_yuv420p(background_rgb("rocket", W, H))
    _, p = run([empty] * 3, "lite")
    assert p.stats()["person"]["fallback_frames"] == {"no person": 3}
    # The selfie model keeps the cup of this photo; the body model finds no body in it.
    cup = cpu.rgb_to_yuv420p(background_rgb("coffee", W, H))
    selfie, _ = run([cup] * 3, "off")
    fused, p = run([cup] * 3, "lite")
    assert p.stats()["person"]["state"] == "no body"
    np.testing.assert_array_equal(fused[-1], selfie[-1])


def test_short_budget_turns_the_prior_off(clips: dict) -> None:
    clip = clips["cup-beside"]
    lite = ModelConfig(person_model="lite")
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="mask"), model=lite))
    p.budget.index = len(p.budget.levels) - 1  # "minimal": no body model
    for f in clip.frames[:3]:
        p.process(f)
    st = p.stats()["person"]
    assert st["fallback_frames"] == {"budget": 3} and st["runs"] == 0


def test_asynchronous_prior_fuses_without_waiting(clips: dict) -> None:
    import time

    clip = clips["cup-beside"]
    alphas, p = run(clip.frames[:2], "lite", body_async=True)
    for f in clip.frames[2:]:
        time.sleep(0.03)  # a live session's frame interval: the worker's run finishes meanwhile
        p.process(f)
        assert p.alpha is not None
        alphas.append(p.alpha.copy())
    st = p.stats()["person"]
    p.close()
    assert st["asynchronous"] and st["runs"] >= 2
    assert st["fallback_frames"].get("starting", 0) >= 1  # frame 1 did not wait for the model
    assert kept(alphas[4:], clip.objects[4:]) < 0.1


def test_person_model_setting() -> None:
    assert ModelConfig().person_model == "off"  # opt-in until its cost fits (README)
    with pytest.raises(ConfigError, match="person_model"):
        ModelConfig(person_model="heavy")
    p = Pipeline(PipelineConfig(model=ModelConfig(person_model="off")))
    assert "body" not in [name for name, _ in p.stages]
    p.reconfigure(PipelineConfig(model=ModelConfig(person_model="full")))
    assert "body" in [name for name, _ in p.stages]


def test_a_failing_body_stage_is_named(clips: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.person.prior import BodyPrior

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(BodyPrior, "apply", boom)
    lite = ModelConfig(person_model="lite")
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="mask"), model=lite))
    with pytest.raises(StageError, match="body"):
        p.process(clips["plain"].frames[0])


def test_crop_geometry_round_trip() -> None:
    """A crop's own map brought back onto the frame's grid lands where the crop was."""
    crop = Crop(cx=400.0, cy=200.0, side=300.0, angle=0.3)
    square = np.zeros((256, 256), np.float32)
    square[64:192, 64:192] = 1.0  # the middle half of the crop
    grid = crop_to_grid(square, crop, 640, 360, 640, 360)
    corners = crop.points_to_frame(np.array([[64.0, 64.0], [192.0, 192.0]]))
    centre = corners.mean(axis=0)
    assert grid[round(centre[1]), round(centre[0])] == pytest.approx(1.0)
    assert grid[200, 200] == 0.0 and grid[10, 600] == 0.0
    # The area is the middle half's: (300 / 2)² frame pixels.
    assert float(grid.sum()) == pytest.approx(150.0**2, rel=0.03)


# -- the colour guide (MatteConfig.guide) ---------------------------------------------------------


def test_colour_guide_on_a_grey_picture_is_the_grey_guide() -> None:
    """With R = G = B the colour filter is the grey one (its ε spread over three channels)."""
    rng = np.random.default_rng(0)
    grey = rng.random((40, 60)).astype(np.float32)
    mask = (rng.random((40, 60)) > 0.5).astype(np.float32)
    a, b = cpu.MatteRefiner(60, 40), cpu.MatteRefiner(60, 40)
    a.guided(mask, np.rint(grey * 255).astype(np.uint8), 2, 1e-3)
    guide = np.rint(grey * 255).astype(np.float32) / 255
    b.guided_colour(mask, np.stack([guide] * 3), 2, 3e-3)
    np.testing.assert_allclose(b.filtered, a.filtered, atol=2e-3)


def test_colour_guide_follows_an_edge_the_grey_guide_cannot_see() -> None:
    """Brown hair on a blue wall of the same luma: the colour guide's edges are closer."""
    from engine import metrics
    from engine.config import MatteConfig
    from engine.samples import composited_clip

    clip = composited_clip(640, 360, 8, motion="sway", background="#5a78c8", noise=2.0)
    errors = {}
    for guide in ("grey", "colour"):
        p = Pipeline(
            PipelineConfig(
                effect=EffectConfig(name="mask"),
                matte=MatteConfig(guide=guide),
                model=ModelConfig(person_model="off"),
            )
        )
        alphas = []
        for f in clip.frames:
            p.process(f)
            assert p.alpha is not None
            alphas.append(p.alpha.copy())
        errors[guide] = metrics.edge_error(alphas, clip.alphas)
    assert errors["colour"] < errors["grey"] * 0.97, errors
