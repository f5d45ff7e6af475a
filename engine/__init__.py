"""LiveFX: a real-time streaming video effects engine.

``import engine`` is light and works on any machine: no GPU, CUDA or TensorRT is imported here.
"""

__version__ = "0.1.0"
