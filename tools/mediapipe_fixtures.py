"""Record MediaPipe 0.10.21's own selfie-segmentation output as test fixtures.

Runs in a throw-away venv of its own (mediapipe 0.10.21 pins numpy<2); ``make fixtures`` makes it:

    python -m venv /tmp/mpvenv
    /tmp/mpvenv/bin/pip install mediapipe==0.10.21 scikit-image "numpy<2"
    /tmp/mpvenv/bin/python tools/mediapipe_fixtures.py tests/fixtures/mediapipe_masks.npz

Each image is cropped to the model's aspect ratio and resized to the model's own input size
*before* MediaPipe sees it, so that MediaPipe's ImageToTensor step is an identity warp and its
output is the raw network output. The exact uint8 input is stored next to the mask, so the test
feeds ONNX Runtime the very same pixels. Test images are scikit-image's shipped sample photos
(public domain / CC0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

# engine.samples needs only NumPy and OpenCV, both present in MediaPipe's venv.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.samples import fit

MODELS = {"general": (0, 256, 256), "landscape": (1, 144, 256)}  # model_selection, height, width
IMAGES = ["astronaut", "camera", "coffee", "chelsea"]


def load(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output .npz")
    args = parser.parse_args(argv)

    import mediapipe as mp

    arrays: dict[str, Any] = {}
    for model, (selection, height, width) in MODELS.items():
        with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection) as seg:
            for name in IMAGES:
                rgb = fit(load(name), width, height)
                mask = seg.process(rgb).segmentation_mask
                if mask is None or mask.shape != (height, width):
                    print(f"unexpected mask for {model}/{name}: {mask!r}", file=sys.stderr)
                    return 1
                arrays[f"{model}/{name}/input"] = rgb
                arrays[f"{model}/{name}/mask"] = np.asarray(mask, dtype=np.float32)
                print(f"{model}/{name}: mask mean {float(mask.mean()):.4f}")
    arrays["mediapipe_version"] = np.array(mp.__version__)
    np.savez_compressed(args.out, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
