"""Record MediaPipe 0.10.21's own BlazePose landmark output as test fixtures.

Runs in MediaPipe's throw-away venv (``make fixtures`` makes it; see tools/mediapipe_fixtures.py):

    /tmp/mpvenv/bin/python tools/mediapipe_pose_fixtures.py tests/fixtures/mediapipe_pose.npz

MediaPipe's pose solution finds the body with its detector and crops around it; to compare on the
*same crop*, this script runs the second half of that solution as its own graph: MediaPipe's
``ImageToTensorCalculator`` (256×256, range [0, 1]), ``InferenceCalculator`` on the .tflite file
(TFLite's built-in CPU kernels), and the post-processing calculators with the options of
MediaPipe's ``tensors_to_pose_landmarks_and_segmentation`` graph (``TensorsToLandmarksCalculator``:
39 landmarks normalised by 256, sigmoid visibility and presence; ``TensorsToFloatsCalculator`` for
the pose flag; ``TensorsToSegmentationCalculator`` with a sigmoid, stored as uint16 / 65535). Each
crop is made at 256×256 before MediaPipe sees it, so its ImageToTensor step is an identity warp;
the exact uint8 crop is stored, and the test feeds the same pixels to the converted ONNX model.

The built-in kernels are the reference: the network's activations are large (segmentation logits
reach ±1000), so summation order shows. MediaPipe's XNNPACK delegate and its built-in kernels
differ from each other by up to 3.9e-3 on the segmentation probability on these crops; the ONNX
model is within 1e-3 of the built-in kernels (the test's bound). ``--delegate xnnpack`` records
the other.

Crops: scikit-image's sample photos (public domain / CC0) fitted to 256×256, and two crops of the
astronaut as LiveFX's body prior makes them (smaller in the crop, and turned by 12°).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.samples import fit

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ["astronaut", "camera", "coffee", "chelsea"]

GRAPH = """
input_stream: "image"
output_stream: "landmarks"
output_stream: "flag"
output_stream: "mask"
node {{
  calculator: "ImageToTensorCalculator"
  input_stream: "IMAGE:image"
  output_stream: "TENSORS:input_tensors"
  options: {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{
    output_tensor_width: 256 output_tensor_height: 256 keep_aspect_ratio: true
    output_tensor_float_range {{ min: 0.0 max: 1.0 }} border_mode: BORDER_ZERO }} }}
}}
node {{
  calculator: "InferenceCalculator"
  input_stream: "TENSORS:input_tensors"
  output_stream: "TENSORS:output_tensors"
  options: {{ [mediapipe.InferenceCalculatorOptions.ext] {{
    model_path: "{model}" delegate {{ {delegate} {{}} }} }} }}
}}
node {{
  calculator: "SplitTensorVectorCalculator"
  input_stream: "output_tensors"
  output_stream: "landmark_tensor"
  output_stream: "flag_tensor"
  output_stream: "seg_tensor"
  options: {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{
    ranges: {{ begin: 0 end: 1 }} ranges: {{ begin: 1 end: 2 }} ranges: {{ begin: 2 end: 3 }} }} }}
}}
node {{
  calculator: "TensorsToLandmarksCalculator"
  input_stream: "TENSORS:landmark_tensor"
  output_stream: "NORM_LANDMARKS:landmarks"
  options: {{ [mediapipe.TensorsToLandmarksCalculatorOptions.ext] {{
    num_landmarks: 39 input_image_width: 256 input_image_height: 256
    visibility_activation: SIGMOID presence_activation: SIGMOID }} }}
}}
node {{
  calculator: "TensorsToFloatsCalculator"
  input_stream: "TENSORS:flag_tensor"
  output_stream: "FLOAT:flag"
}}
node {{
  calculator: "TensorsToSegmentationCalculator"
  input_stream: "TENSORS:seg_tensor"
  output_stream: "MASK:mask"
  options: {{ [mediapipe.TensorsToSegmentationCalculatorOptions.ext] {{
    activation: SIGMOID gpu_origin: TOP_LEFT }} }}
}}
"""


def load(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def crops() -> dict[str, np.ndarray]:
    import cv2

    out = {name: fit(load(name), 256, 256) for name in IMAGES}
    astro = load("astronaut")
    for name, angle, scale in (("astronaut_small", 0.0, 0.6), ("astronaut_turned", 12.0, 0.8)):
        m = cv2.getRotationMatrix2D((256.0, 300.0), angle, scale * 256 / 512)
        m[0, 2] += 128.0 - 256.0
        m[1, 2] += 140.0 - 300.0
        out[name] = cv2.warpAffine(astro, m, (256, 256), flags=cv2.INTER_LINEAR)
    return out


def run(config: Any, rgb: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    import mediapipe as mp
    from mediapipe.python import packet_creator, packet_getter

    packets: dict[str, Any] = {}
    graph = mp.CalculatorGraph(graph_config=config)
    for stream in ("landmarks", "flag", "mask"):
        graph.observe_output_stream(stream, lambda _s, p, k=stream: packets.__setitem__(k, p))
    graph.start_run()
    frame = packet_creator.create_image_frame(image_format=mp.ImageFormat.SRGB, data=rgb)
    graph.add_packet_to_input_stream("image", frame.at(0))
    graph.close()
    lms = packet_getter.get_proto(packets["landmarks"]).landmark
    landmarks = np.array([[p.x, p.y, p.z, p.visibility, p.presence] for p in lms], np.float32)
    mask = np.array(packet_getter.get_image(packets["mask"]).numpy_view(), np.float32)
    return landmarks, float(packet_getter.get_float(packets["flag"])), mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output .npz")
    parser.add_argument("--delegate", choices=("tflite", "xnnpack"), default="tflite")
    args = parser.parse_args(argv)

    import mediapipe as mp
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2

    models = {
        "lite": ROOT / "tests/fixtures/tflite/pose_landmark_lite.tflite",
        "full": Path(mp.__file__).parent / "modules/pose_landmark/pose_landmark_full.tflite",
    }
    arrays: dict[str, Any] = {}
    images = crops()
    for name, rgb in images.items():
        arrays[f"{name}/input"] = rgb
    for model, path in models.items():
        config = text_format.Parse(
            GRAPH.format(model=path, delegate=args.delegate), calculator_pb2.CalculatorGraphConfig()
        )
        for name, rgb in images.items():
            landmarks, flag, mask = run(config, rgb)
            if mask.shape != (256, 256) or landmarks.shape != (39, 5):
                print(f"unexpected output for {model}/{name}", file=sys.stderr)
                return 1
            arrays[f"{model}/{name}/landmarks"] = landmarks
            arrays[f"{model}/{name}/flag"] = np.array(flag, np.float32)
            # uint16 steps of 1/65535 (1.5e-5): far inside the test's 1e-3, half the bytes.
            arrays[f"{model}/{name}/segmentation_u16"] = np.rint(mask * 65535).astype(np.uint16)
            print(f"{model}/{name}: flag {flag:.4f}, person share {float((mask > 0.5).mean()):.3f}")
    arrays["mediapipe_version"] = np.array(mp.__version__)
    arrays["delegate"] = np.array(args.delegate)
    np.savez_compressed(args.out, **arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
