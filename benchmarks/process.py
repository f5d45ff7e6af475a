"""``livefx process`` on a video file, whole command, next to the usual MediaPipe + OpenCV script.

The clip: a person composited over a photo, swaying, with camera noise (``composited_clip``), as
a 30 fps H.264 file (x264 medium, crf 20) of ``--seconds`` seconds. Each repeat runs, one after
the other so that both see the same machine:

- ``livefx process CLIP OUT.mp4 --effect blur --preset P`` for each ``--presets`` entry (H.264
  out), its whole wall time as a command (interpreter start, imports and model load included) and
  the threads' busy shares from its ``--json`` summary;
- ``usual_way_file.py`` in MediaPipe's venv (``--mediapipe-python``): OpenCV's VideoCapture,
  MediaPipe's selfie segmentation, a full-resolution OpenCV Gaussian blur of the same σ as
  LiveFX's, a NumPy float blend and OpenCV's VideoWriter (mp4v: a cheaper encoder than H.264).

Prints median and p95 of each command's wall time over the repeats, frames per second, and the
ratio of the usual way's median to each row's (>1: LiveFX faster). ``--json`` prints everything.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import X264_PRESETS, EffectConfig

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int = 30) -> int:
    """The benchmark's source file: 60 distinct composited frames, cycled, re-noised per frame."""
    from engine.media import VideoWriter
    from engine.samples import composited_clip

    base = composited_clip(width, height, 60, motion="sway", noise=0.0)
    rng = np.random.default_rng(0)
    count = round(seconds * fps)
    rate = Fraction(fps)
    with VideoWriter(path, width, height, rate, preset="medium") as writer:
        for i in range(count):
            f = base.frames[i % len(base.frames)]
            noisy = f.like()
            f.copy_into(noisy)
            noise = rng.normal(0, 2.0, f.y.shape)
            noisy.y[...] = np.clip(f.y + noise, 0, 255).astype(np.uint8)
            noisy.pts, noisy.time_base = i, 1 / rate
            writer.write(noisy)
    return count


def frames_in(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--seconds", type=float, default=20.0, help="the clip's length")
    ap.add_argument("-n", "--repeats", type=int, default=3)
    ap.add_argument("--presets", default="superfast", help="LiveFX's encoder presets to run")
    ap.add_argument("--threads", type=int, default=1, help="LiveFX's ONNX Runtime threads")
    ap.add_argument("--mediapipe-python", default=os.environ.get("LIVEFX_MEDIAPIPE_PYTHON"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    presets = [p for p in args.presets.split(",") if p]
    for p in presets:
        if p not in X264_PRESETS:
            ap.error(f"--presets: {p!r} is not one of {', '.join(X264_PRESETS)}")
    sigma = EffectConfig().strength * 0.06
    runs: dict[str, dict[str, Any]] = {
        f"livefx {p}": {"wall_s": [], "threads": []} for p in presets
    }
    usual_note = "usual way not run (no --mediapipe-python)"
    if args.mediapipe_python:
        runs["usual way"] = {"wall_s": []}
        usual_note = (
            "usual way: OpenCV VideoCapture + mediapipe 0.10.21 + GaussianBlur + NumPy blend + "
            "VideoWriter mp4v"
        )
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        count = make_clip(clip, w, h, args.seconds)
        out_frames: dict[str, int] = {}
        for _ in range(args.repeats):
            for p in presets:
                out = Path(tmp) / f"livefx-{p}.mp4"
                cmd = [
                    sys.executable,
                    "-m",
                    "engine",
                    "process",
                    str(clip),
                    str(out),
                    "--json",
                    "--effect",
                    "blur",
                    "--preset",
                    p,
                    "--threads",
                    str(args.threads),
                ]
                t = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
                wall = time.perf_counter() - t
                if r.returncode != 0:
                    print(r.stderr.strip().splitlines()[-1:], file=sys.stderr)
                    return 1
                summary = json.loads(r.stdout.strip().splitlines()[-1])
                runs[f"livefx {p}"]["wall_s"].append(wall)
                runs[f"livefx {p}"]["threads"].append(summary.get("threads", {}))
                out_frames[f"livefx {p}"] = frames_in(out)
            if args.mediapipe_python:
                out = Path(tmp) / "usual.mp4"
                cmd = [args.mediapipe_python, str(HERE / "usual_way_file.py"), str(clip), str(out),
                       str(sigma)]  # fmt: skip
                t = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
                wall = time.perf_counter() - t
                if r.returncode != 0:
                    print("usual way failed:", r.stderr.strip().splitlines()[-1:], file=sys.stderr)
                    return 1
                runs["usual way"]["wall_s"].append(wall)
                out_frames["usual way"] = frames_in(out)
    usual = statistics.median(runs["usual way"]["wall_s"]) if "usual way" in runs else None
    table: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        med = statistics.median(run["wall_s"])
        row: dict[str, Any] = {
            "wall_median_s": round(med, 3),
            "wall_p95_s": round(percentile(run["wall_s"], 95), 3),
            "fps": round(count / med, 1),
            "frames_out": out_frames.get(name),
            "usual_over_this": round(usual / med, 2) if usual else None,
        }
        if run.get("threads"):
            row["busy_share"] = {
                k: round(statistics.median(t[k]["share"] for t in run["threads"]), 3)
                for k in run["threads"][0]
            }
        table[name] = row
    result = {
        "clip": {"size": f"{w}x{h}", "frames": count, "fps": 30, "codec": "h264"},
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "note": usual_note,
        "rows": table,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"livefx process, whole command, {w}x{h} H.264 clip of {count} frames, effect blur, "
          f"{args.repeats} repeats; {usual_note}")  # fmt: skip
    head = f"{'run':<20}{'median s':>10}{'p95 s':>9}{'fps':>8}{'frames':>8}{'usual/this':>12}"
    print(head + "  busy share (decode / process / encode)")
    for name, row in table.items():
        ratio = f"{row['usual_over_this']:.2f}" if row["usual_over_this"] else "-"
        share = row.get("busy_share")
        shares = " / ".join(f"{v:.0%}" for v in share.values()) if share else "-"
        print(
            f"{name:<20}{row['wall_median_s']:>10.3f}{row['wall_p95_s']:>9.3f}{row['fps']:>8.1f}"
            f"{row['frames_out'] or 0:>8}{ratio:>12}  {shares}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
