from __future__ import annotations

import pytest

from engine.config import (
    BudgetConfig,
    EffectConfig,
    InferenceConfig,
    MatteConfig,
    ModelConfig,
    PipelineConfig,
    describe,
    parse_colour,
    update,
)
from engine.errors import ConfigError


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: EffectConfig(name="sparkle"), "effect"),
        (lambda: EffectConfig(strength=1.5), "strength"),
        (lambda: EffectConfig(colour="#12345"), "colour"),
        (lambda: EffectConfig(colour="chartreuse"), "colour"),
        (lambda: EffectConfig(background=""), "background"),
        (lambda: EffectConfig(gan_size=32), "gan_size"),
        (lambda: EffectConfig(gan_size=True), "gan_size"),  # type: ignore[arg-type]
        (lambda: MatteConfig(threshold=-0.1), "threshold"),
        (lambda: MatteConfig(feather=2), "feather"),
        (lambda: MatteConfig(smoothing=float("nan")), "smoothing"),
        (lambda: MatteConfig(radius=0), "radius"),
        (lambda: BudgetConfig(budget_ms=0), "budget_ms"),
        (lambda: PipelineConfig(effect="blur"), "effect"),  # type: ignore[arg-type]
        (lambda: InferenceConfig(threads=-1), "threads"),
        (lambda: InferenceConfig(threads=1.5), "threads"),  # type: ignore[arg-type]
        (lambda: InferenceConfig(backend="magic"), "backend"),
        (lambda: ModelConfig(landscape_min_aspect=0.0), "landscape_min_aspect"),
        (lambda: PipelineConfig(stats_window=0), "stats_window"),
    ],
)
def test_bad_values_name_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}: "):
        make()


def test_config_is_frozen_and_describable() -> None:
    c = PipelineConfig()
    with pytest.raises(AttributeError):
        c.stats_window = 3  # type: ignore[misc]
    assert describe(c)["model"]["segmenter"] == "auto"
    assert isinstance(ConfigError("x"), ValueError)


def test_colours() -> None:
    assert parse_colour("#00B140") == (0, 177, 64) == parse_colour("green")
    assert parse_colour("ff0000") == (255, 0, 0)
    assert EffectConfig(name="colour", colour="blue").rgb == (0, 71, 187)


def test_the_gan_size_setting_takes_whole_numbers_from_strings_and_json() -> None:
    c = PipelineConfig()
    assert update(c, {"gan_size": "540"}).effect.gan_size == 540
    assert update(c, {"gan_size": 0}).effect.gan_size == 0
    assert update(c, {"gan_size": 480.0}).effect.gan_size == 480
    for bad in ("big", 360.5, True, None):
        with pytest.raises(ConfigError, match=r"^gan_size: .* not a whole number"):
            update(c, {"gan_size": bad})
    with pytest.raises(ConfigError, match=r"^gan_size: 10000 is not 0"):
        update(c, {"gan_size": "10000"})
