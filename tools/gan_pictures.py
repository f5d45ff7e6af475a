"""Before/after pictures of the GAN effects on a held-out photo, for the README.

.venv/bin/python tools/gan_pictures.py     (needs the train extra for the degradation)
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import EffectConfig, PipelineConfig  # noqa: E402
from engine.models.train import data  # noqa: E402
from engine.ops import cpu  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402
from engine.samples import sample_rgb  # noqa: E402


def gan(rgb: np.ndarray, model: str) -> np.ndarray:
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="gan", model=model)))
    return cpu.yuv420p_to_rgb(p.process(cpu.rgb_to_yuv420p(rgb)))


def save(name: str, images: list[np.ndarray]) -> None:
    path = ROOT / "docs" / "images" / name
    cv2.imwrite(
        str(path),
        cv2.cvtColor(np.hstack(images), cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_JPEG_QUALITY, 90],
    )
    print(f"wrote {path}")


def main() -> int:
    photo = sample_rgb("astronaut")  # held out: never trained on
    save(
        "gan_cartoon.jpg",
        [photo[:, 64:448], gan(photo, "cartoon")[:, 64:448], data.cartoon_target(photo)[:, 64:448]],
    )
    # What enhance is for: an under-exposed, gained, noisy, JPEG-compressed frame (1280×720,
    # the generator at 640×360 and the noise-adaptive guided filter back up).
    frame = data.cover(photo, 1280, 720)
    low_light = data.EVAL_SET["low light, JPEG"][0]
    bad = data.degrade(frame, low_light, np.random.default_rng(0))
    crop = (slice(60, 360), slice(500, 800))
    save("gan_enhance.jpg", [bad[crop], gan(bad, "enhance")[crop], frame[crop]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
