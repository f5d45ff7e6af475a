"""Make samples/astronaut_cutout.png: the astronaut photo with a person alpha channel.

The alpha is the ground truth for the composited test clips (flicker, edges, ghosting), so it
should not simply be LiveFX's own output. It is made semi-automatically: LiveFX's matte only
seeds a trimap (sure person where the matte is ≥ 0.97 eroded by 12 px, sure background where it
is ≤ 0.03 eroded by 12 px), and OpenCV's GrabCut, which models the photo's own colours, decides
the uncertain band in between; the result is feathered by one pixel. One manual correction (a
polygon over the flag, below). Not hand-labelled otherwise.

    .venv/bin/python tools/make_cutout.py samples/astronaut_cutout.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import EffectConfig, MatteConfig, PipelineConfig
from engine.ops import cpu
from engine.pipeline import Pipeline
from engine.samples import sample_rgb


def main(out: str) -> int:
    rgb = sample_rgb("astronaut")
    config = PipelineConfig(
        effect=EffectConfig(name="mask"),
        matte=MatteConfig(feather=1.0, smoothing=0.0, guided=False),
    )
    pipeline = Pipeline(config)
    pipeline.process(cpu.rgb_to_yuv420p(rgb))
    assert pipeline.alpha is not None
    matte = pipeline.alpha.astype(np.float32) / 255.0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (25, 25))
    sure_fg = cv2.erode((matte >= 0.97).astype(np.uint8), kernel)
    sure_bg = cv2.erode((matte <= 0.03).astype(np.uint8), kernel)
    trimap = np.full(matte.shape, cv2.GC_PR_BGD, np.uint8)
    trimap[matte >= 0.5] = cv2.GC_PR_FGD
    trimap[sure_fg > 0] = cv2.GC_FGD
    trimap[sure_bg > 0] = cv2.GC_BGD
    # One manual correction: the flag's red stripes, lower left, look like the orange suit to both
    # the model and GrabCut; the strip left of the sleeve is marked as sure background.
    flag = np.array([[0, 240], [40, 290], [24, 360], [14, 430], [10, 511], [0, 511]], np.int32)
    cv2.fillPoly(trimap, [flag], cv2.GC_BGD)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    cv2.grabCut(bgr, trimap, None, bgd, fgd, 8, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    person = np.isin(trimap, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep the largest connected part (the person), fill its holes.
    _, labels, stats, _ = cv2.connectedComponentsWithStats(person)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    person = (labels == largest).astype(np.uint8)
    contours, _ = cv2.findContours(person, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(person)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    alpha = cv2.GaussianBlur(filled.astype(np.float32) * 255.0, (3, 3), 0.7)
    rgba = np.dstack([rgb, np.clip(np.rint(alpha), 0, 255).astype(np.uint8)])
    cv2.imwrite(out, cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    print(f"wrote {out}: person covers {filled.mean():.1%} of the photo")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "samples/astronaut_cutout.png"))
