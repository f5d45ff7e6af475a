"""The frame pipeline: synchronous stages over FrameBuffers, with per-stage timing."""

from engine.pipeline.backend import choose_backend, make_pipeline
from engine.pipeline.pipeline import Pipeline

__all__ = ["Pipeline", "choose_backend", "make_pipeline"]
