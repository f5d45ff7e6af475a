"""Matte quality on composited clips with a known truth: flicker, edges, ghosting.

The astronaut cut-out is moved over a background photo with camera noise
(``engine.samples.composited_clip``); the pipeline's matte for each frame is compared with the
true one (``engine.metrics``). Configurations, all in the same run on the same frames:

- ``raw``: the model's mask, bilinear to frame size: no guided filter, no smoothing, no ramp;
- ``ramp``: + the threshold/feather ramp (default feather 0.5);
- ``guided+ramp``: + the guided filter (LiveFX's defaults, but no temporal smoothing);
- ``default``: + motion-adaptive temporal smoothing: all of LiveFX's defaults.

Flicker is the mean |Δα| frame to frame over background pixels (true α = 0, at least 2 px from
the person); edge error the mean |α − α_true| within 8 px of the true boundary.

Clips: ``static`` (flicker on a static background), ``sway`` (edges while moving slowly),
``fast`` (ghost trails: she crosses 40 % of the frame in 10 frames).

``--guides``: the guided filter's guide, grey (the frame's luma) against colour (its RGB), on the
sway clip over four backgrounds, one of them a flat blue of her hair's luma (#5a78c8): edge error,
IoU and the refine stage's time.

``--objects``: the body prior (``--person-model``) on scenes with moving salient objects
(``engine.samples.SCENES``: a cat and a cup beside her, a logo behind her shoulder, a cat and a
cup in front of her, and the plain scene), selfie alone vs fused with ``lite`` and ``full``: IoU
against what should be shown (she and what is in front of her), the share of the objects
beside/behind kept as person, the share of the objects in front shown, edge error, flicker; then
the cost per frame of the 720p blur frame with and without the prior, every run paced at 30 fps
(inline: every model run counted in the frame that makes it; asynchronous, as live sessions run
it: the frame thread's share, the model's runs on a thread of their own, added to it spread over
the frames).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import metrics
from engine.config import EffectConfig, MatteConfig, ModelConfig, PipelineConfig
from engine.pipeline import Pipeline
from engine.pipeline.budget import QUALITY_LEVELS
from engine.samples import SCENES, composited_clip, scene_clip

CONFIGS: dict[str, tuple[MatteConfig, int]] = {
    "raw": (MatteConfig(smoothing=0.0, feather=1.0, guided=False), 0),
    "ramp": (MatteConfig(smoothing=0.0, guided=False), 0),
    "guided+ramp": (MatteConfig(smoothing=0.0), 0),
    "default": (MatteConfig(), 0),
}


def run_config(frames: list[Any], matte: MatteConfig, level: int) -> list[Any]:
    p = Pipeline(PipelineConfig(effect=EffectConfig(name="mask"), matte=matte))
    p.budget.index = level
    out = []
    for f in frames:
        p.process(f)
        assert p.alpha is not None
        out.append(p.alpha.copy())
    return out


def evaluate(width: int, height: int, frames: int, noise: float) -> dict[str, dict[str, float]]:
    clips = {
        m: composited_clip(width, height, frames, motion=m, noise=noise)
        for m in ("static", "sway", "fast")
    }
    table: dict[str, dict[str, float]] = {}
    for name, (matte, level) in CONFIGS.items():
        row: dict[str, float] = {}
        a = run_config(clips["static"].frames, matte, level)
        row["flicker_static"] = metrics.flicker(a, clips["static"].alphas)
        a = run_config(clips["sway"].frames, matte, level)
        row["flicker_sway"] = metrics.flicker(a, clips["sway"].alphas)
        row["edge_error"] = metrics.edge_error(a, clips["sway"].alphas)
        row["iou"] = metrics.iou(a, clips["sway"].alphas)
        a = run_config(clips["fast"].frames, matte, level)
        row["ghosting_fast"] = metrics.ghosting(a, clips["fast"].alphas)
        row["edge_error_fast"] = metrics.edge_error(a, clips["fast"].alphas)
        table[name] = row
    return table


def _person_run(frames: list[Any], person_model: str) -> tuple[list[Any], Pipeline]:
    p = Pipeline(
        PipelineConfig(
            effect=EffectConfig(name="mask"), model=ModelConfig(person_model=person_model)
        )
    )
    out = []
    for f in frames:
        p.process(f)
        assert p.alpha is not None
        out.append(p.alpha.copy())
    return out, p


def _share(alphas: list[Any], parts: list[Any]) -> float | None:
    total = sum(int((o > 127).sum()) for o in parts)
    if total == 0:
        return None
    hits = sum(int(((a > 127) & (o > 127)).sum()) for a, o in zip(alphas, parts, strict=True))
    return hits / total


def evaluate_objects(
    width: int, height: int, frames: int, noise: float, models: tuple[str, ...]
) -> dict[str, dict[str, dict[str, float | None]]]:
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for scene in SCENES:
        if scene == "two-people":
            continue  # the several-people fallback: tests/test_person.py
        clip = scene_clip(scene, width, height, frames, noise=noise)
        static = scene_clip(scene, width, height, frames, noise=noise, motion="static")
        shown, shown_static = clip.shown(), static.shown()
        rows: dict[str, dict[str, float | None]] = {}
        for model in ("off", *models):
            a, _ = _person_run(clip.frames, model)
            s_alphas, _ = _person_run(static.frames, model)
            rows["selfie" if model == "off" else model] = {
                "iou": metrics.iou(a, shown),
                "object_kept": _share(a, clip.objects),
                "held_shown": _share(a, clip.held),
                "edge_error": metrics.edge_error(a, shown),
                "flicker_static": metrics.flicker(s_alphas, shown_static),
            }
        table[scene] = rows
    return table


def evaluate_cost(
    width: int, height: int, frames: int, models: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """The 720p blur frame, per frame: selfie alone vs the body prior inline and asynchronous."""
    import time

    clip = scene_clip("cup-beside", width, height, frames)
    out: dict[str, dict[str, float]] = {}
    runs = [("selfie", "off", False)]
    runs += [(f"{m} inline", m, False) for m in models] + [(f"{m} async", m, True) for m in models]
    for label, model, live in runs:
        cfg = PipelineConfig(
            effect=EffectConfig(name="blur"), model=ModelConfig(person_model=model)
        )
        p = Pipeline(cfg, body_async=live)
        totals, bodies = [], []
        for i, f in enumerate(clip.frames):
            t = time.perf_counter()
            p.process(f)
            if i >= 2:
                totals.append((time.perf_counter() - t) * 1e3)
                bodies.append(p.times.last_ms().get("body", 0.0))
            time.sleep(max(0.0, 1 / 30 - (time.perf_counter() - t)))  # every run at 30 fps
        person = p.stats()["person"] or {}
        p.close()
        out[label] = {
            "frame_median_ms": float(np.median(totals)),
            "frame_p95_ms": float(np.percentile(totals, 95)),
            "frame_mean_ms": float(np.mean(totals)),
            "body_stage_mean_ms": float(np.mean(bodies)),
            "model_run_median_ms": float(person.get("run_ms_median", 0.0)),
            "model_runs": float(person.get("runs", 0) + person.get("checks", 0)),
        }
    base = out["selfie"]["frame_mean_ms"]
    for label, row in out.items():
        extra = row["model_runs"] * row["model_run_median_ms"] / max(frames - 2, 1)
        if label.endswith("async"):
            # The frame thread's share plus the worker's runs, spread over the frames.
            row["added_mean_ms"] = row["frame_mean_ms"] - base + extra
        else:
            row["added_mean_ms"] = row["frame_mean_ms"] - base
    return out


GUIDE_BACKGROUNDS = ("#5a78c8", "rocket", "hubble", "coffee")


def print_guides(args: argparse.Namespace) -> int:
    rows: dict[str, dict[str, float]] = {}
    for bg in GUIDE_BACKGROUNDS:
        clip = composited_clip(
            args.width, args.height, args.frames, background=bg, noise=args.noise
        )
        for guide in ("grey", "colour"):
            cfg = PipelineConfig(
                effect=EffectConfig(name="mask"),
                matte=MatteConfig(guide=guide),
                model=ModelConfig(person_model="off"),
            )
            p = Pipeline(cfg)
            alphas = []
            for f in clip.frames:
                p.process(f)
                assert p.alpha is not None
                alphas.append(p.alpha.copy())
            rows[f"{bg} {guide}"] = {
                "edge_error": metrics.edge_error(alphas, clip.alphas),
                "iou": metrics.iou(alphas, clip.alphas),
                "refine_median_ms": p.stats()["stages"]["refine"]["median_ms"],
            }
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"guided filter's guide, {args.width}x{args.height}, {args.frames} frames, sway clip")
    print(f"{'background / guide':<20}{'edge_error':>12}{'iou':>10}{'refine ms':>12}")
    for name, r in rows.items():
        print(f"{name:<20}{r['edge_error']:>12.4f}{r['iou']:>10.4f}{r['refine_median_ms']:>12.3f}")
    return 0


def print_objects(args: argparse.Namespace) -> int:
    models = tuple(args.person_model)
    table = evaluate_objects(args.width, args.height, args.frames, args.noise, models)
    cost = evaluate_cost(args.width, args.height, max(args.frames, 120), models)
    if args.json:
        print(json.dumps({"scenes": table, "cost": cost}))
        return 0
    print(
        f"body prior, {args.width}x{args.height}, {args.frames} frames per scene, noise σ="
        f"{args.noise}; IoU against what should be shown (she and what is in front of her)"
    )
    cols = ["iou", "object_kept", "held_shown", "edge_error", "flicker_static"]
    print(f"{'scene':<13}{'matte':<8}" + "".join(f"{c:>15}" for c in cols))
    for scene, rows in table.items():
        for name, row in rows.items():
            cells = "".join(f"{'-':>15}" if row[c] is None else f"{row[c]:>15.5f}" for c in cols)
            print(f"{scene:<13}{name:<8}" + cells)
    print(f"\ncost per frame, blur, {args.width}x{args.height} (cup-beside scene, ms)")
    ccols = list(next(iter(cost.values())))
    print(f"{'run':<14}" + "".join(f"{c:>21}" for c in ccols))
    for label, crow in cost.items():
        print(f"{label:<14}" + "".join(f"{crow[c]:>21.3f}" for c in ccols))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--noise", type=float, default=3.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--objects", action="store_true", help="the body prior on object scenes")
    ap.add_argument("--person-model", nargs="+", default=["lite", "full"], choices=["lite", "full"])
    ap.add_argument("--guides", action="store_true", help="grey against colour guide")
    args = ap.parse_args(argv)
    if args.objects:
        return print_objects(args)
    if args.guides:
        return print_guides(args)
    table = evaluate(args.width, args.height, args.frames, args.noise)
    if args.json:
        print(json.dumps(table))
        return 0
    print(
        f"matte quality, {args.width}x{args.height}, {args.frames} frames per clip, "
        f"noise σ={args.noise} (levels: {', '.join(q.name for q in QUALITY_LEVELS)})"
    )
    cols = list(next(iter(table.values())))
    print(f"{'config':<18}" + "".join(f"{c:>16}" for c in cols))
    for name, row in table.items():
        print(f"{name:<18}" + "".join(f"{row[c]:>16.5f}" for c in cols))
    default = table["default"]["flicker_static"]
    for name in ("raw", "guided+ramp"):
        if table[name]["flicker_static"] > 0:
            ratio = default / table[name]["flicker_static"]
            print(f"static-background flicker, default / {name}: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
