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

# Per task: the reconstruction loss and its weight (the adversarial loss has weight 1), and the
# generator's full-resolution skip filter. Enhance is judged by PSNR against the clean photo, so
# its reconstruction loss is the squared error, and its skip path is a learned 5×5 filter (a
# linear deblur that the half-resolution residual alone learns poorly); the cartoon's is L1
# (flat regions, sharp edges) through a plain skip. ``warmup`` is the fraction of the steps
# trained on the reconstruction loss alone before the discriminator joins (ESRGAN's
# PSNR-oriented pre-training): an adversarial loss from the start costs enhance ~0.5 dB.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "cartoon": {
        "loss": "l1",
        "rec_weight": 100.0,
        "skip_kernel": 1,
        "warmup": 0.0,
        "head": "shuffle",
    },
    "enhance": {
        "loss": "l2",
        "rec_weight": 100000.0,
        "skip_kernel": 5,
        "warmup": 0.5,
        "head": "transpose",
    },
}


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
    if loss not in ("l1", "l2"):
        raise ValueError(f"loss {loss!r} is not l1 or l2")
    seed_everything(seed, threads)
    sampler = data.PatchSampler(task, photos or data.training_photos(), patch, seed)
    g, d = Generator(skip_kernel=skip_kernel, head=defaults["head"]), PatchDiscriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.5, 0.999))
    sched_g = torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, steps, eta_min=1e-4)
    sched_d = torch.optim.lr_scheduler.CosineAnnealingLR(opt_d, steps, eta_min=1e-4)
    mse = nn.MSELoss()
    reconstruction = nn.L1Loss() if loss == "l1" else nn.MSELoss()
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


def evaluate(task: str, g: Generator) -> dict[str, Any]:
    """Held-out photos only (never trained on)."""
    rng = np.random.default_rng(1234)
    rows: dict[str, Any] = {}
    for name, photo in data.held_out_photos().items():
        if task == "enhance":
            bad = data.degrade(photo, data.EVAL_DEGRADATION, rng)
            candidates = {
                "degraded (bicubic)": bad,
                "unsharp": unsharp(bad),
                "enhance": run_generator(g, bad),
            }
            rows[name] = {
                metric: {k: fn(img, photo) for k, img in candidates.items()}
                for metric, fn in (("psnr", metrics.psnr), ("ssim", metrics.ssim))
            }
        else:
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
    return {
        "mean": summary,
        "per_photo": rows,
        "degradation": data.EVAL_DEGRADATION.__dict__ if task == "enhance" else None,
    }


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
    ap.add_argument("--loss", choices=("l1", "l2"), help="reconstruction loss (task default)")
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
