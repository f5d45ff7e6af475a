"""Pipeline: a list of stages run in order on one frame, each timed.

The pipeline is synchronous: it runs on a worker thread (or in the offline ``process``
command), never on an event loop. Buffers are made when the frame size changes and reused for
every frame of that size; the frame returned by ``process`` is one of them and is valid until the
next call.

Stages, in order (the ``stages`` list):

1. ingest      — (re)configure on a new size; the planes' pyramids (exact 2×2 halvings, lazy)
2. preprocess  — planes shrunk to the model size, colour matrix, NCHW float32 (fused)
3. segment     — the selfie segmenter on the InferenceBackend → low-resolution mask; or the
                 last mask again when the quality level allows (static frame, every n-th frame)
   body        — (``person_model`` lite/full) the body prior fused into that mask: objects the
                 selfie model keeps beside or behind the person removed (``engine.person``)
4. refine      — at the mask's resolution: guided filter (edges from the picture), temporal
                 smoothing, threshold/feather ramp; then bilinear to the Y and U/V sizes
5. effect      — the background (blur, replacement, colour) or the whole output (mask, none)
6. composite   — out = a·frame + (1 − a)·background on Y (full size) and U/V (half size)

``effect=none`` runs only ingest and effect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from engine import faults
from engine.config import PipelineConfig, describe
from engine.effects import Effect, create_effect
from engine.errors import LiveFXError, StageError
from engine.frame import FrameBuffer
from engine.inference import InferenceBackend, create_backend
from engine.models.registry import ModelSpec, choose_segmenter, load_model
from engine.ops import cpu, fused
from engine.pipeline.budget import BudgetController, Quality
from engine.pipeline.state import FrameState, SessionState
from engine.pipeline.timing import StageTimes

log = logging.getLogger(__name__)

Stage = Callable[[FrameState], None]

# Mean absolute luma change (code values, at model size) below which a frame "barely changed",
# and above which it is a new scene whose temporal state must not leak into it.
STATIC_LUMA_DELTA = 1.5
SCENE_CUT_LUMA_DELTA = 40.0


class Pipeline:
    backend_name = "cpu"

    def __init__(
        self,
        config: PipelineConfig | None = None,
        backend_factory: Callable[[ModelSpec], InferenceBackend] | None = None,
        effect: Effect | None = None,
        *,
        body_async: bool = False,
    ) -> None:
        """``body_async``: run the body model on a thread of its own (live sessions: a frame never
        waits for it); files and tests run it inline, so that results do not depend on timing."""
        self.config = config or PipelineConfig()
        self.body_async = body_async
        self._body: Any = None  # engine.person.prior.BodyPrior, made by the body stage
        self.times = StageTimes(self.config.stats_window)
        self.budget = BudgetController(self.config.budget)
        self.session = SessionState()
        self.frames = 0
        self.backend_reason = ""  # why this backend (engine.pipeline.backend)
        self.setup_ns = 0  # the longest (re)configuration: model load, buffers for a new size
        self.effect = effect or create_effect(self.config.effect, self.config.inference.threads)
        self._backend_factory = backend_factory or self._default_backend
        self._backends: dict[str, InferenceBackend] = {}
        self._state: FrameState | None = None
        self._background: FrameBuffer | fused.Background | None = None
        self.stages: list[tuple[str, Stage]] = self._stage_list()

    def _stage_list(self) -> list[tuple[str, Stage]]:
        stages: list[tuple[str, Stage]] = [("ingest", self._ingest)]
        if self.effect.needs_matte:
            stages += [
                ("preprocess", self._preprocess),
                ("segment", self._segment),
            ]
            if self.config.model.person_model != "off":
                stages.append(("body", self._body_prior))
            stages.append(("refine", self._refine))
        stages.append(("effect", self._effect))
        if self.effect.composites:
            stages.append(("composite", self._composite))
        return stages

    def reconfigure(self, config: PipelineConfig) -> None:
        """Change settings between frames (any thread that owns the pipeline).

        Loaded models are kept; a new effect is made only when the effect's settings changed;
        the budget controller is replaced only when the budget changed. Raises (and changes
        nothing) when the new effect cannot be made, e.g. a background file that is unreadable.
        """
        new_effect = config.effect != self.config.effect
        effect = (
            create_effect(config.effect, config.inference.threads) if new_effect else self.effect
        )
        old, self.config = self.config, config
        if new_effect:
            self.effect.close()
            self.effect = effect
            self.stages = self._stage_list()
        if config.budget != old.budget:
            old_budget = self.budget
            self.budget = BudgetController(
                config.budget, load=old_budget.load, step_up=old_budget.step_up
            )
        if config.model.person_model != old.model.person_model:
            self._close_body()
            self.stages = self._stage_list()
        if new_effect or config.model != old.model:
            self._state = None  # buffers rebuilt and the effect configured on the next frame

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
        log.info("configuring for %d×%d", frame.width, frame.height)
        state = FrameState.for_frame(frame)
        if self.effect.needs_matte:
            m = self.config.model
            spec = choose_segmenter(frame.width, frame.height, m.segmenter, m.landscape_min_aspect)
            state.model = spec
            state.backend = self._backend(spec)
            state.preprocessor = cpu.Preprocessor(spec.width, spec.height)
            state.refiner = cpu.MatteRefiner(spec.width, spec.height)
        self.effect.configure(frame)
        self.session.reset()
        if self._body is not None:
            self._body.reset()
        return state

    # -- stages -------------------------------------------------------------------------------

    def _ingest(self, s: FrameState) -> None:
        s.pyramids.set(s.frame)

    def _preprocess(self, s: FrameState) -> None:
        assert s.preprocessor is not None and s.backend is not None
        s.preprocessor(s.pyramids, s.backend.input, s.frame.colorspace, s.frame.full_range)

    def _segment(self, s: FrameState) -> None:
        assert s.backend is not None and s.preprocessor is not None and s.refiner is not None
        session, q = self.session, s.quality
        luma = s.preprocessor.luma
        delta = None
        if session.last_luma is not None:
            delta = cv2.norm(luma, session.last_luma, cv2.NORM_L1) / luma.size
            if delta > SCENE_CUT_LUMA_DELTA:
                session.scene_cuts += 1
                session.reset()
                s.refiner.reset()
                if self._body is not None:
                    self._body.reset()
                delta = None
        reuse = session.last_mask is not None and (
            session.since_inference + 1 < q.infer_every
            or (q.skip_static and delta is not None and delta < STATIC_LUMA_DELTA)
        )
        if reuse:
            assert session.last_mask is not None
            s.mask = session.last_mask
            session.since_inference += 1
            session.reused += 1
            return
        faults.hit("segment", self.config.effect.name)
        out = s.backend.run()
        s.mask = out.reshape(out.shape[-2:])
        if session.last_mask is None:
            session.last_mask = np.empty_like(s.mask)
            session.last_luma = np.empty_like(luma)
        np.copyto(session.last_mask, s.mask)
        assert session.last_luma is not None
        np.copyto(session.last_luma, luma)
        session.since_inference = 0
        session.inferences += 1

    def _body_prior(self, s: FrameState) -> None:
        m = self.config.model
        if self._body is None:
            from engine.person.prior import BodyPrior  # only when the prior is on

            self._body = BodyPrior(
                m.person_model,
                threads=self.config.inference.threads,
                asynchronous=self.body_async,
            )
        assert s.preprocessor is not None
        self._body.configure(s.frame.width, s.frame.height, s.mask.shape[1], s.mask.shape[0])
        faults.hit("body", self.config.effect.name)
        s.mask = self._body.apply(s.mask, s.pyramids, s.frame, s.quality.body_every)

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _refine(self, s: FrameState) -> None:
        assert s.refiner is not None and s.preprocessor is not None
        m = self.config.matte
        r = s.refiner
        mask, luma = s.mask, None
        if m.guided and s.quality.guided:
            if m.guide == "colour":
                assert s.backend is not None
                r.guided_colour(mask, s.backend.input.reshape(3, *mask.shape), m.radius, m.eps)
                mask = r.filtered
            else:
                luma = s.preprocessor.luma
        r.run(
            mask,
            luma,
            radius=m.radius,
            eps=m.eps,
            smoothing=m.smoothing,
            threshold=m.threshold,
            feather=m.feather,
        )
        # The matte goes on at low resolution: resampled across to each plane's width here, down
        # by the composite (or on demand, ``FrameState.alpha_full``).
        s.alpha_rows_y = s.across["alpha_y"](r.small8, flags=True)
        s.alpha_rows_uv = s.across["alpha_uv"](r.small8, flags=True)
        s.alpha_made = False

    def _effect(self, s: FrameState) -> None:
        faults.hit("effect", self.config.effect.name)
        self._background = self.effect.render(s)

    def _composite(self, s: FrameState) -> None:
        bg = self._background
        assert bg is not None and s.alpha_rows_y is not None and s.alpha_rows_uv is not None
        f, out = s.frame, s.out
        planes = fused.as_rows(bg)
        s.compositor(f.y, planes[0], s.alpha_rows_y, out.y)
        s.compositor(f.u, planes[1], s.alpha_rows_uv, out.u)
        s.compositor(f.v, planes[2], s.alpha_rows_uv, out.v)

    # -- the frame path -----------------------------------------------------------------------

    def process(self, frame: FrameBuffer) -> FrameBuffer:
        """Run every stage on ``frame``; the returned frame is reused by the next call.

        A stage that raises anything but a ``LiveFXError`` raises ``StageError`` naming it."""
        t_start = time.perf_counter_ns()
        state = self._state
        if state is None or not state.matches(frame):
            state = self._state = self._configure(frame)
            self.setup_ns = max(self.setup_ns, time.perf_counter_ns() - t_start)
            t_start = time.perf_counter_ns()
        state.frame = frame
        state.quality = self.budget.quality
        t = t_start
        for name, stage in self.stages:
            try:
                stage(state)
            except LiveFXError:
                raise
            except Exception as exc:  # a model runtime's error, a bug: named, never silent
                raise StageError(name, exc) from exc
            now = time.perf_counter_ns()
            self.times.add(name, now - t)
            t = now
        total = t - t_start
        self.times.add("total", total)
        self.budget.observe(total / 1e6)
        state.out.pts, state.out.time_base = frame.pts, frame.time_base
        self.frames += 1
        return state.out

    def reset(self) -> None:
        """Forget temporal state (a scene cut the caller knows of, a seek)."""
        self.session.reset()
        if self._state is not None and self._state.refiner is not None:
            self._state.refiner.reset()
        if self._body is not None:
            self._body.reset()

    def close(self) -> None:
        self.effect.close()
        self._close_body()
        self._close_backends()

    def _close_backends(self) -> None:
        for backend in self._backends.values():  # a shared worker's backend lets it go
            close = getattr(backend, "close", None)
            if close is not None:
                close()
        self._backends.clear()

    @property
    def quality(self) -> Quality:
        return self.budget.quality

    @property
    def alpha(self) -> np.ndarray | None:
        """The last frame's matte (uint8, frame size), or None before the first frame."""
        return None if self._state is None else self._state.alpha_full()

    @property
    def model(self) -> ModelSpec | None:
        return None if self._state is None else self._state.model

    def person_stats(self) -> dict[str, Any] | None:
        """The body prior's state, runs and fallbacks (None when it is off)."""
        return self._body.stats() if self._body is not None else None

    def stats(self) -> dict[str, Any]:
        """Counters, the quality level and its changes, and per-stage timings."""
        session = self.session
        return {
            "backend": self.backend_name,
            "backend_reason": self.backend_reason,
            "frames": self.frames,
            "inferences": session.inferences,
            "reused_masks": session.reused,
            "scene_cuts": session.scene_cuts,
            "model": self.model.name if self.model else None,
            "budget": self.budget.stats(),
            "person": self.person_stats(),
            "stages": self.times.summary(),
            "config": describe(self.config),
        }
