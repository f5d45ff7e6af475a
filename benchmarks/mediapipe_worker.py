"""Times MediaPipe 0.10.21's own selfie segmentation on given images (run by segment.py).

Runs under the Python of a venv that has mediapipe (it pins numpy<2, so not LiveFX's venv).
Reads an .npz of uint8 RGB images keyed "<model>/<i>", prints one JSON object: per model, the
per-call durations in nanoseconds of ``SelfieSegmentation.process`` after a warm-up.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main() -> int:
    path, repeats, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    import mediapipe as mp

    images = np.load(path)
    result: dict[str, object] = {"mediapipe_version": mp.__version__}
    for model, selection in (("general", 0), ("landscape", 1)):
        keys = sorted(k for k in images.files if k.startswith(model + "/"))
        if not keys:
            continue
        frames = [np.ascontiguousarray(images[k]) for k in keys]
        seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection)
        for i in range(warmup):
            seg.process(frames[i % len(frames)])
        samples = []
        for i in range(repeats):
            t = time.perf_counter_ns()
            seg.process(frames[i % len(frames)])
            samples.append(time.perf_counter_ns() - t)
        seg.close()
        result[model] = samples
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
