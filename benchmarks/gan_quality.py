"""Held-out quality of the GAN generators: ``enhance`` against the degraded input and classical
baselines, and the reduced-size path against full-size inference.

Photos never trained on: scikit-image's astronaut, camera, coffee and chelsea, and a second,
independent source, OpenCV's sample photos from Debian's ``opencv-doc`` package. The .deb is
fetched with ``apt-get download opencv-doc`` into ``.cache/`` (git-ignored; the photos are
never committed) the first time, as ``make models`` fetches its packages; without it only the
four scikit-image photos are used, and the tool says so.

    .venv/bin/python benchmarks/gan_quality.py enhance [--model PATH] [--json OUT]
    .venv/bin/python benchmarks/gan_quality.py reduced [--json OUT]

``enhance``: every photo × every degradation of ``data.EVAL_SET`` (the trained family's corners
and kinds never trained on: VP8, motion blur, a bilinear 3× downscale, darker light, coarser
grain, a mild JPEG), two ways: the model at the photo's own size (ONNX Runtime), and the real
pipeline (``effect gan``, default ``gan_size``) on 1280×720 frames made from the photos
(cover-fit, then degraded), the path a user gets. Baselines: the degraded input itself (for a
downscale: brought back bicubic, or bilinear where said), an unsharp mask of it (σ 1.5, amount
0.8) and OpenCV's non-local means denoiser (h = hColor = 6). PSNR (dB) and SSIM against the
clean picture; ▼ marks every case where ``enhance`` is below the input.

``reduced``: the default reduced size (short side 360, guided back up) against full-size
inference (``gan_size 0``) at 1280×720 and 1920×1080 for both shipped models, next to a plain
bilinear upsampling of the same reduced result. ``cartoon`` on the clean frames, ``enhance`` on
the frames with the old evaluation degradation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import metrics  # noqa: E402
from engine.config import EffectConfig, PipelineConfig  # noqa: E402
from engine.models.registry import load_generator  # noqa: E402
from engine.models.train import data  # noqa: E402
from engine.ops import cpu  # noqa: E402
from engine.pipeline import Pipeline  # noqa: E402

CACHE = ROOT / ".cache"
METHODS = ("input", "unsharp", "nlm", "enhance")
FRAME = (1280, 720)


def photos(fetch: bool = True) -> dict[str, np.ndarray]:
    """The held-out photos, cropped to even sizes (yuv420p and the video codecs need them)."""
    found = {**data.held_out_photos(), **data.opencv_doc_photos(CACHE, fetch=fetch)}
    if len(found) == len(data.HELD_OUT):
        print("opencv-doc could not be had: the four scikit-image photos only", file=sys.stderr)
    return {
        k: np.ascontiguousarray(v[: v.shape[0] // 2 * 2, : v.shape[1] // 2 * 2])
        for k, v in found.items()
    }


def unsharp(rgb: np.ndarray, amount: float = 0.8, sigma: float = 1.5) -> np.ndarray:
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return cv2.addWeighted(rgb, 1 + amount, blurred, -amount, 0)


def nlm(rgb: np.ndarray) -> np.ndarray:
    return cv2.fastNlMeansDenoisingColored(rgb, None, 6, 6, 7, 21)


class FullSize:
    """The generator at the picture's own size (padded to multiples of 4), one thread."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        img = np.pad(rgb, ((0, (-h) % 4), (0, (-w) % 4), (0, 0)), mode="edge")
        x = img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        y = self.session.run(None, {self.session.get_inputs()[0].name: x})[0][0]
        return np.clip(np.rint(y.transpose(1, 2, 0)[:h, :w] * 255.0), 0, 255).astype(np.uint8)


class ThroughPipeline:
    """The real pipeline: rgb → yuv420p → effect → rgb (``gan`` with ``model``, or ``none``)."""

    def __init__(
        self,
        effect: str,
        model: str = "enhance",
        upsampling: str | None = None,
        eps: float | None = None,
        noise_eps: float | None = None,
        **kw: Any,
    ) -> None:
        cfg = (
            EffectConfig(name=effect, model=model, **kw)
            if effect == "gan"
            else EffectConfig(name=effect)
        )
        self.p = Pipeline(PipelineConfig(effect=cfg))
        if upsampling is not None:
            self.p.effect.upsampling = upsampling  # type: ignore[attr-defined]
        if eps is not None:
            self.p.effect._upsamplers["guided"].eps = np.float32(eps)  # type: ignore[attr-defined]
        if noise_eps is not None:
            self.p.effect._upsamplers["guided"].noise_eps = noise_eps  # type: ignore[attr-defined]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return cpu.yuv420p_to_rgb(self.p.process(cpu.rgb_to_yuv420p(rgb)))


def seeded(*keys: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(keys).encode()))


def enhance_table(
    model: str,
    pics: dict[str, np.ndarray],
    paths: tuple[str, ...],
    baselines: bool,
    upsampling: str | None,
    eps: float | None = None,
    noise_eps: float | None = None,
) -> dict[str, Any]:
    blob = Path(model).read_bytes() if model.endswith(".onnx") else load_generator(model)[0]
    full = FullSize(blob)
    through = ThroughPipeline(
        "gan", model=model, upsampling=upsampling, eps=eps, noise_eps=noise_eps
    )
    shown = ThroughPipeline("none")
    rows: list[dict[str, Any]] = []
    for path in paths:
        for name, photo in pics.items():
            clean = photo if path == "full size" else data.cover(photo, *FRAME)
            for deg, (d, _) in data.EVAL_SET.items():
                bad = data.degrade(clean, d, seeded(name, deg, path))
                if path != "full size":  # what the pipeline shows without the effect
                    bad = shown(bad)
                outs = {"input": bad, "enhance": full(bad) if path == "full size" else through(bad)}
                if baselines:
                    outs |= {"unsharp": unsharp(bad), "nlm": nlm(bad)}
                row: dict[str, Any] = {"path": path, "photo": name, "degradation": deg}
                for m, img in outs.items():
                    row[m] = (metrics.psnr(img, clean), metrics.ssim(img, clean))
                rows.append(row)
    return {"model": model, "rows": rows}


def fmt_enhance(result: dict[str, Any], per_photo: bool) -> str:
    rows = result["rows"]
    methods = [m for m in METHODS if m in rows[0]]
    lines: list[str] = []
    for path in dict.fromkeys(r["path"] for r in rows):
        sub = [r for r in rows if r["path"] == path]
        where = (
            "at the photo's own size" if path == "full size" else "through the pipeline at 1280×720"
        )
        if per_photo:
            lines += [f"\n### {path}: {where}, PSNR dB / SSIM (▼ below the input)\n"]
            lines.append("| photo | degradation | " + " | ".join(methods) + " | Δ dB | Δ SSIM |")
            lines.append("|---|---|" + "---:|" * (len(methods) + 2))
            for r in sub:
                dp = r["enhance"][0] - r["input"][0]
                ds = r["enhance"][1] - r["input"][1]
                flag = " ▼" if dp < 0 or ds < 0 else ""
                cells = " | ".join(f"{r[m][0]:.2f} / {r[m][1]:.4f}" for m in methods)
                lines.append(
                    f"| {r['photo']} | {r['degradation']} | {cells} | {dp:+.2f}{flag} | {ds:+.4f} |"
                )
        lines += [f"\n### {path}: {where}, mean over {len({r['photo'] for r in sub})} photos\n"]
        head = (
            " | ".join(f"{m} dB" for m in methods)
            + " | "
            + " | ".join(f"{m} SSIM" for m in methods)
        )
        lines.append(f"| degradation | {head} | min Δ dB | below input |")
        lines.append("|---|" + "---:|" * (2 * len(methods) + 2))
        groups = {
            deg: [r for r in sub if r["degradation"] == deg]
            for deg in dict.fromkeys(r["degradation"] for r in sub)
        }
        groups["**all**"] = sub
        for deg, rs in groups.items():
            trained = "" if deg == "**all**" else ("" if data.EVAL_SET[deg][1] else " *")
            p = " | ".join(f"{np.mean([r[m][0] for r in rs]):.2f}" for m in methods)
            s = " | ".join(f"{np.mean([r[m][1] for r in rs]):.4f}" for m in methods)
            gains = [r["enhance"][0] - r["input"][0] for r in rs]
            below = sum(
                1 for r in rs if r["enhance"][0] < r["input"][0] or r["enhance"][1] < r["input"][1]
            )
            lines.append(f"| {deg}{trained} | {p} | {s} | {min(gains):+.2f} | {below}/{len(rs)} |")
    lines.append(
        "\n\\* a kind or setting never trained on. Degradations: "
        + "; ".join(f"{k}: {d.describe()}" for k, (d, _) in data.EVAL_SET.items())
    )
    return "\n".join(lines)


def reduced_table(pics: dict[str, np.ndarray]) -> dict[str, Any]:
    rows = []
    for res in ((1280, 720), (1920, 1080)):
        for model in ("cartoon", "enhance"):
            runs = {
                "full": ThroughPipeline("gan", model=model, gan_size=0),
                "guided": ThroughPipeline("gan", model=model),
                "bilinear": ThroughPipeline("gan", model=model, upsampling="bilinear"),
            }
            for name, photo in pics.items():
                frame = data.cover(photo, *res)
                if model == "enhance":
                    frame = data.degrade(frame, data.EVAL_DEGRADATION, seeded(name, "reduced"))
                out = {k: run(frame) for k, run in runs.items()}
                rows.append(
                    {
                        "resolution": f"{res[0]}×{res[1]}",
                        "model": model,
                        "photo": name,
                        **{
                            k: (
                                metrics.psnr(out[k], out["full"]),
                                metrics.ssim(out[k], out["full"]),
                            )
                            for k in ("guided", "bilinear")
                        },
                    }
                )
    return {"rows": rows}


def fmt_reduced(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        "| frame | model | guided dB | bilinear dB | guided SSIM | bilinear SSIM | guided worst |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for res in dict.fromkeys(r["resolution"] for r in rows):
        for model in ("cartoon", "enhance"):
            rs = [r for r in rows if r["resolution"] == res and r["model"] == model]
            g = np.mean([r["guided"] for r in rs], axis=0)
            b = np.mean([r["bilinear"] for r in rs], axis=0)
            worst = min(rs, key=lambda r: r["guided"][0])
            lowest = f"{worst['guided'][0]:.2f} ({worst['photo']})"
            lines.append(
                f"| {res} | {model} | {g[0]:.2f} | {b[0]:.2f} "
                f"| {g[1]:.4f} | {b[1]:.4f} | {lowest} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("enhance", "reduced"))
    ap.add_argument("--model", default="enhance", help="enhance (shipped) or a .onnx path")
    ap.add_argument("--paths", default="full size,pipeline 720p", help="full size, pipeline 720p")
    ap.add_argument("--no-baselines", action="store_true", help="input and enhance only (quick)")
    ap.add_argument(
        "--upsampling", choices=("guided", "residual", "bilinear"), help="override the effect's"
    )
    ap.add_argument("--eps", type=float, help="override the guided filter's eps (0–255 scale)")
    ap.add_argument("--noise-eps", type=float, help="override the guided filter's noise factor")
    ap.add_argument("--photos", help="comma-separated subset")
    ap.add_argument("--per-photo", action="store_true", help="also every photo × degradation")
    ap.add_argument("--no-fetch", action="store_true", help="never download opencv-doc")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    args = ap.parse_args(argv)
    pics = photos(fetch=not args.no_fetch)
    if args.photos:
        pics = {k: pics[k] for k in args.photos.split(",")}
    started = time.perf_counter()
    if args.what == "enhance":
        paths = tuple(p.strip() for p in args.paths.split(","))
        result = enhance_table(
            args.model,
            pics,
            paths,
            not args.no_baselines,
            args.upsampling,
            args.eps,
            args.noise_eps,
        )
        print(fmt_enhance(result, args.per_photo))
    else:
        result = reduced_table(pics)
        print(fmt_reduced(result))
    print(f"\n{len(pics)} photos, {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
