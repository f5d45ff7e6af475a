"""A BlazePose landmark model on ONNX Runtime (CPU): one 256×256 crop in, three outputs bound.

Outputs, as MediaPipe's pose solution reads them:

- ``landmarks``: 39 × (x, y, z, visibility, presence); x, y in crop pixels (0…256), z in the same
  scale, visibility and presence as logits. 0–32 are the body's landmarks, 33 and 34 the
  alignment points MediaPipe derives the next crop from (hips' centre, and a point on the circle
  around the body).
- ``pose_flag``: the probability that a person is in the crop.
- ``segmentation``: the person logits at 256×256.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import ModelError
from engine.inference.onnxruntime import cpu_session
from engine.models.registry import BODY_MODELS, load_body_model

SIZE = 256
OUTPUTS = {"landmarks": (1, 195), "pose_flag": (1, 1), "segmentation": (1, 1, SIZE, SIZE)}


@dataclass
class BodyOutput:
    landmarks: np.ndarray  # (39, 5) float32, raw
    flag: float  # presence probability
    segmentation: np.ndarray  # (256, 256) float32 logits (a view into the model's buffer)

    def visibility(self, index: int) -> float:
        return float(1.0 / (1.0 + np.exp(-float(self.landmarks[index, 3]))))


class BodyModel:
    """Runs one shipped body model (``lite`` or ``full``) on ONNX Runtime's CPU provider."""

    def __init__(self, name: str = "lite", threads: int = 1, model: bytes | None = None) -> None:
        if name not in BODY_MODELS and model is None:
            raise ModelError(
                f"unknown body model {name!r}; expected one of {', '.join(BODY_MODELS)}"
            )
        blob = model if model is not None else load_body_model(name)
        self.session = cpu_session(blob, threads, "the body model")
        names = [o.name for o in self.session.get_outputs()]
        if sorted(names) != sorted(OUTPUTS) or len(self.session.get_inputs()) != 1:
            raise ModelError(f"not a LiveFX body model: outputs {names}, expected {list(OUTPUTS)}")
        self.name = name
        self.input = np.zeros((1, 3, SIZE, SIZE), np.float32)
        self.outputs = {k: np.zeros(shape, np.float32) for k, shape in OUTPUTS.items()}
        self._binding = self.session.io_binding()
        in_name = self.session.get_inputs()[0].name
        self._binding.bind_input(
            in_name, "cpu", 0, np.float32, list(self.input.shape), self.input.ctypes.data
        )
        for k, buf in self.outputs.items():
            self._binding.bind_output(k, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)

    def run(self) -> BodyOutput:
        """Run on ``self.input`` (1×3×256×256 RGB float32 in [0, 1])."""
        self.session.run_with_iobinding(self._binding)
        return BodyOutput(
            self.outputs["landmarks"].reshape(39, 5),
            float(self.outputs["pose_flag"][0, 0]),
            self.outputs["segmentation"][0, 0],
        )

    def run_rgb(self, crop: np.ndarray) -> BodyOutput:
        """Run on a 256×256×3 uint8 RGB crop."""
        if crop.shape != (SIZE, SIZE, 3):
            raise ModelError(f"body model input must be {SIZE}×{SIZE}×3, got {crop.shape}")
        np.divide(crop.transpose(2, 0, 1), np.float32(255), out=self.input[0], casting="unsafe")
        return self.run()
