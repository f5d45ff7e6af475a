"""Training of LiveFX's own GAN generators (PyTorch on the CPU; the optional extra ``train``).

Nothing here is imported by the engine at run time: the generators ship as ONNX files.

    python -m engine.models.train cartoon --seed 0 --out engine/models/cartoon.onnx
    python -m engine.models.train enhance --seed 0 --out engine/models/enhance.onnx
"""
