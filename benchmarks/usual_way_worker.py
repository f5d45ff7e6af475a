"""The usual open-source way, timed per stage (run by pipeline.py in MediaPipe's own venv).

Per frame: yuv420p → RGB at full resolution (OpenCV), MediaPipe's selfie segmentation (its own
runtime), a full-resolution OpenCV Gaussian blur of the whole frame, a NumPy float32 blend
``rgb·m + blurred·(1 − m)``, and RGB → yuv420p for the encoder. OpenCV and MediaPipe use their
default thread counts, as such code usually does.

argv: frames.npz (keys "<res>/<i>": I420 as a (h·3/2, w) uint8 array), repeats, warm-up, and the
Gaussian's σ as a share of the frame's short side (ksize = 2·⌈3σ⌉ + 1), or a fixed kernel size
when negative (−55: the 55×55 kernel of many tutorials).
Prints one JSON object: {res: {stage: [ns, ...]}}.
"""

from __future__ import annotations

import json
import math
import sys
import time

import cv2
import numpy as np


def main() -> int:
    path, repeats, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sigma_share = float(sys.argv[4])
    import mediapipe as mp

    data = np.load(path)
    by_res: dict[str, list[np.ndarray]] = {}
    for key in sorted(data.files, key=lambda k: (k.split("/")[0], int(k.split("/")[1]))):
        by_res.setdefault(key.split("/")[0], []).append(data[key])
    result: dict[str, dict[str, list[int]]] = {}
    for res, frames in by_res.items():
        h = frames[0].shape[0] * 2 // 3
        w = frames[0].shape[1]
        selection = 1 if w >= 1.5 * h else 0  # the same model LiveFX picks
        if sigma_share < 0:
            ksize = int(-sigma_share)
        else:
            ksize = 2 * math.ceil(3 * sigma_share * min(w, h)) + 1
        seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=selection)
        times: dict[str, list[int]] = {
            k: [] for k in ("to_rgb", "segment", "blur", "blend", "to_yuv", "total")
        }
        for i in range(warmup + repeats):
            i420 = frames[i % len(frames)]
            t0 = time.perf_counter_ns()
            rgb = cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420)
            t1 = time.perf_counter_ns()
            mask = seg.process(rgb).segmentation_mask
            t2 = time.perf_counter_ns()
            blurred = cv2.GaussianBlur(rgb, (ksize, ksize), 0)
            t3 = time.perf_counter_ns()
            m = mask[..., None]
            out = (rgb.astype(np.float32) * m + blurred.astype(np.float32) * (1.0 - m)).astype(
                np.uint8
            )
            t4 = time.perf_counter_ns()
            cv2.cvtColor(out, cv2.COLOR_RGB2YUV_I420)
            t5 = time.perf_counter_ns()
            if i >= warmup:
                laps = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)
                for k, v in zip(times, laps, strict=True):
                    times[k].append(v)
        seg.close()
        result[res] = {**times, "ksize": [ksize]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
