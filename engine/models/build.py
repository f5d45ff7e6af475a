"""Rebuild the shipped segmenters from MediaPipe's own wheel (``make models``).

Fetches ``mediapipe==0.10.21`` with ``pip download --no-deps`` (the last release that ships the
.tflite files), extracts the two selfie segmenters, checks their sha256 against the registry,
converts them with ``engine.models.convert`` and compares the result, byte for byte, with the
committed .onnx files. This is a build step; nothing here runs when LiveFX serves or processes.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from engine.errors import InputError, ModelError
from engine.models.registry import SEGMENTERS, ModelSpec

log = logging.getLogger(__name__)

MEDIAPIPE_VERSION = "0.10.21"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_wheel(dest: Path) -> Path:
    """Download the mediapipe wheel for this platform into ``dest``."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
        f"mediapipe=={MEDIAPIPE_VERSION}", "-d", str(dest),
    ]  # fmt: skip
    log.info("fetching mediapipe==%s: %s", MEDIAPIPE_VERSION, " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob(f"mediapipe-{MEDIAPIPE_VERSION}-*.whl"))
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise InputError(f"pip download mediapipe=={MEDIAPIPE_VERSION} failed: {last}")
    return wheels[0]


def extract_sources(wheel: Path) -> dict[str, bytes]:
    """The .tflite bytes of every registered segmenter, checked against their sha256."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{wheel}: not a readable wheel: {exc}") from exc
    out = {}
    with zf:
        for spec in SEGMENTERS.values():
            try:
                data = zf.read(spec.source)
            except KeyError:
                raise ModelError(f"{wheel}: has no {spec.source}") from None
            if sha256(data) != spec.source_sha256:
                raise ModelError(
                    f"{wheel}: {spec.source} has sha256 {sha256(data)}, "
                    f"expected {spec.source_sha256}"
                )
            out[spec.name] = data
    return out


def convert_spec(spec: ModelSpec, tflite: bytes) -> bytes:
    from engine.models.convert import convert_tflite

    return convert_tflite(
        tflite,
        graph_name=Path(spec.filename).stem,
        doc=f"MediaPipe selfie segmenter ({spec.name}) converted from "
        f"mediapipe=={MEDIAPIPE_VERSION} {spec.source} by LiveFX; Apache-2.0.",
    )


def build(wheel: Path | None, out_dir: Path | None, check: bool) -> list[str]:
    """Convert; write to ``out_dir`` if given; with ``check``, fail unless equal to the shipped."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="livefx-models-") as tmp:
        wheel = wheel or fetch_wheel(Path(tmp))
        sources = extract_sources(wheel)
        mismatched = []
        for name, tflite in sources.items():
            spec = SEGMENTERS[name]
            onnx_bytes = convert_spec(spec, tflite)
            digest = sha256(onnx_bytes)
            same = spec.path.exists() and spec.path.read_bytes() == onnx_bytes
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / spec.filename).write_bytes(onnx_bytes)
            if not same:
                mismatched.append(spec.filename)
            lines.append(
                f"{spec.filename}: {len(onnx_bytes)} bytes sha256 {digest} "
                f"({'identical to' if same else 'DIFFERS from'} the committed file)"
            )
        if check and mismatched:
            raise ModelError(
                f"converted models differ from the committed ones: {', '.join(mismatched)}"
            )
    return lines
