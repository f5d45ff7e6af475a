"""Adversarial training of a generator, ONNX export, and held-out evaluation."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engine import metrics
from engine.models.train import data
from engine.models.train.nets import Generator, PatchDiscriminator

TASKS = ("cartoon", "enhance")

# Per task: the reconstruction loss and its weight (the adversarial loss has weight 1), the
# generator's shape (``net``: Generator's arguments) and ``warmup``, the fraction of the steps
# trained on the reconstruction loss alone before the discriminator joins (ESRGAN's
# PSNR-oriented pre-training; 1 = never). The cartoon's loss is L1 (flat regions, sharp edges)
# through a plain skip, adversarial from the start. Enhance is judged by PSNR and SSIM against
# the clean picture and must never make a picture worse: Charbonnier (a smooth L1) plus
# 0.1·(1 − SSIM), no adversarial term (it bought 0.04 dB and cost a discriminator per step),
# a generator twice as deep at the quarter resolution, its residual starting at zero (the
# identity), and a learned 5×5 skip filter (a linear deblur the half-resolution residual alone
# learns poorly).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "cartoon": {
        "loss": "l1",
        "rec_weight": 100.0,
        "skip_kernel": 1,
        "warmup": 0.0,
        "head": "shuffle",
        "net": {},
    },
    "enhance": {
        "loss": "logmse+ssim",
        "rec_weight": 1.0,
        "skip_kernel": 5,
        "warmup": 1.0,
        "head": "transpose",
        "net": {"blocks": 6, "identity_init": True},
    },
}
LOSSES = ("l1", "l2", "charbonnier+ssim", "logmse+ssim")
SSIM_WEIGHT = {"charbonnier+ssim": 0.1, "logmse+ssim": 1.0}


def _gauss_1d(sigma: float = 1.5, size: int = 11) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_torch(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of two N×3×H×W images in [0, 1] (Gaussian window ``g``, valid region), as
    ``engine.metrics.ssim`` computes it on 8-bit pictures; the five local means in one
    separable pass."""
    c1, c2 = 0.01**2, 0.03**2
    k = g.numel()
    z = torch.cat([a, b, a * a, b * b, a * b], 1)
    z = nn.functional.conv2d(z, g.view(1, 1, k, 1).expand(15, 1, k, 1), groups=15)
    z = nn.functional.conv2d(z, g.view(1, 1, 1, k).expand(15, 1, 1, k), groups=15)
    ma, mb, aa, bb, ab = z.split(3, 1)
    va, vb, cov = aa - ma * ma, bb - mb * mb, ab - ma * mb
    s = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
    return s.mean()


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((a - b) ** 2 + eps * eps).mean()


def seed_everything(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def train(
    task: str,
    *,
    steps: int,
    seed: int = 0,
    batch: int = 16,
    patch: int = 64,
    loss: str | None = None,
    rec_weight: float | None = None,
    skip_kernel: int | None = None,
    warmup: float | None = None,
    lr: float = 2e-3,
    threads: int = 2,
    photos: list[np.ndarray] | None = None,
    progress: bool = True,
    on_warmup_end: Callable[[Generator], Any] | None = None,
) -> tuple[Generator, dict[str, Any]]:
    """Train ``task`` for ``steps`` steps (pix2pix-style: LSGAN + λ·reconstruction); returns G
    and a log. ``loss``, ``rec_weight``, ``skip_kernel`` and ``warmup`` default to the task's.
    ``on_warmup_end(g)``, when the discriminator joins, goes into the log as ``after_warmup``
    (the held-out metrics of the reconstruction-only generator, for the record)."""
    if task not in TASKS:
        raise ValueError(f"task {task!r} is not one of {TASKS}")
    defaults = TASK_DEFAULTS[task]
    loss = loss or defaults["loss"]
    rec_weight = defaults["rec_weight"] if rec_weight is None else rec_weight
    skip_kernel = skip_kernel or defaults["skip_kernel"]
    warmup = defaults["warmup"] if warmup is None else warmup
    adversarial_from = round(warmup * steps)
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r} is not one of {LOSSES}")
    seed_everything(seed, threads)
    sampler: data.PatchSampler | data.EnhanceSampler
    if task == "enhance":
        sampler = data.EnhanceSampler(photos or data.enhance_training_photos(), patch, seed)
    else:
        sampler = data.PatchSampler(task, photos or data.training_photos(), patch, seed)
    net = {"skip_kernel": skip_kernel, "head": defaults["head"], **defaults["net"]}
    g, d = Generator(**net), PatchDiscriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    sched_g = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, steps, eta_min=1e-4)
    sched_d = torch.optim.lr_scheduler.CosineAnnealingLR(opt_d, steps, eta_min=1e-4)
    mse = nn.MSELoss()
    window = _gauss_1d()

    def reconstruction(fake: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if loss == "l1":
            return nn.functional.l1_loss(fake, y)
        if loss == "l2":
            return nn.functional.mse_loss(fake, y)
        structure = SSIM_WEIGHT[loss] * (1.0 - ssim_torch(fake, y, window))
        if loss == "logmse+ssim":  # each patch's dB counts the same, a good one's as a bad one's
            return torch.log10(((fake - y) ** 2).mean(dim=(1, 2, 3)) + 1e-5).mean() + structure
        return charbonnier(fake, y) + structure

    # D's learning rate follows the same cosine over all the steps, warm-up included; torch warns
    # that its scheduler steps while D does not.
    warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before")
    started = time.perf_counter()
    history: list[dict[str, float]] = []
    after_warmup: Any = None
    bar = tqdm(range(steps), desc=f"train {task}", disable=not progress, unit="step")
    for step in bar:
        x_np, y_np = sampler.batch(batch)
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        adversarial = step >= adversarial_from
        if step == adversarial_from and step > 0 and on_warmup_end is not None:
            after_warmup = on_warmup_end(g)
        fake = g(x)
        if adversarial:
            # Discriminator: real pairs → 1, generated pairs → 0 (least squares).
            opt_d.zero_grad()
            real_score, fake_score = d(x, y), d(x, fake.detach())
            loss_d = 0.5 * (
                mse(real_score, torch.ones_like(real_score))
                + mse(fake_score, torch.zeros_like(fake_score))
            )
            loss_d.backward()
            opt_d.step()
        # Generator: fool D, stay close to the target.
        opt_g.zero_grad()
        loss_rec = reconstruction(fake, y)
        loss_g = rec_weight * loss_rec
        if adversarial:
            score = d(x, fake)
            loss_adv = mse(score, torch.ones_like(score))
            loss_g = loss_g + loss_adv
        loss_g.backward()
        opt_g.step()
        sched_g.step()
        sched_d.step()
        if step % 50 == 0 or step == steps - 1:
            row = {"step": step, loss: loss_rec.item()}
            if adversarial:
                row |= {"d": loss_d.item(), "adv": loss_adv.item()}
            history.append(row)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "step"})
    g.eval()
    log = {
        "task": task,
        "steps": steps,
        "seed": seed,
        "batch": batch,
        "patch": patch,
        "loss": loss,
        "rec_weight": rec_weight,
        "skip_kernel": skip_kernel,
        "head": defaults["head"],
        "net": net,
        "warmup": warmup,
        "lr": lr,
        "threads": threads,
        "seconds": round(time.perf_counter() - started, 1),
        "final": history[-1],
        "parameters": sum(p.numel() for p in g.parameters()),
    }
    if after_warmup is not None:
        log["after_warmup"] = after_warmup
    return g, log


def export_onnx(g: Generator, path: Path) -> bytes:
    """ONNX, opset 17, dynamic batch/height/width; input ``image``, output ``output``."""
    g.eval()
    dummy = torch.rand(1, 3, 64, 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        g,
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["output"],
        dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "output": {0: "N", 2: "H", 3: "W"}},
        opset_version=17,
        dynamo=False,
    )
    return path.read_bytes()


def run_generator(g: Generator, rgb: np.ndarray) -> np.ndarray:
    """Apply G to a uint8 RGB image (padded to a multiple of 4, cropped back)."""
    h, w = rgb.shape[:2]
    ph, pw = (-h) % 4, (-w) % 4
    img = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else rgb
    x = torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    with torch.no_grad():
        y = g(x)[0].numpy().transpose(1, 2, 0)
    return np.clip(np.rint(y[:h, :w] * 255.0), 0, 255).astype(np.uint8)


def unsharp(rgb: np.ndarray, amount: float = 0.8, sigma: float = 1.5) -> np.ndarray:
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return cv2.addWeighted(rgb, 1 + amount, blurred, -amount, 0)


def evaluate_enhance(g: Generator) -> dict[str, Any]:
    """Held-out photos (never trained on) × ``data.EVAL_SET``: PSNR and SSIM against the clean
    photo of the degraded input, an unsharp mask of it and the generator, at the photo's size."""
    import zlib

    per: dict[str, dict[str, Any]] = {}
    for name, photo in data.held_out_photos().items():
        for deg, (d, _) in data.EVAL_SET.items():
            rng = np.random.default_rng(zlib.crc32(f"{name}|{deg}".encode()))
            bad = data.degrade(photo, d, rng)
            candidates = {"input": bad, "unsharp": unsharp(bad), "enhance": run_generator(g, bad)}
            per.setdefault(deg, {})[name] = {
                metric: {k: round(fn(img, photo), 4) for k, img in candidates.items()}
                for metric, fn in (("psnr", metrics.psnr), ("ssim", metrics.ssim))
            }

    def mean(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            m: {k: round(float(np.mean([r[m][k] for r in rows])), 4) for k in rows[0][m]}
            for m in ("psnr", "ssim")
        }
        out["below_input"] = sum(
            r["psnr"]["enhance"] < r["psnr"]["input"] or r["ssim"]["enhance"] < r["ssim"]["input"]
            for r in rows
        )
        out["min_gain_db"] = round(min(r["psnr"]["enhance"] - r["psnr"]["input"] for r in rows), 4)
        return out

    every = [r for photos in per.values() for r in photos.values()]
    return {
        "mean": mean(every),
        "per_degradation": {deg: mean(list(photos.values())) for deg, photos in per.items()},
        "per_photo": per,
        "degradations": {
            deg: {"describe": d.describe(), "trained_family": fam, **d.__dict__}
            for deg, (d, fam) in data.EVAL_SET.items()
        },
    }


def evaluate(task: str, g: Generator) -> dict[str, Any]:
    """Held-out photos only (never trained on)."""
    if task == "enhance":
        return evaluate_enhance(g)
    rows: dict[str, Any] = {}
    for name, photo in data.held_out_photos().items():
        target = data.cartoon_target(photo)
        out = run_generator(g, photo)
        edges = cv2.cvtColor(target, cv2.COLOR_RGB2GRAY) < 40
        rows[name] = {
            "psnr_vs_target": {
                "photo": metrics.psnr(photo, target),
                "cartoon": metrics.psnr(out, target),
            },
            "edge_sharpness": {
                "target": metrics.edge_sharpness(target, edges),
                "photo": metrics.edge_sharpness(photo, edges),
                "cartoon": metrics.edge_sharpness(out, edges),
            },
        }
    summary: dict[str, Any] = {}
    for metric in next(iter(rows.values())):
        summary[metric] = {
            k: round(float(np.mean([r[metric][k] for r in rows.values()])), 4)
            for k in next(iter(rows.values()))[metric]
        }
    return {"mean": summary, "per_photo": rows, "degradation": None}


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m engine.models.train", description="train a LiveFX GAN generator"
    )
    ap.add_argument("task", choices=TASKS)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loss", choices=LOSSES, help="reconstruction loss (task default)")
    ap.add_argument(
        "--rec-weight", type=float, help="reconstruction weight; adversarial: 1 (task default)"
    )
    ap.add_argument("--skip-kernel", type=int, help="skip filter size, odd (task default)")
    ap.add_argument(
        "--warmup", type=float, help="fraction of steps before the adversarial loss (task default)"
    )
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", type=Path, required=True, help="the .onnx to write")
    ap.add_argument(
        "--metrics", type=Path, default=None, help="also write the log and held-out metrics (JSON)"
    )
    args = ap.parse_args(argv)
    g, log = train(
        args.task,
        steps=args.steps,
        seed=args.seed,
        batch=args.batch,
        patch=args.patch,
        threads=args.threads,
        on_warmup_end=lambda g: evaluate(args.task, g)["mean"],
        loss=args.loss,
        rec_weight=args.rec_weight,
        skip_kernel=args.skip_kernel,
        warmup=args.warmup,
        lr=args.lr,
    )
    blob = export_onnx(g, args.out)
    report = {
        **log,
        "onnx_bytes": len(blob),
        "onnx_sha256": sha256(blob),
        "held_out": evaluate(args.task, g),
    }
    if args.metrics:
        args.metrics.write_text(json.dumps(report, indent=1))
    print(
        json.dumps(
            {k: report[k] for k in ("task", "steps", "seconds", "onnx_bytes", "onnx_sha256")}
        )
    )
    print(json.dumps(report["held_out"]["mean"]))
    return 0
