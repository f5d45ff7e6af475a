"""The model registry: which models ship, where they are, and how to pick one for a frame.

Shipped models are verified against their sha256 when loaded, so a damaged or swapped file is an
error, never a wrong mask.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.errors import ConfigError, ModelError

MODEL_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelSpec:
    name: str
    filename: str
    height: int
    width: int
    sha256: str
    source: str  # the file inside the mediapipe wheel it was converted from
    source_sha256: str
    # The same network folded for ONNX Runtime's CPU provider (engine/models/fold.py): what
    # OnnxRuntimeBackend runs in place of ``filename``; the GPU engines keep ``filename``.
    cpu_filename: str = ""
    cpu_sha256: str = ""

    @property
    def path(self) -> Path:
        return MODEL_DIR / self.filename

    @property
    def cpu_path(self) -> Path:
        return MODEL_DIR / self.cpu_filename

    @property
    def aspect(self) -> float:
        return self.width / self.height


SEGMENTERS: dict[str, ModelSpec] = {
    "general": ModelSpec(
        name="general",
        filename="selfie_segmentation.onnx",
        height=256,
        width=256,
        sha256="929aac2aa2ec6523d10846a09391c000f0a565a5708e675d4b8573dc24f1db1e",
        source="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        source_sha256="9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
        cpu_filename="selfie_segmentation_cpu.onnx",
        cpu_sha256="5cbd387265cb6b61ae8d466738fc9352be4558362c3feee42b71ff55680f5bdb",
    ),
    "landscape": ModelSpec(
        name="landscape",
        filename="selfie_segmentation_landscape.onnx",
        height=144,
        width=256,
        sha256="834b8566a4bfd6b8a0080356d31c08d56a61bae81dcccb19c0fde7d2523bd150",
        source="mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
        source_sha256="a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd",
        cpu_filename="selfie_segmentation_landscape_cpu.onnx",
        cpu_sha256="c3a8d916399ad7a9b551d57e288bbd2f395396d3454b2cb8e2266f10f6c3fa87",
    ),
}

SEGMENTER_CHOICES = ("auto", *SEGMENTERS)


@lru_cache(maxsize=8)
def load_model(name: str) -> bytes:
    """The bytes of a shipped segmenter, checked against its recorded sha256."""
    spec = segmenter(name)
    return _read_shipped(name, spec.path, spec.sha256)


@lru_cache(maxsize=8)
def load_cpu_graph(name: str) -> bytes:
    """The bytes of a shipped segmenter's CPU graph (``fold.py``), checked against its sha256."""
    spec = segmenter(name)
    return _read_shipped(name, spec.cpu_path, spec.cpu_sha256, "`python -m engine.models.fold`")


def onnxruntime_graph(model: bytes) -> bytes:
    """What ONNX Runtime's CPU provider should run for ``model``: a shipped segmenter's CPU graph
    (the same network, folded so that ONNX Runtime keeps it in its NCHWc layout: about 0.84×
    the time on one thread) when ``model`` is that segmenter's converted bytes; else ``model``."""
    digest = hashlib.sha256(model).hexdigest()
    for spec in SEGMENTERS.values():
        if spec.cpu_filename and digest == spec.sha256:
            return load_cpu_graph(spec.name)
    return model


def _read_shipped(
    name: str, path: Path, sha256: str, remedy: str = "run `make models` to rebuild it"
) -> bytes:
    """A shipped MediaPipe model's bytes, checked against its recorded sha256."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"model {name!r}: cannot read {path}: {exc.strerror}") from exc
    check_sha256(data, name, path, sha256, remedy)
    return data


def check_sha256(data: bytes, name: str, path: Path, expected: str, remedy: str) -> None:
    """Refuse a shipped model file whose bytes are not the ones recorded."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise ModelError(
            f"model {name!r}: {path} has sha256 {digest[:12]}…, expected {expected[:12]}… "
            f"(damaged or replaced; {remedy})"
        )


def segmenter(name: str) -> ModelSpec:
    try:
        return SEGMENTERS[name]
    except KeyError:
        raise ConfigError(
            f"unknown segmentation model {name!r}; expected one of {', '.join(SEGMENTERS)}"
        ) from None


def choose_segmenter(
    width: int, height: int, selection: str = "auto", landscape_min_aspect: float = 1.5
) -> ModelSpec:
    """The segmenter for a frame: by name, or by the frame's aspect ratio when ``auto``.

    The landscape model (256×144) suits frames at least ``landscape_min_aspect`` times wider than
    tall (16:9 is 1.78); narrower frames (4:3, square, portrait) go to the general model (256×256).
    """
    if selection != "auto":
        return segmenter(selection)
    return SEGMENTERS["landscape" if width >= landscape_min_aspect * height else "general"]


@dataclass(frozen=True)
class BodySpec:
    """A BlazePose landmark model (MediaPipe, Apache-2.0): 256×256 crop in; 39 landmarks, a
    presence score and a person segmentation out (see PROVENANCE.md)."""

    name: str
    filename: str
    sha256: str
    package: str  # where ``make models`` takes the .tflite from
    source: str  # the file inside that package
    source_sha256: str
    size: int = 256

    @property
    def path(self) -> Path:
        return MODEL_DIR / self.filename


NPM_POSE = "@mediapipe/pose@0.5.1675469404"
BODY_MODELS: dict[str, BodySpec] = {
    "lite": BodySpec(
        name="lite",
        filename="pose_landmark_lite.onnx",
        sha256="4c5f1f44c735075dfd800a20ffff3baee6fa1fe190aabacec944495ad2082345",
        package=f"npm:{NPM_POSE}",
        source="package/pose_landmark_lite.tflite",
        source_sha256="f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
    ),
    "full": BodySpec(
        name="full",
        filename="pose_landmark_full.onnx",
        sha256="b96133fc87e8d6cd7f6c0cc4fc880cd271005a2d193e3eef925f440c8d8ef4ac",
        package="pypi:mediapipe==0.10.21",
        source="mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
        source_sha256="e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f",
    ),
}
PERSON_MODEL_CHOICES = ("off", *BODY_MODELS)


@lru_cache(maxsize=4)
def load_body_model(name: str) -> bytes:
    """The bytes of a shipped body model, checked against its recorded sha256."""
    spec = BODY_MODELS.get(name)
    if spec is None:
        raise ConfigError(
            f"unknown person model {name!r}; expected one of {', '.join(PERSON_MODEL_CHOICES)}"
        )
    return _read_shipped(name, spec.path, spec.sha256)


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator LiveFX trained itself (``engine/models/train``; see PROVENANCE.md)."""

    name: str
    filename: str
    sha256: str

    @property
    def path(self) -> Path:
        return MODEL_DIR / self.filename


GENERATORS: dict[str, GeneratorSpec] = {
    "cartoon": GeneratorSpec(
        "cartoon",
        "cartoon.onnx",
        "b0e6259b484bf34438c61caf3eca8b31f3c027e51b79530fe40d0a39c550f265",
    ),
    "enhance": GeneratorSpec(
        "enhance",
        "enhance.onnx",
        "dad4b8d1e95540cbc654da908ec5e32d0c2ba2bb691eb0a55165b3a7ed952b43",
    ),
}


def load_generator(name_or_path: str) -> tuple[bytes, str]:
    """(ONNX bytes, a label) of a shipped generator by name (checked against its sha256), or
    of a user's .onnx file."""
    spec = GENERATORS.get(name_or_path)
    path = spec.path if spec else Path(name_or_path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"model {name_or_path!r}: {path} does not exist") from None
    except OSError as exc:
        raise ModelError(f"model {name_or_path!r}: cannot read {path}: {exc.strerror}") from None
    if spec is None:
        return blob, path.name
    check_sha256(blob, spec.name, path, spec.sha256, "`make train` makes it again")
    return blob, spec.name
