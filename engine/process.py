"""Offline processing: an image or a video file through the pipeline to another file."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
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
    preset: str | None = None,
) -> dict[str, Any]:
    """Process ``src`` into ``dst``; returns the summary (frames, per-stage median/p95 ms, and
    for a video each thread's share of the wall time).

    A video is decoded, processed and encoded on three threads joined by small bounded queues:
    the frames keep their order and none is dropped. ``preset`` is the encoder's (x264's names;
    ``media.FILE_PRESET`` by default).

    A video that turns out truncated or corrupt part-way still gets its processed frames written
    (the output file is closed properly) before the ``InputError`` is raised.
    """
    src_p, dst_p = Path(src), Path(dst)
    if src_p.resolve() == dst_p.resolve():
        raise InputError(f"{dst_p}: output would overwrite the input")
    media.check_writable(dst_p)
    pipeline = make_pipeline(config)
    try:
        return _run(pipeline, src_p, dst_p, config, max_frames, progress, preset)
    finally:
        pipeline.close()


def _run(
    pipeline: Pipeline,
    src_p: Path,
    dst_p: Path,
    config: PipelineConfig,
    max_frames: int | None,
    progress: bool | None,
    preset: str | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    busy: dict[str, float] = {}
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
            try:
                busy = _overlapped(pipeline, reader, dst_p, max_frames, bar, preset)
            finally:
                bar.close()
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
        "wall_s": round(wall := time.perf_counter() - started, 3),
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
    if busy:
        # Each thread's busy time (not its waits) as a share of the whole command's wall time:
        # overlapped, so the shares add up to more than 100 % when the threads keep up.
        summary["preset"] = preset or media.FILE_PRESET
        summary["threads"] = {
            k: {"busy_s": round(v, 3), "share": round(v / max(wall, 1e-9), 3)}
            for k, v in busy.items()
        }
    return summary


QUEUE_FRAMES = 4  # frames each queue holds: enough to absorb one slow frame, little memory
_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item``, waiting for room unless ``stop`` is set (then False)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _overlapped(
    pipeline: Pipeline,
    reader: media.VideoReader,
    dst_p: Path,
    max_frames: int | None,
    bar: tqdm,
    preset: str | None,
) -> dict[str, float]:
    """Decode → process → encode, one thread each (this one processes). Returns each thread's
    busy seconds. An error in any thread stops the others; a decode error (a truncated file)
    is raised after every frame before it has been processed and written."""
    decoded: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
    prepared: queue.Queue[Any] = queue.Queue(QUEUE_FRAMES)
    stop = threading.Event()  # the processing thread is done with the input
    abort = threading.Event()  # the encoder failed: nothing more is written
    busy = {"decode": 0.0, "process": 0.0, "encode": 0.0}
    failures: list[BaseException] = []
    writer: media.VideoWriter | None = None

    def decode() -> None:
        frames = iter(reader)
        try:
            while not stop.is_set():
                t = time.perf_counter()
                frame = next(frames, _END)
                busy["decode"] += time.perf_counter() - t
                if not _put(decoded, frame, stop) or frame is _END:
                    return
        except BaseException as exc:  # a truncated or corrupt file: after the frames before it
            _put(decoded, _Failed(exc), stop)

    def encode() -> None:
        try:
            while True:
                item = prepared.get()
                if item is _END:
                    return
                t = time.perf_counter()
                assert writer is not None
                writer.encode(item)
                busy["encode"] += time.perf_counter() - t
        except BaseException as exc:  # a full disk, a codec refusing the frame
            failures.append(exc)
            abort.set()
            while prepared.get() is not _END:  # let the processing thread finish its puts
                pass

    decoder = threading.Thread(target=decode, name="livefx-decode", daemon=True)
    encoder = threading.Thread(target=encode, name="livefx-encode", daemon=True)
    decoder.start()
    input_error: BaseException | None = None
    try:
        while not abort.is_set():
            item = decoded.get()
            if item is _END:
                break
            if isinstance(item, _Failed):
                input_error = item.exc
                break
            t = time.perf_counter()
            if writer is None:
                writer = media.VideoWriter(
                    dst_p, item.width, item.height, reader.rate, preset=preset
                )
                encoder.start()
            out = writer.prepare(pipeline.process(item))  # a copy: the pipeline reuses its output
            busy["process"] += time.perf_counter() - t
            prepared.put(out)
            bar.update(1)
            if max_frames is not None and pipeline.frames >= max_frames:
                break
    finally:
        stop.set()
        decoder.join()
        if writer is not None:
            prepared.put(_END)
            encoder.join()
            if not abort.is_set():
                t = time.perf_counter()
                writer.close()  # flushes the encoder's delayed frames
                busy["encode"] += time.perf_counter() - t
            else:
                with contextlib.suppress(Exception):
                    writer.container.close()
    if failures:
        raise failures[0]
    if input_error is not None:
        raise input_error
    return busy


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
    if "threads" in summary:
        shares = ", ".join(
            f"{k} {v['busy_s']:.2f} s ({v['share']:.0%})" for k, v in summary["threads"].items()
        )
        lines.append(f"  threads, busy share of the wall time (overlapped): {shares}")
        lines.append(f"  encoder preset {summary['preset']}")
    return "\n".join(lines)
