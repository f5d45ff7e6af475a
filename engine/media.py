"""Files in and out, at the edge: images through OpenCV, videos through PyAV.

This is the only place (with the server's track adapter) that converts between ``av.VideoFrame`` /
image arrays and ``FrameBuffer``. Every failure of a file — missing, unreadable, truncated, empty —
becomes an ``InputError`` with one line that names the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import cv2
import numpy as np

from engine.errors import InputError
from engine.frame import FrameBuffer
from engine.ops import cpu

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_CODECS = {
    ".mp4": "libx264",
    ".mkv": "libx264",
    ".mov": "libx264",
    ".webm": "libvpx",
    ".avi": "mpeg4",
    ".y4m": "rawvideo",
}
# x264's presets, fastest first, with libvpx's VP8 speed (cpu-used) and deadline for each.
VP8_SPEED = {
    "ultrafast": (16, "realtime"),
    "superfast": (12, "realtime"),
    "veryfast": (8, "realtime"),
    "faster": (6, "realtime"),
    "fast": (4, "realtime"),
    "medium": (2, "good"),
    "slow": (1, "good"),
    "slower": (0, "good"),
    "veryslow": (0, "best"),
}
FILE_PRESET = "superfast"  # files' default: measured in benchmarks/process.py (README)


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_readable(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{p}: permission denied")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty")
    return p


def check_writable(path: str | Path) -> Path:
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{p}: directory {parent} does not exist")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a file name")
    return p


# -- images -------------------------------------------------------------------------------------


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB (grey and alpha images are converted)."""
    p = check_readable(path)
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise InputError(f"{p}: not an image OpenCV can decode (or the file is truncated)")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise InputError(f"{p}: zero-sized image")
    rgb: np.ndarray = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return rgb


def read_image(path: str | Path) -> FrameBuffer:
    """An image file as a full-range BT.601 yuv420p frame (JPEG's own convention)."""
    return cpu.rgb_to_yuv420p(read_rgb(path), colorspace="bt601", full_range=True)


def write_image(path: str | Path, frame: FrameBuffer) -> None:
    p = check_writable(path)
    if p.suffix.lower() not in IMAGE_EXTENSIONS:
        raise InputError(f"{p}: unknown image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
    rgb = cpu.yuv420p_to_rgb(frame)
    if frame.u.min() == frame.u.max() == 128 and frame.v.min() == frame.v.max() == 128:
        img = rgb[..., 0]  # grey frames (the matte) are written as single-channel images
    else:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(p.suffix.lower(), img)
    if not ok:
        raise InputError(f"{p}: OpenCV could not encode the image")
    encoded.tofile(p)


# -- videos -------------------------------------------------------------------------------------


def _plane_rows(plane: Any) -> np.ndarray:
    """A PyAV plane's memory as a (height, line_size) array: a view, not a copy."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)


def luma_view(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane of a yuv420p ``av.VideoFrame`` as a (height, width) view: writable, no copy."""
    return _plane_rows(frame.planes[0])[:, : frame.width]


def frame_from_av(frame: av.VideoFrame) -> FrameBuffer:
    """An av.VideoFrame as a FrameBuffer: yuv420p planes are viewed, not copied."""
    if frame.width == 0 or frame.height == 0:
        raise InputError("zero-sized video frame")
    if frame.format.name not in ("yuv420p", "yuvj420p"):
        frame = frame.reformat(format="yuv420p")
    planes = [_plane_rows(plane)[:, : plane.width] for plane in frame.planes]
    # FFmpeg's AVColorRange 2 is JPEG (full range); AVColorSpace 1 is BT.709. Unspecified
    # (the usual case for webcams and WebRTC) means limited-range BT.601.
    full = frame.format.name == "yuvj420p" or int(frame.color_range) == 2
    colorspace = "bt709" if int(frame.colorspace) == 1 else "bt601"
    return FrameBuffer(
        planes[0],
        planes[1],
        planes[2],
        pts=frame.pts,
        time_base=frame.time_base,
        colorspace=colorspace,
        full_range=full,
    )


def frame_to_av(frame: FrameBuffer, out: av.VideoFrame | None = None) -> av.VideoFrame:
    """A FrameBuffer as a new (or reused, same size) yuv420p av.VideoFrame."""
    if out is None or out.width != frame.width or out.height != frame.height:
        out = av.VideoFrame(frame.width, frame.height, "yuv420p")
    for plane, src in zip(out.planes, (frame.y, frame.u, frame.v), strict=True):
        _plane_rows(plane)[:, : plane.width] = src
    out.color_range = 2 if frame.full_range else 1
    out.colorspace = 1 if frame.colorspace == "bt709" else 5
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


class VideoReader:
    """Decodes the first video stream of a file into FrameBuffers."""

    def __init__(self, path: str | Path) -> None:
        self.path = check_readable(path)
        try:
            self.container: Any = av.open(str(self.path), mode="r")
        except av.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot open as a video: {_first_line(exc)}") from exc
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{self.path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        if not cc.width or not cc.height:
            self.container.close()
            raise InputError(f"{self.path}: video stream has a zero frame size")
        self.width, self.height = int(cc.width), int(cc.height)
        rate = self.stream.average_rate or self.stream.guessed_rate or Fraction(30)
        self.rate = Fraction(rate)
        self.declared_frames = int(self.stream.frames or 0)
        self.decoded = 0

    def __iter__(self) -> Iterator[FrameBuffer]:
        try:
            for frame in self.container.decode(self.stream):
                fb = frame_from_av(frame)
                self.decoded += 1
                yield fb
        except av.FFmpegError as exc:
            raise InputError(
                f"{self.path}: corrupt or truncated video after {self.decoded} frames: "
                f"{_first_line(exc)}"
            ) from exc
        if self.decoded == 0:
            raise InputError(f"{self.path}: no video frame could be decoded")
        if self.declared_frames and self.decoded < self.declared_frames:
            raise InputError(
                f"{self.path}: video is truncated: decoded {self.decoded} of "
                f"{self.declared_frames} frames"
            )

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LoopingVideo:
    """Frames of a video file, starting again from the first after the last (backgrounds)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader = VideoReader(self.path)
        self._frames: Iterator[FrameBuffer] = iter(self._reader)
        self.loops = 0

    def next_frame(self) -> FrameBuffer:
        try:
            return next(self._frames)
        except StopIteration:
            pass
        except InputError:
            if self._reader.decoded == 0:
                raise
            # A damaged tail: loop on what decodes.
        self._reader.close()
        self.loops += 1
        self._reader = VideoReader(self.path)
        self._frames = iter(self._reader)
        try:
            return next(self._frames)
        except StopIteration:
            raise InputError(f"{self.path}: no video frame could be decoded") from None

    def close(self) -> None:
        self._reader.close()


class VideoWriter:
    """Encodes FrameBuffers to a file; the codec follows the extension (VIDEO_CODECS)."""

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        rate: Fraction,
        *,
        bitrate: int | None = None,
        preset: str | None = None,
    ) -> None:
        """``preset``: an x264 preset name (its default here: ``FILE_PRESET``); VP8 maps it onto
        libvpx's speed (``VP8_SPEED``); other codecs ignore it. The encoders pick their thread
        count from the cores (PyAV's default)."""
        self.path = check_writable(path)
        preset = preset or FILE_PRESET
        if preset not in VP8_SPEED:
            raise InputError(f"preset: {preset!r} is not one of {', '.join(VP8_SPEED)}")
        ext = self.path.suffix.lower()
        if ext not in VIDEO_CODECS:
            raise InputError(
                f"{self.path}: unknown video extension; use one of {', '.join(VIDEO_CODECS)}"
            )
        codec = VIDEO_CODECS[ext]
        if codec != "rawvideo" and (width % 2 or height % 2):
            raise InputError(f"{self.path}: {codec} needs an even frame size, got {width}×{height}")
        self.container: Any = av.open(str(self.path), mode="w")
        self.rate = Fraction(rate).limit_denominator(1001 * 1000)
        self.stream: Any = cast(Any, self.container.add_stream(codec, rate=self.rate))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.codec_context.time_base = 1 / self.rate
        if codec == "libx264":
            self.stream.options = {"crf": "18", "preset": preset}
            # Frame threads, not PyAV's default slices: a file wants throughput, not latency
            # (superfast at 720p: 5.2 against 5.7 ms of CPU a frame, same size).
            self.stream.codec_context.thread_type = "FRAME"
        elif codec == "libvpx":
            speed, deadline = VP8_SPEED[preset]
            self.stream.options = {"crf": "10", "deadline": deadline, "cpu-used": str(speed)}
            self.stream.bit_rate = bitrate or 8_000_000
        self._frame: av.VideoFrame | None = None
        self._next_pts = 0

    def prepare(self, frame: FrameBuffer, *, reuse: bool = False) -> av.VideoFrame:
        """``frame`` copied into an av.VideoFrame on the output's clock, ready for ``encode``.

        A new av frame each call unless ``reuse`` (then the writer's one frame: only for a caller
        that encodes it before preparing the next)."""
        out = frame_to_av(frame, self._frame if reuse else None)
        if reuse:
            self._frame = out
        # Re-time onto the output's 1/rate clock, keeping the input's timing where it has one.
        pts = self._next_pts
        if frame.pts is not None and frame.time_base is not None:
            pts = max(pts, round(frame.pts * frame.time_base * self.rate))
        out.pts = pts
        out.time_base = 1 / self.rate
        self._next_pts = pts + 1
        return out

    def encode(self, frame: av.VideoFrame | None) -> None:
        """Encode and mux one prepared frame, or flush the encoder (``None``). A failed write (a
        full disk) is an InputError naming the file."""
        try:
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"{self.path}: cannot write: {_first_line(exc)}") from exc

    def write(self, frame: FrameBuffer) -> None:
        self.encode(self.prepare(frame, reuse=True))

    def close(self) -> None:
        try:
            self.encode(None)
        finally:
            try:
                self.container.close()
            except (av.FFmpegError, OSError) as exc:
                raise InputError(f"{self.path}: cannot write: {_first_line(exc)}") from exc

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
