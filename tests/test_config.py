from __future__ import annotations

import pytest

from engine.config import InferenceConfig, ModelConfig, PipelineConfig, describe
from engine.errors import ConfigError


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: PipelineConfig(effect="sparkle"), "effect"),
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
        c.effect = "none"  # type: ignore[misc]
    assert describe(c)["model"]["segmenter"] == "auto"
    assert isinstance(ConfigError("x"), ValueError)
