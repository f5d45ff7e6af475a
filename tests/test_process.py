"""``livefx process`` end to end: real photos and clips in, mattes out; bad input refused."""

from __future__ import annotations

import itertools
import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.config import EffectConfig, PipelineConfig
from engine.samples import sample_path, write_clip
from tests.conftest import run_cli


def decode_all(path: Path) -> list[np.ndarray]:
    """Each frame's planes as (Y, U, V) arrays."""
    with av.open(str(path)) as c:
        return [f.to_ndarray() for f in c.decode(video=0)]


def test_image_matte_of_a_person(tmp_path: Path) -> None:
    out = tmp_path / "matte.png"
    result = run_cli(
        "process", str(sample_path("astronaut")), str(out), "--effect", "mask", "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 1 and summary["model"] == "general"
    assert set(summary["stages"]) >= {"preprocess", "segment", "refine", "effect", "total"}
    matte = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert matte.shape == (512, 512)  # single-channel, full size
    assert matte[40:120, 180:270].mean() > 240  # her face
    assert matte[0:60, 0:60].mean() < 20  # the flag behind her, top-left
    assert matte[0:100, 420:512].mean() < 20  # the wall, top-right
    # Soft edges exist (a matte, not a hard threshold), but most pixels are decided.
    decided = ((matte < 16) | (matte > 239)).mean()
    assert 0.85 < decided < 1.0


def test_grey_photo_and_other_sizes(tmp_path: Path) -> None:
    out = tmp_path / "m.jpg"
    assert main(["process", str(sample_path("cameraman")), str(out), "--effect", "mask", "-q"]) == 0
    matte = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert matte.shape == (512, 512)
    # The cameraman stands left of centre against the sky: person there, sky above is not.
    assert matte[120:300, 150:300].mean() > 180
    assert matte[0:60, 300:512].mean() < 40


@pytest.mark.parametrize(
    ("ext", "w", "h", "model"), [(".mp4", 1280, 720, "landscape"), (".webm", 640, 480, "general")]
)
def test_video_matte(tmp_path: Path, ext: str, w: int, h: int, model: str) -> None:
    clip = write_clip(tmp_path / f"clip{ext}", width=w, height=h, frames=24)
    out = tmp_path / f"matte{ext}"
    result = run_cli("process", str(clip), str(out), "--effect", "mask", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 24 and summary["model"] == model
    frames = decode_all(out)
    assert len(frames) == 24
    # The same frames segmented in-process: the file path must not shift, flip or lose the matte.
    from engine.media import VideoReader
    from engine.pipeline import Pipeline

    pipeline = Pipeline(PipelineConfig(effect=EffectConfig(name="mask")))
    with VideoReader(clip) as reader:
        for planes, src in zip(frames, reader, strict=True):
            y, chroma = planes[:h], planes[h:]
            assert np.abs(chroma.astype(int) - 128).max() <= 3  # grey
            person, background = (y >= 200).mean(), (y <= 40).mean()
            assert person > 0.15 and background > 0.15  # the astronaut is in view, not all of it
            expect = pipeline.process(src).y
            iou = ((y > 128) & (expect > 128)).sum() / ((y > 128) | (expect > 128)).sum()
            assert iou > 0.97


def test_max_frames_and_progress_off(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=20)
    out = tmp_path / "o.mp4"
    assert main(["process", str(clip), str(out), "--max-frames", "5", "-q"]) == 0
    assert len(decode_all(out)) == 5


def test_none_effect_passes_frames_through_in_order(tmp_path: Path) -> None:
    # More frames than the decode and encode queues hold, each different from the last: the
    # three threads must keep every frame, in order.
    clip = write_clip(tmp_path / "clip.y4m", width=320, height=240, frames=30)
    out = tmp_path / "o.y4m"
    assert main(["process", str(clip), str(out), "--effect", "none", "-q"]) == 0
    a, b = decode_all(clip), decode_all(out)
    assert len(a) == len(b) == 30
    assert all(np.any(x != y) for x, y in itertools.pairwise(a))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # rawvideo both ways: bit-exact


def test_a_video_summary_gives_each_threads_share_and_the_preset(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=320, height=240, frames=12)
    out = tmp_path / "o.mp4"
    result = run_cli("process", str(clip), str(out), "--preset", "ultrafast", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["preset"] == "ultrafast"
    assert list(summary["threads"]) == ["decode", "process", "encode"]
    for t in summary["threads"].values():
        assert t["busy_s"] > 0 and 0 < t["share"] <= 1.0
    assert len(decode_all(out)) == 12
    text = run_cli("process", str(clip), str(out))
    assert text.returncode == 0 and "threads, busy share of the wall time" in text.stdout
    assert "encoder preset superfast" in text.stdout  # the files' default


def test_a_full_disk_is_one_line_and_nothing_hangs(tmp_path: Path) -> None:
    """The encoder's thread fails (ENOSPC from /dev/full): the command stops and says so."""
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full here")
    clip = write_clip(tmp_path / "clip.mp4", width=320, height=240, frames=60)
    out = tmp_path / "out.mp4"
    out.symlink_to(full)
    result = run_cli("process", str(clip), str(out))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("livefx: error: "), result.stderr


def faststart_clip(path: Path, frames: int = 30) -> Path:
    """An MP4 with its index at the front, so that a cut file still opens."""
    from engine.media import frame_to_av
    from engine.ops.cpu import rgb_to_yuv420p
    from engine.samples import camera_frames, sample_rgb

    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "20"}
        for i, rgb in enumerate(camera_frames(sample_rgb("astronaut"), 320, 240, frames)):
            fb = rgb_to_yuv420p(rgb, full_range=False)
            fb.pts, fb.time_base = i, Fraction(1, 30)
            for p in s.encode(frame_to_av(fb)):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def assert_one_line_error(result, pattern: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("livefx: error: ")
    import re

    assert re.search(pattern, lines[0]), lines[0]


def test_truncated_video_is_an_error_but_keeps_what_was_processed(tmp_path: Path) -> None:
    clip = faststart_clip(tmp_path / "clip.mp4")
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out.mp4"
    result = run_cli("process", str(cut), str(out))
    assert_one_line_error(result, r"cut\.mp4: .*truncated")
    kept = decode_all(out)
    assert 0 < len(kept) < 30


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        ("missing", r"missing\.mp4: no such file"),
        ("empty", r"empty\.mp4: file is empty"),
        ("garbage_video", r"garbage\.mp4: cannot open as a video"),
        ("garbage_image", r"garbage\.png: not an image"),
        ("cut_index", r"cut\.mp4: cannot open as a video"),
        ("directory", r"is a directory"),
        ("no_out_dir", r"does not exist"),
        ("bad_ext", r"unknown video extension"),
        ("same_file", r"would overwrite the input"),
        ("zero_size", r"zero"),
        ("bad_effect", r"^livefx: error: effect: 'sparkle' is not one of"),
        ("bad_threads", r"threads: -3 is outside"),
        ("bad_strength", r"strength: 2.0 is outside \[0.0, 1.0\]"),
        ("bad_colour", r"colour: 'teal-ish' is not #rrggbb"),
        ("missing_background", r"nothere\.jpg: no such file"),
        ("bad_feather", r"feather: -1.0 is outside"),
        ("bad_preset", r"preset.*'turbo'"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path: Path, setup: str, pattern: str) -> None:
    out = tmp_path / "out.mp4"
    extra: list[str] = []
    src = tmp_path / "missing.mp4"
    if setup == "empty":
        src = tmp_path / "empty.mp4"
        src.write_bytes(b"")
    elif setup == "garbage_video":
        src = tmp_path / "garbage.mp4"
        src.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    elif setup == "garbage_image":
        src = tmp_path / "garbage.png"
        src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
        out = tmp_path / "out.png"
    elif setup == "cut_index":
        clip = write_clip(tmp_path / "clip.mp4", frames=10)  # index (moov) written at the end
        src = tmp_path / "cut.mp4"
        src.write_bytes(clip.read_bytes()[:-2000])
    elif setup == "directory":
        src = tmp_path
    elif setup == "no_out_dir":
        src = sample_path("astronaut")
        out = tmp_path / "nowhere" / "m.png"
    elif setup == "bad_ext":
        src = write_clip(tmp_path / "clip.mp4", frames=2)
        out = tmp_path / "out.xyz"
    elif setup == "same_file":
        src = write_clip(tmp_path / "clip.mp4", frames=2)
        out = src
    elif setup == "zero_size":
        src = tmp_path / "zero.y4m"
        src.write_bytes(b"YUV4MPEG2 W0 H0 F30:1 Ip A1:1 C420jpeg\nFRAME\n")
    elif setup == "bad_effect":
        src = sample_path("astronaut")
        out = tmp_path / "m.png"
        extra = ["--effect", "sparkle"]
    elif setup == "bad_threads":
        src = sample_path("astronaut")
        out = tmp_path / "m.png"
        extra = ["--threads", "-3"]
    elif setup.startswith("bad_") or setup == "missing_background":
        src = sample_path("astronaut")
        out = tmp_path / "m.png"
        extra = {
            "bad_strength": ["--effect", "blur", "--strength", "2"],
            "bad_colour": ["--effect", "colour", "--colour", "teal-ish"],
            "missing_background": ["--effect", "replace", "--background", "nothere.jpg"],
            "bad_feather": ["--feather", "-1"],
            "bad_preset": ["--preset", "turbo"],
        }[setup]
    assert_one_line_error(run_cli("process", str(src), str(out), *extra), pattern)


@pytest.mark.parametrize(
    "args",
    [
        ["--effect", "blur", "--strength", "0.9"],
        ["--effect", "replace", "--background", "samples/backgrounds/hubble.jpg"],
        ["--effect", "colour", "--colour", "#0047bb"],
        ["--effect", "blur", "--no-guided", "--smoothing", "0", "--feather", "0"],
        ["--effect", "blur", "--budget-ms", "4"],
    ],
)
def test_every_effect_through_the_command(tmp_path: Path, args: list[str]) -> None:
    clip = write_clip(tmp_path / "clip.mp4", width=320, height=240, frames=8)
    out = tmp_path / "out.mp4"
    result = run_cli("process", str(clip), str(out), "--json", *args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 8 and summary["effect"] == args[1]
    assert "composite" in summary["stages"]
    frames = decode_all(out)
    assert len(frames) == 8
    # Something was composited: the output is not the input.
    src = decode_all(clip)
    assert np.abs(frames[4].astype(int) - src[4].astype(int)).mean() > 2
