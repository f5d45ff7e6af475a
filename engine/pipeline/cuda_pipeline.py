"""The pipeline on the GPU (``--backend cuda``): the same stages as ``Pipeline``, run by
``engine.gpu.chain.FrameChain``.

With the models on LiveFX's kernels (``--model-runtime kernels``, the default) a frame is one
captured CUDA graph: upload, halvings, preprocess, the segmenter's launches
(``engine.gpu.net``), guided filter, smoothing and ramp, mattes, background, composite,
download, with no host round trip in the middle. Stages (timed on the host):

1. ingest     — the frame's planes into pinned memory; the flags the frame's gate needs (a
                mask exists, the quality level's ``infer_every`` and ``skip_static``)
2. frame      — the frame's graph launched and waited for. Inside it, after the preprocess,
                the gate (``lfx_gate``): the cpu pipeline's static-frame and scene-cut tests on
                the luma at the model's size, a reduction on the device. It decides whether the
                model's launches run or the last mask serves again, and a scene cut restarts
                the temporal smoothing; its decision comes back with the frame for the counters

With TensorRT or ONNX Runtime the model sits between two graphs:

1. ingest     — the planes into pinned memory; the pre-model graph (upload, halvings,
                preprocess, luma guide) launched; with ONNX Runtime, waited for
2. segment    — TensorRT enqueued on the session's stream, or ONNX Runtime on the CPU; or the
                last mask again when ``infer_every`` allows
3. composite  — the post-model graph (guided filter, smoothing and ramp, mattes, background,
                composite, download) launched and waited for

The returned frame's planes live in the chain's pinned output buffer (valid until the next
call, as the cpu pipeline's). With TensorRT or ONNX Runtime the static-frame and scene-cut
tests are not run (they would need the luma on the host; the matte's temporal smoothing is
motion-adaptive either way); ``infer_every`` is.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from engine.config import PipelineConfig
from engine.errors import ConfigError
from engine.frame import FrameBuffer
from engine.inference import InferenceBackend
from engine.models.registry import ModelSpec, choose_segmenter, load_model
from engine.pipeline.backend import no_gpu_path
from engine.pipeline.budget import Quality
from engine.pipeline.pipeline import Pipeline, Stage
from engine.pipeline.state import FrameState

log = logging.getLogger(__name__)


def check_gpu_effect(config: PipelineConfig) -> None:
    """A ``ConfigError`` (one line) where this effect, as configured, has no GPU path."""
    e = config.effect
    why_not = no_gpu_path(e.name)
    if why_not is not None:
        raise ConfigError(f"backend cuda: {why_not}")
    if e.name == "gan":
        if config.model_runtime != "kernels":
            raise ConfigError(
                "backend cuda: the gan effect runs its generator on LiveFX's kernels "
                f"(--model-runtime kernels), not {config.model_runtime}"
            )
        generator_on_kernels(e.model)


def generator_on_kernels(model: str) -> None:
    """A generator the net kernels run, or a ``ConfigError`` saying why not (the cpu backend
    still runs it)."""
    from engine.errors import ModelError
    from engine.inference.net import load_net
    from engine.models.registry import load_generator

    data, label = load_generator(model)
    try:
        load_net(data, label)
    except ModelError as exc:
        raise ConfigError(
            f"backend cuda: {exc}; the cpu backend runs this generator (--backend cpu)"
        ) from exc


class CudaPipeline(Pipeline):
    backend_name = "cuda"

    def __init__(
        self,
        config: PipelineConfig | None = None,
        *,
        model_runtime: str | None = None,
        tensorrt: bool | None = None,
        gpu: Any = None,
        models: Any = None,
    ) -> None:
        """``models``: the server's shared GPU segmenters (``engine.gpu.batch``): with the
        kernels runtime, blur/replace/colour/mask run their model in a batch with the other
        sessions' (two graphs a frame) instead of inside the frame's one graph."""
        from engine.gpu import chain as gpu_chain
        from engine.gpu import driver as cd
        from engine.gpu.module import Gpu

        config = config or PipelineConfig()
        if tensorrt is not None:  # the older flag: TensorRT, or ONNX Runtime
            model_runtime = "tensorrt" if tensorrt else "onnxruntime"
        model_runtime = model_runtime or config.model_runtime
        if model_runtime != config.model_runtime:
            config = replace(config, model_runtime=model_runtime)
        check_gpu_effect(config)
        self.gpu = gpu or Gpu.shared()
        self.gpu.device.make_current()
        self.stream = cd.Stream()
        self.model_runtime = model_runtime
        self._shared = models
        self.tensorrt = model_runtime == "tensorrt"
        self.kernels = model_runtime == "kernels"
        self._run_model = False  # set by ingest: the model runs in this frame's graph
        self._generator: Any = None  # the gan effect's model on the net kernels (a Net)
        self._generators: dict[tuple[int, int], Any] = {}  # its DeviceNet per size
        self.chain: gpu_chain.FrameChain | None = None
        self._frame_settings: gpu_chain.ChainSettings | None = None  # set by ingest, used by both
        super().__init__(config)

    def _stage_list(self) -> list[tuple[str, Stage]]:
        if self.single_graph:
            return [("ingest", self._gpu_ingest_frame), ("frame", self._gpu_frame)]
        return [
            ("ingest", self._gpu_ingest),
            ("segment", self._gpu_segment),
            ("composite", self._gpu_post),
        ]

    @property
    def batched(self) -> bool:
        """The segmenter on the server's shared GPU worker (between two graphs)."""
        return (
            self._shared is not None
            and self.kernels
            and self.config.effect.name in ("blur", "replace", "colour", "mask")
        )

    @property
    def single_graph(self) -> bool:
        """The whole frame as one graph: the models on the kernels, or no model at all."""
        return (self.kernels and not self.batched) or self.config.effect.name == "none"

    def reconfigure(self, config: PipelineConfig) -> None:
        check_gpu_effect(config)
        if config.effect.model != self.config.effect.model:
            self._close_generators()
        batched = self.batched
        super().reconfigure(config)
        if self.batched != batched:  # the other kind of segmenter (shared, or the frame's own)
            self.stream.synchronize()
            self._close_backends()
            self._state = None

    def _default_backend(self, spec: ModelSpec) -> InferenceBackend:
        if self.batched:
            shape = (1, 3, spec.height, spec.width)
            seg: InferenceBackend = self._shared.backend(
                load_model(spec.name), spec.name, shape, self.stream
            )
            return seg
        if self.kernels:
            from engine.gpu.net import GpuSegmenter

            shape = (1, 3, spec.height, spec.width)
            return GpuSegmenter(self.gpu, load_model(spec.name), spec.name, shape)
        if self.tensorrt:
            from engine.inference.tensorrt import TensorRTBackend

            return TensorRTBackend(
                load_model(spec.name),
                input_shape=(1, 3, spec.height, spec.width),
                device=self.gpu.device,
                stream=self.stream,
                label=spec.name,
            )
        return super()._default_backend(spec)

    def _configure(self, frame: FrameBuffer) -> FrameState:
        from engine.gpu.chain import FrameChain

        log.info("configuring the GPU chain for %d×%d", frame.width, frame.height)
        if self.chain is not None:
            self.chain.close()
            self.chain = None
        m = self.config.model
        spec = choose_segmenter(frame.width, frame.height, m.segmenter, m.landscape_min_aspect)
        backend = self._backend(spec) if self.effect.needs_matte else None
        model_io = None
        if self.tensorrt and backend is not None:
            model_io = (backend.d_input.ptr, backend.d_output.ptr)  # type: ignore[attr-defined]
        elif self.kernels and backend is not None:
            model_io = (backend.d_input, backend.d_output)  # type: ignore[attr-defined]
        chain = FrameChain(
            self.gpu,
            self.stream,
            frame.width,
            frame.height,
            colorspace=frame.colorspace,
            full_range=frame.full_range,
            mask_size=(spec.width, spec.height),
            model_io=model_io,
            gate=backend.gate.ptr  # type: ignore[attr-defined]
            if self.kernels and backend is not None and backend.gate is not None  # type: ignore[attr-defined]
            else None,
        )
        if (
            chain.ort
            and backend is not None
            and tuple(backend.output.shape[-2:]) != (spec.height, spec.width)
        ):
            chain.close()
            raise ConfigError(
                f"segmenter {spec.name}: mask {backend.output.shape} is not the input's size"
            )
        self.chain = chain
        self.effect.configure(frame)
        bg = chain.out_frame
        if self.config.effect.name == "replace":
            if getattr(self.effect, "_video", None) is not None:
                bg = chain.video_background()  # each frame's fitted into pinned memory
            else:
                chain.set_background_image(self.effect.still)  # type: ignore[attr-defined]
        self._close_generators()
        state = FrameState(
            frame=frame,
            out=chain.out_frame,
            bg=bg,
            alpha_y=np.empty((0, 0), np.uint8),
            pyramids=None,  # type: ignore[arg-type]
            model=spec,
            backend=backend,
        )
        self.session.reset()
        return state

    def chain_settings(self, q: Quality) -> Any:
        """What the GPU chain's graphs bake in, for this config at quality level ``q``."""
        from engine.gpu.chain import ChainSettings

        e, m = self.config.effect, self.config.matte
        background = {
            "blur": "blur",
            "replace": "image",
            "colour": "colour",
            "mask": "matte",
            "none": "none",
            "gan": "gan_person" if e.region == "person" else "gan",
        }[e.name]
        if e.name == "replace" and getattr(self.effect, "_video", None) is not None:
            background = "video"
        gan = None
        if e.name == "gan":
            assert self.chain is not None
            from engine.effects.gan import GUIDED_EPS, GUIDED_NOISE_EPS

            w, h = self.effect._size(self.chain.in_frame, q.gan_scale)  # type: ignore[attr-defined]
            gan = (w, h, GUIDED_EPS.get(e.model, 4.0), GUIDED_NOISE_EPS.get(e.model, 0.0))
        colour = (0, 128, 128)
        if e.name == "colour":
            colour = self.effect.yuv  # type: ignore[attr-defined]
        if e.name == "blur" and e.strength <= 0.0:
            background = "frame"
        return ChainSettings(
            guided=m.guided and q.guided,
            radius=m.radius,
            eps=m.eps,
            smoothing=m.smoothing,
            threshold=m.threshold,
            feather=m.feather,
            background=background,
            blur_strength=e.strength if background == "blur" else 0.0,
            blur_bias=q.blur_level_bias if background == "blur" else 0,
            colour=colour,
            gan=gan,
        )

    # -- stages -----------------------------------------------------------------------------

    def _gpu_ingest(self, s: FrameState) -> None:
        chain = self.chain
        assert chain is not None
        s.frame.copy_into(chain.in_frame)
        self._frame_settings = self.chain_settings(s.quality)
        if self._frame_settings.background == "video":
            self.effect.render(s)  # the video's next frame, fitted into the pinned background
        chain.launch_pre(self._frame_settings)
        if chain.ort:
            chain.synchronize()

    def _gpu_ingest_frame(self, s: FrameState) -> None:
        """The kernels runtime: the planes into pinned memory, and what the frame's gate needs
        from the host (a mask exists; the quality level's infer_every and skip_static)."""
        chain, session = self.chain, self.session
        assert chain is not None
        s.frame.copy_into(chain.in_frame)
        self._frame_settings = settings = self.chain_settings(s.quality)
        if settings.gan is not None:
            self._ensure_generator(settings.gan[0], settings.gan[1])
        if settings.background == "video":
            self.effect.render(s)  # the video's next frame, fitted into the pinned background
        self._run_model = self.effect.needs_matte
        if self._run_model and chain.gate is not None:
            reuse = session.since_inference + 1 < s.quality.infer_every
            chain.flags.array[:3] = (chain.has_mask, reuse, s.quality.skip_static)

    def _ensure_generator(self, w: int, h: int) -> None:
        """The gan effect's generator at w × h on the device, registered with the chain."""
        assert self.chain is not None
        net = self._generators.get((w, h))
        if net is None:
            from engine.gpu.net import DeviceNet
            from engine.inference.net import load_net
            from engine.models.registry import load_generator

            if self._generator is None:
                data, label = load_generator(self.config.effect.model)
                self._generator = load_net(data, label)
            log.info("generator %s at %d×%d on the net kernels", self._generator.name, w, h)
            plan = self._generator.plan((1, 3, h, w))
            net = self._generators[(w, h)] = DeviceNet(self.gpu, plan)
        self.chain.generators[(w, h)] = net

    def _close_generators(self) -> None:
        """Free the generator's device nets, and the graphs that launch them."""
        if self._generators and self.chain is not None:
            self.chain.synchronize()
            self.chain._destroy_graphs()
            self.chain.generators.clear()
        for net in self._generators.values():
            net.close()
        self._generators.clear()
        self._generator = None

    def _gpu_frame(self, s: FrameState) -> None:
        """The kernels runtime: the frame's one graph, launched and waited for; then the gate's
        decision into the session's counters (as the cpu pipeline's segment stage keeps them)."""
        chain, session = self.chain, self.session
        assert chain is not None and self._frame_settings is not None
        model = None
        if self._run_model:
            assert s.backend is not None
            model = partial(s.backend.ops, self.stream)  # type: ignore[attr-defined]
        chain.launch_frame(self._frame_settings, model)
        chain.synchronize()
        if not self._run_model:
            return
        ran, scene, _ = chain.gate_decision() if chain.gate is not None else (True, False, 0.0)
        if scene:
            session.scene_cuts += 1
        if ran:
            chain.has_mask = True
            session.since_inference = 0
            session.inferences += 1
        else:
            session.since_inference += 1
            session.reused += 1

    def _gpu_segment(self, s: FrameState) -> None:
        chain, backend, session = self.chain, s.backend, self.session
        assert chain is not None and backend is not None
        if chain.has_mask and session.since_inference + 1 < s.quality.infer_every:
            session.since_inference += 1
            session.reused += 1
            return  # the mask buffers still hold the last mask
        if chain.ort:
            np.copyto(backend.input.reshape(chain.model_input.array.shape), chain.model_input.array)
            out = backend.run()
            np.copyto(chain.mask.array, out.reshape(chain.mask.array.shape))
        else:
            backend.enqueue()  # type: ignore[attr-defined]
        chain.has_mask = True
        session.since_inference = 0
        session.inferences += 1

    def _gpu_post(self, s: FrameState) -> None:
        chain = self.chain
        assert chain is not None
        assert self._frame_settings is not None
        chain.launch_post(self._frame_settings)
        chain.synchronize()

    # -- the frame path -----------------------------------------------------------------------

    def process(self, frame: FrameBuffer) -> FrameBuffer:
        self.gpu.device.make_current()
        return super().process(frame)

    def reset(self) -> None:
        self.session.reset()
        if self.chain is not None:
            self.chain.reset()

    @property
    def alpha(self) -> np.ndarray | None:
        """The last frame's matte (None where the effect made none)."""
        if self.chain is None or not self.effect.needs_matte:
            return None
        return self.chain.download_alpha()

    def person_stats(self) -> dict[str, Any] | None:
        if self.config.model.person_model == "off":
            return None
        # The body prior is not on the GPU path yet ("The whole frame on the GPU").
        return {"state": "off: not on the cuda backend yet"}

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        if self.chain is not None:
            out["kernels"] = self.gpu.module.source
            out["gpu"] = self.gpu.device.name
            out["model_runtime"] = self.model_runtime
        return out

    def close(self) -> None:
        if self.chain is not None:  # the graphs first: they launch the models' buffers
            self.chain.close()
            self.chain = None
        self._close_generators()
        super().close()  # the effect, the body prior, the models
        self.stream.close()
