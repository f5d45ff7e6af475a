"""The frame pipeline: synchronous stages over FrameBuffers, with per-stage timing."""

from engine.pipeline.pipeline import Pipeline

__all__ = ["Pipeline"]
