"""Pipeline: a list of stages run in order on one frame, each timed.

The pipeline is synchronous and single-threaded: it runs on a worker thread (or in the offline
``process`` command), never on an event loop. Buffers are made when the frame size changes and
reused for every frame of that size; the frame returned by ``process`` is one of them and is valid
until the next call.

Stages (their order is the ``stages`` list below):

1. preprocess — yuv420p planes → model input (resample, colour matrix, normalise), fused
2. segment    — the selfie segmenter on the InferenceBackend → low-resolution matte
3. refine     — matte upsampled to frame size (uint8)
4. effect     — the output frame (``mask``: the matte as a grey frame; ``none``: the input)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.config import PipelineConfig
from engine.frame import FrameBuffer
from engine.inference import InferenceBackend, create_backend
from engine.models.registry import ModelSpec, choose_segmenter, load_model
from engine.ops import cpu
from engine.pipeline.timing import StageTimes

log = logging.getLogger(__name__)


@dataclass
class FrameState:
    """What the stages of one frame hand each other; its buffers live for one resolution."""

    frame: FrameBuffer
    out: FrameBuffer
    alpha: np.ndarray  # uint8 matte at frame size
    model: ModelSpec | None = None
    backend: InferenceBackend | None = None
    mask: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))


Stage = Callable[[FrameState], None]


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig | None = None,
        backend_factory: Callable[[ModelSpec], InferenceBackend] | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        self.times = StageTimes(self.config.stats_window)
        self.frames = 0
        self.setup_ns = 0  # the longest (re)configuration: model load, buffers for a new size
        self._backend_factory = backend_factory or self._default_backend
        self._backends: dict[str, InferenceBackend] = {}
        self._state: FrameState | None = None
        self._preprocessor: cpu.Preprocessor | None = None
        self._upsampler = cpu.MaskUpsampler()
        needs_mask = self.config.effect != "none"
        self.stages: list[tuple[str, Stage]] = []
        if needs_mask:
            self.stages += [
                ("preprocess", self._preprocess),
                ("segment", self._segment),
                ("refine", self._refine),
            ]
        self.stages.append(("effect", self._effect))

    # -- set-up, once per resolution ------------------------------------------------------------

    def _default_backend(self, spec: ModelSpec) -> InferenceBackend:
        inf = self.config.inference
        return create_backend(
            inf.backend,
            load_model(spec.name),
            input_shape=(1, 3, spec.height, spec.width),
            threads=inf.threads,
        )

    def _backend(self, spec: ModelSpec) -> InferenceBackend:
        if spec.name not in self._backends:
            log.info("loading segmenter %s (%d×%d)", spec.name, spec.width, spec.height)
            self._backends[spec.name] = self._backend_factory(spec)
        return self._backends[spec.name]

    def _configure(self, frame: FrameBuffer) -> FrameState:
        state = self._state
        if (
            state is not None
            and state.frame.size == frame.size
            and state.frame.colorspace == frame.colorspace
            and state.frame.full_range == frame.full_range
        ):
            state.frame = frame
            return state
        log.info("configuring for %d×%d", frame.width, frame.height)
        state = FrameState(
            frame=frame,
            out=frame.like(),
            alpha=np.zeros((frame.height, frame.width), np.uint8),
        )
        if self.config.effect != "none":
            m = self.config.model
            state.model = choose_segmenter(
                frame.width, frame.height, m.segmenter, m.landscape_min_aspect
            )
            state.backend = self._backend(state.model)
            self._preprocessor = cpu.Preprocessor(state.model.width, state.model.height)
        self._state = state
        return state

    # -- stages -------------------------------------------------------------------------------

    def _preprocess(self, s: FrameState) -> None:
        assert self._preprocessor is not None and s.backend is not None
        self._preprocessor(s.frame, s.backend.input)

    def _segment(self, s: FrameState) -> None:
        assert s.backend is not None
        out = s.backend.run()
        s.mask = out.reshape(out.shape[-2:])

    def _refine(self, s: FrameState) -> None:
        self._upsampler(s.mask, s.alpha)

    def _effect(self, s: FrameState) -> None:
        if self.config.effect == "mask":
            cpu.matte_to_yuv420p(s.alpha, s.out)
        else:
            s.frame.copy_into(s.out)

    # -- the frame path -----------------------------------------------------------------------

    def process(self, frame: FrameBuffer) -> FrameBuffer:
        """Run every stage on ``frame``; the returned frame is reused by the next call."""
        t_configure = time.perf_counter_ns()
        state = self._configure(frame)
        t_start = t = time.perf_counter_ns()
        self.setup_ns = max(self.setup_ns, t - t_configure)
        for name, stage in self.stages:
            stage(state)
            now = time.perf_counter_ns()
            self.times.add(name, now - t)
            t = now
        self.times.add("total", t - t_start)
        state.out.pts, state.out.time_base = frame.pts, frame.time_base
        self.frames += 1
        return state.out

    @property
    def alpha(self) -> np.ndarray | None:
        """The last frame's matte (uint8, frame size), or None before the first frame."""
        return None if self._state is None else self._state.alpha

    @property
    def model(self) -> ModelSpec | None:
        return None if self._state is None else self._state.model
