"""Offline processing: an image or a video file through the pipeline to another file."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from engine import media
from engine.config import PipelineConfig, describe
from engine.errors import InputError
from engine.pipeline import Pipeline, make_pipeline

log = logging.getLogger(__name__)


def process_file(
    src: str | Path,
    dst: str | Path,
    config: PipelineConfig,
    *,
    max_frames: int | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Process ``src`` into ``dst``; returns the summary (frames, per-stage median/p95 ms).

    A video that turns out truncated or corrupt part-way still gets its processed frames written
    (the output file is closed properly) before the ``InputError`` is raised.
    """
    src_p, dst_p = Path(src), Path(dst)
    if src_p.resolve() == dst_p.resolve():
        raise InputError(f"{dst_p}: output would overwrite the input")
    media.check_writable(dst_p)
    pipeline = make_pipeline(config)
    try:
        return _run(pipeline, src_p, dst_p, config, max_frames, progress)
    finally:
        pipeline.close()


def _run(
    pipeline: Pipeline,
    src_p: Path,
    dst_p: Path,
    config: PipelineConfig,
    max_frames: int | None,
    progress: bool | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    if media.is_image_path(src_p):
        if not media.is_image_path(dst_p):
            kinds = ", ".join(media.IMAGE_EXTENSIONS)
            raise InputError(f"{dst_p}: an image input needs an image output ({kinds})")
        out = pipeline.process(media.read_image(src_p))
        media.write_image(dst_p, out)
        width, height = out.width, out.height
    else:
        if media.is_image_path(dst_p):
            raise InputError(
                f"{dst_p}: a video input needs a video output ({', '.join(media.VIDEO_CODECS)})"
            )
        with media.VideoReader(src_p) as reader:
            width, height = reader.width, reader.height
            total = reader.declared_frames or None
            if max_frames is not None and total is not None:
                total = min(total, max_frames)
            bar = tqdm(
                total=total,
                unit="frame",
                disable=not progress if progress is not None else None,
                file=sys.stderr,
                desc=src_p.name,
            )
            writer: media.VideoWriter | None = None
            try:
                for frame in reader:
                    if writer is None:
                        writer = media.VideoWriter(dst_p, frame.width, frame.height, reader.rate)
                    writer.write(pipeline.process(frame))
                    bar.update(1)
                    if max_frames is not None and pipeline.frames >= max_frames:
                        break
            finally:
                bar.close()
                if writer is not None:
                    writer.close()
    summary: dict[str, Any] = {
        "input": str(src_p),
        "output": str(dst_p),
        "effect": config.effect.name,
        "backend": pipeline.backend_name,
        "backend_reason": pipeline.backend_reason,
        "model": pipeline.model.name if pipeline.model else None,
        "width": width,
        "height": height,
        "frames": pipeline.frames,
        "wall_s": round(time.perf_counter() - started, 3),
        "setup_ms": round(pipeline.setup_ns / 1e6, 3),
        "inferences": pipeline.session.inferences,
        "reused_masks": pipeline.session.reused,
        "quality_changes": list(pipeline.budget.events),
        "stages": {
            k: {"median_ms": v["median_ms"], "p95_ms": v["p95_ms"]}
            for k, v in pipeline.times.summary().items()
        },
        "config": describe(config),
    }
    return summary


def format_summary(summary: dict[str, Any], as_json: bool) -> str:
    if as_json:
        return json.dumps(summary, separators=(",", ":"))
    lines = [
        f"{summary['input']} -> {summary['output']}: {summary['frames']} frame(s) "
        f"{summary['width']}x{summary['height']}, effect {summary['effect']}, "
        f"model {summary['model']}, {summary['wall_s']} s",
        f"  backend {summary['backend']} ({summary['backend_reason']})",
    ]
    lines.append(f"  {'stage':<12}{'median ms':>10}{'p95 ms':>10}")
    for stage, s in summary["stages"].items():
        lines.append(f"  {stage:<12}{s['median_ms']:>10.3f}{s['p95_ms']:>10.3f}")
    return "\n".join(lines)
