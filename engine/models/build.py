"""Rebuild the shipped MediaPipe models from MediaPipe's own packages (``make models``).

Fetches ``mediapipe==0.10.21`` with ``pip download --no-deps`` (the last release that ships the
.tflite files) and the npm package ``@mediapipe/pose`` with ``npm pack`` (the only package that
ships the lite BlazePose landmark model), extracts the .tflite files, checks their sha256 against
the registry, converts them with ``engine.models.convert`` and compares the result, byte for
byte, with the committed .onnx files. This is a build step; nothing here runs when LiveFX serves
or processes.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from engine.errors import InputError, ModelError
from engine.models.registry import BODY_MODELS, NPM_POSE, SEGMENTERS, BodySpec, ModelSpec

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


def fetch_npm(dest: Path) -> Path:
    """``npm pack`` the pose package into ``dest`` (the registry's tarball, not installed)."""
    npm = shutil.which("npm")
    if npm is None:
        raise InputError(f"npm is needed to fetch {NPM_POSE} (Debian: apt install npm)")
    cmd = [npm, "pack", NPM_POSE, "--silent", "--pack-destination", str(dest)]
    log.info("fetching %s: %s", NPM_POSE, " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    tarballs = sorted(dest.glob("mediapipe-pose-*.tgz"))
    if result.returncode != 0 or not tarballs:
        last = (result.stderr.strip().splitlines() or ["no tarball made"])[-1]
        raise InputError(f"npm pack {NPM_POSE} failed: {last}")
    return tarballs[0]


def _checked(data: bytes, where: Path, member: str, expected: str) -> bytes:
    if sha256(data) != expected:
        raise ModelError(f"{where}: {member} has sha256 {sha256(data)}, expected {expected}")
    return data


def extract_body(spec: BodySpec, wheel: Path, tarball: Path | None) -> bytes:
    """A body model's .tflite bytes from its package, checked against its sha256."""
    if spec.package.startswith("npm:"):
        assert tarball is not None
        try:
            with tarfile.open(tarball, "r:gz") as tf:
                member = tf.extractfile(spec.source)
                if member is None:
                    raise ModelError(f"{tarball}: {spec.source} is not a file")
                data = member.read()
        except KeyError:
            raise ModelError(f"{tarball}: has no {spec.source}") from None
        except (OSError, tarfile.TarError) as exc:
            raise InputError(f"{tarball}: not a readable npm tarball: {exc}") from exc
        return _checked(data, tarball, spec.source, spec.source_sha256)
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(spec.source)
        except KeyError:
            raise ModelError(f"{wheel}: has no {spec.source}") from None
    return _checked(data, wheel, spec.source, spec.source_sha256)


def convert_body(spec: BodySpec, tflite: bytes) -> bytes:
    from engine.models.convert import convert_tflite

    where = NPM_POSE if spec.package.startswith("npm:") else f"mediapipe=={MEDIAPIPE_VERSION}"
    return convert_tflite(
        tflite,
        graph_name=Path(spec.filename).stem,
        outputs={"Identity": "landmarks", "Identity_1": "pose_flag", "Identity_2": "segmentation"},
        fp16_weights=True,
        doc=f"MediaPipe BlazePose landmark model ({spec.name}) converted from {where} "
        f"{spec.source} by LiveFX; Apache-2.0. Outputs: landmarks [N, 195] (39 × x, y, z, "
        "visibility and presence logits; x, y in input pixels), pose_flag [N, 1] (presence "
        "probability), segmentation [N, 1, 256, 256] (person logits).",
    )


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


def build(
    wheel: Path | None, out_dir: Path | None, check: bool, npm_tarball: Path | None = None
) -> list[str]:
    """Convert; write to ``out_dir`` if given; with ``check``, fail unless equal to the shipped."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="livefx-models-") as tmp:
        wheel = wheel or fetch_wheel(Path(tmp))
        tarball = npm_tarball or fetch_npm(Path(tmp))
        jobs: list[tuple[ModelSpec | BodySpec, bytes]] = []
        for name, tflite in extract_sources(wheel).items():
            jobs.append((SEGMENTERS[name], convert_spec(SEGMENTERS[name], tflite)))
        for body in BODY_MODELS.values():
            jobs.append((body, convert_body(body, extract_body(body, wheel, tarball))))
        mismatched = []
        for target, onnx_bytes in jobs:
            digest = sha256(onnx_bytes)
            same = target.path.exists() and target.path.read_bytes() == onnx_bytes
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                (out_dir / target.filename).write_bytes(onnx_bytes)
            if not same:
                mismatched.append(target.filename)
            lines.append(
                f"{target.filename}: {len(onnx_bytes)} bytes sha256 {digest} "
                f"({'identical to' if same else 'DIFFERS from'} the committed file)"
            )
        if check and mismatched:
            raise ModelError(
                f"converted models differ from the committed ones: {', '.join(mismatched)}"
            )
    return lines
