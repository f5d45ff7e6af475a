"""A video file's background blurred the usual way (run by process.py in MediaPipe's own venv).

What such a script usually is: OpenCV reads the file, MediaPipe's selfie segmentation finds the
person, a full-resolution OpenCV Gaussian blur and a NumPy float blend make the frame, and
OpenCV's VideoWriter writes it (``mp4v``: opencv-python's FFmpeg has no H.264 encoder). One frame
after another, on the defaults' threads.

argv: input, output, the Gaussian's σ as a share of the frame's short side (as LiveFX's blur).
Prints one JSON object: frames, wall seconds (after the imports), the kernel size.
"""

from __future__ import annotations

import json
import math
import sys
import time

import cv2
import mediapipe as mp
import numpy as np


def main() -> int:
    src, dst, sigma_share = sys.argv[1], sys.argv[2], float(sys.argv[3])
    started = time.perf_counter()
    cap = cv2.VideoCapture(src)
    if not cap.isOpened():
        print(f"cannot open {src}", file=sys.stderr)
        return 1
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    out = cv2.VideoWriter(dst, cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    ksize = 2 * math.ceil(3 * sigma_share * min(w, h)) + 1
    landscape = 1 if w >= 1.5 * h else 0  # the model LiveFX picks
    frames = 0
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=landscape) as seg:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            mask = seg.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).segmentation_mask
            blurred = cv2.GaussianBlur(bgr, (ksize, ksize), 0)
            m = mask[..., None]
            blend = bgr.astype(np.float32) * m + blurred.astype(np.float32) * (1.0 - m)
            out.write(blend.astype(np.uint8))
            frames += 1
    cap.release()
    out.release()
    wall = time.perf_counter() - started
    print(json.dumps({"frames": frames, "wall_s": round(wall, 3), "ksize": ksize}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
