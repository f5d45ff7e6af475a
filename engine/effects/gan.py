"""``gan``: an image-to-image generator (LiveFX's cartoon or enhance, or a user's ONNX model)
on the whole frame or on the person only."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from engine.config import EffectConfig
from engine.effects.base import Effect, register
from engine.errors import ModelError
from engine.frame import FrameBuffer
from engine.inference import InferenceBackend, create_backend
from engine.inference.onnxruntime import DynamicShapeError
from engine.models.registry import load_generator
from engine.ops import cpu, fused
from engine.ops.guided import GuidedUpsampler, ResidualUpsampler

Upsampler = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], None]

if TYPE_CHECKING:
    from engine.pipeline.state import FrameState

log = logging.getLogger(__name__)

EXPECTED = (
    "expected an image-to-image model: one float input N×3×H×W (RGB in [0, 1]) and one output "
    "of the same shape (any size, or a fixed one the frames are resized to)"
)

# The guided filter's regularisation per shipped model (0–255 scale): the larger, the more the
# full-size frame's own small variations (noise, blocking) are smoothed where the generator's
# result is flat.
GUIDED_EPS = {"cartoon": 4.0, "enhance": 1.0}
GUIDED_NOISE_EPS = {"cartoon": 0.0, "enhance": 1.0}


def check_generator(model: bytes, label: str, threads: int = 1) -> tuple[int, int] | None:
    """Refuse, with one line, a model that is not an RGB image-to-image network. Returns the
    model's own (width, height) when its input size is fixed, None when it takes any size."""
    try:
        try:  # a fixed-size model loads at its own size
            backend = create_backend("onnxruntime", model, input_shape=None, threads=threads)
        except DynamicShapeError:
            backend = create_backend(
                "onnxruntime", model, input_shape=(1, 3, 64, 64), threads=threads
            )
    except ModelError as exc:
        raise ModelError(f"model {label}: {EXPECTED}; {exc}") from None
    shape = tuple(backend.input.shape)
    if len(shape) != 4 or shape[1] != 3 or tuple(backend.output.shape) != shape:
        raise ModelError(
            f"model {label}: {EXPECTED}; this one maps {shape} to {tuple(backend.output.shape)}"
        )
    if shape == (1, 3, 64, 64):  # probed: any size (a fixed 64×64 model also runs at 64×64)
        try:
            create_backend("onnxruntime", model, input_shape=(1, 3, 68, 72), threads=threads)
        except ModelError:
            return 64, 64
        return None
    return shape[3], shape[2]


@register
class GanEffect(Effect):
    name = "gan"
    composites = False

    def __init__(self, config: EffectConfig, threads: int = 1) -> None:
        super().__init__(config, threads)
        self.model, self.label = load_generator(config.model)
        self.fixed_size = check_generator(self.model, self.label, threads)
        if self.fixed_size:
            log.info(
                "model %s takes %d×%d frames only: resized to it", self.label, *self.fixed_size
            )
        self.needs_matte = config.region == "person"  # type: ignore[misc]
        self._backends: dict[tuple[int, int], InferenceBackend] = {}
        self._pre: dict[tuple[int, int], cpu.Preprocessor] = {}
        self._to_yuv = cpu.RgbToYuv420p()
        # How a reduced-size result comes back to full size: "guided", a self-guided fast guided
        # filter (the frame's edges and detail, the generator's colours and shapes), for every
        # model; benchmarks/gan_quality.py also measures "residual" (the generator's change at
        # the low size, upsampled and added to the full frame) and "bilinear".
        self.upsampling = "guided"
        self._upsamplers: dict[str, Upsampler] = {
            "guided": GuidedUpsampler(
                eps=GUIDED_EPS.get(config.model, 4.0),
                noise_eps=GUIDED_NOISE_EPS.get(config.model, 0.0),
            ),
            "residual": ResidualUpsampler(),
        }
        self._styled: FrameBuffer | None = None

    def configure(self, frame: FrameBuffer) -> None:
        self._styled = frame.like()

    def _size(self, frame: FrameBuffer, scale: float) -> tuple[int, int]:
        if self.fixed_size:
            return self.fixed_size
        short = min(frame.width, frame.height)
        if self.config.gan_size and short > self.config.gan_size:
            scale *= self.config.gan_size / short
        # Generators work in quarter-resolution steps: multiples of 4.
        w = max(4, round(frame.width * scale / 4) * 4)
        h = max(4, round(frame.height * scale / 4) * 4)
        return w, h

    def _backend(self, w: int, h: int) -> tuple[InferenceBackend, cpu.Preprocessor]:
        if (w, h) not in self._backends:
            log.info("generator %s at %d×%d", self.label, w, h)
            self._backends[(w, h)] = create_backend(
                "onnxruntime", self.model, input_shape=(1, 3, h, w), threads=self.threads
            )
            self._pre[(w, h)] = cpu.Preprocessor(w, h)
        return self._backends[(w, h)], self._pre[(w, h)]

    def render(self, s: FrameState) -> None:
        frame = s.frame
        styled = self._styled if self.config.region == "person" else s.out
        assert styled is not None
        w, h = self._size(frame, s.quality.gan_scale)
        backend, pre = self._backend(w, h)
        pre(s.pyramids, backend.input, frame.colorspace, frame.full_range)
        rgb = np.asarray(backend.run()[0])
        if (w, h) == frame.size:
            self._to_yuv(rgb, styled)
        else:  # reduced: back to full size along the frame's own edges, plane by plane
            planes = self._to_yuv.planes(rgb, styled.colorspace, styled.full_range)
            for k, (src, dst) in enumerate(
                zip((frame.y, frame.u, frame.v), (styled.y, styled.u, styled.v), strict=True)
            ):
                no_upsampling = w >= dst.shape[1] and h >= dst.shape[0]  # chroma, often
                if no_upsampling or self.upsampling == "bilinear":
                    cpu.resize_into(planes[k], dst)
                else:
                    self._upsamplers[self.upsampling](pre.small[k], planes[k], src, dst)
        if self.config.region == "person":
            assert s.alpha_rows_y is not None and s.alpha_rows_uv is not None
            bg = fused.as_rows(frame)
            s.compositor(styled.y, bg[0], s.alpha_rows_y, s.out.y)
            s.compositor(styled.u, bg[1], s.alpha_rows_uv, s.out.u)
            s.compositor(styled.v, bg[2], s.alpha_rows_uv, s.out.v)
        return None
