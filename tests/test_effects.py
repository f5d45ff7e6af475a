"""Each effect on frames with a known person matte: person kept, background changed as asked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.config import EffectConfig, PipelineConfig
from engine.errors import ConfigError, InputError
from engine.frame import FrameBuffer
from engine.ops import cpu
from engine.pipeline import Pipeline
from engine.samples import CompositedClip, background_rgb, composited_clip, write_clip

W, H = 640, 360


@pytest.fixture(scope="module")
def clip() -> CompositedClip:
    return composited_clip(W, H, 6, motion="sway", noise=2.0, keep_rgb=True)


def regions(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person interior, far background) at Y size, away from the soft edge."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    person = cv2.erode((alpha >= 250).astype(np.uint8), k) > 0
    background = cv2.erode((alpha == 0).astype(np.uint8), k) > 0
    return person, background


def run(clip: CompositedClip, **effect: object) -> list[FrameBuffer]:
    p = Pipeline(PipelineConfig(effect=EffectConfig(**effect)))  # type: ignore[arg-type]
    outs = []
    for f in clip.frames:
        out = p.process(f)
        outs.append(FrameBuffer(out.y.copy(), out.u.copy(), out.v.copy()))
    p.close()
    return outs


def absdiff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def test_blur_keeps_the_person_and_blurs_the_background(clip: CompositedClip) -> None:
    out = run(clip, name="blur", strength=0.8)[-1]
    src = clip.frames[-1]
    person, background = regions(clip.alphas[-1])
    assert absdiff(out.y, src.y)[person].mean() < 2.0
    assert absdiff(out.y, src.y)[background].mean() > 4.0
    # Blurred: much less fine detail (Laplacian energy) in the background than in the input.
    lap_in = np.abs(cv2.Laplacian(src.y.astype(np.float32), cv2.CV_32F))[background].mean()
    lap_out = np.abs(cv2.Laplacian(out.y.astype(np.float32), cv2.CV_32F))[background].mean()
    assert lap_out < 0.3 * lap_in


def test_blur_strength_zero_changes_nothing(clip: CompositedClip) -> None:
    weak = run(clip, name="blur", strength=0.0)[-1]
    strong = run(clip, name="blur", strength=1.0)[-1]
    _, background = regions(clip.alphas[-1])
    src = clip.frames[-1]
    assert absdiff(weak.y, src.y)[background].mean() < absdiff(strong.y, src.y)[background].mean()
    assert absdiff(weak.y, src.y).max() <= 3


def test_replace_puts_the_image_behind_the_person(clip: CompositedClip, tmp_path: Path) -> None:
    bg_rgb = background_rgb("hubble", W, H)
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), cv2.cvtColor(bg_rgb, cv2.COLOR_RGB2BGR))
    out = run(clip, name="replace", background=str(path))[-1]
    want = cpu.rgb_to_yuv420p(bg_rgb, full_range=False)
    person, background = regions(clip.alphas[-1])
    assert absdiff(out.y, want.y)[background].mean() < 3.0
    assert absdiff(out.y, clip.frames[-1].y)[person].mean() < 2.0


def test_replace_cover_fits_a_differently_shaped_image(
    clip: CompositedClip, tmp_path: Path
) -> None:
    tall = np.zeros((400, 100, 3), np.uint8)
    tall[:200] = (255, 0, 0)  # red top half, blue bottom half
    tall[200:] = (0, 0, 255)
    path = tmp_path / "tall.png"
    cv2.imwrite(str(path), cv2.cvtColor(tall, cv2.COLOR_RGB2BGR))
    out = run(clip, name="replace", background=str(path))[-1]
    rgb = cpu.yuv420p_to_rgb(out)
    # Cover-fit: the frame shows a band from the middle of the tall image: both halves, no
    # letterbox, no stretching into the wrong colour at the corners.
    assert rgb[5, 5, 0] > 200 and rgb[5, 5, 2] < 60  # top-left: red
    assert rgb[H - 5, 5, 2] > 200 and rgb[H - 5, 5, 0] < 60  # bottom-left: blue


def test_replace_loops_a_video_background(clip: CompositedClip, tmp_path: Path) -> None:
    video = write_clip(tmp_path / "bg.mp4", photo="cameraman", width=320, height=240, frames=3)
    outs = run(clip, name="replace", background=str(video))
    _, background = regions(clip.alphas[0])
    # Frames 0, 1, 2 of the background differ (it moves); frame 3 is frame 0 again (it loops).
    d01 = absdiff(outs[0].y, outs[1].y)[background].mean()
    assert d01 > 1.0
    assert absdiff(outs[3].y, outs[0].y)[background].mean() < 0.5 * d01


def test_colour_fills_the_background(clip: CompositedClip) -> None:
    out = run(clip, name="colour", colour="#00b140")[-1]
    _, background = regions(clip.alphas[-1])
    rgb = cpu.yuv420p_to_rgb(out)
    np.testing.assert_allclose(rgb[background].mean(axis=0), (0, 177, 64), atol=3)
    blue = cpu.yuv420p_to_rgb(run(clip, name="colour", colour="blue")[-1])
    np.testing.assert_allclose(blue[background].mean(axis=0), (0, 71, 187), atol=3)


def test_bad_effect_parameters_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="strength"):
        EffectConfig(name="blur", strength=-0.1)
    with pytest.raises(InputError, match="no such file"):
        Pipeline(PipelineConfig(effect=EffectConfig(name="replace", background="/nonexistent.jpg")))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a picture")
    with pytest.raises(InputError, match="not an image"):
        Pipeline(PipelineConfig(effect=EffectConfig(name="replace", background=str(junk))))
