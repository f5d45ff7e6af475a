"""Markdown tables of the GAN generators' held-out metrics, from engine/models/*.metrics.json.

.venv/bin/python tools/gan_report.py      (pasted into engine/models/PROVENANCE.md and the README)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parent.parent / "engine" / "models"


def table(report: dict, metric: str, fmt: str) -> list[str]:
    rows = report["held_out"]["per_photo"]
    columns = list(next(iter(rows.values()))[metric])
    lines = [
        f"| {metric} | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for photo, r in rows.items():
        lines.append(
            f"| {photo} | " + " | ".join(format(r[metric][c], fmt) for c in columns) + " |"
        )
    mean = report["held_out"]["mean"][metric]
    lines.append("| **mean** | " + " | ".join(f"**{mean[c]:{fmt}}**" for c in columns) + " |")
    return lines


def enhance_table(report: dict) -> list[str]:
    """Per degradation of ``data.EVAL_SET``: means over the held-out photos (* never trained)."""
    held = report["held_out"]
    methods = list(held["mean"]["psnr"])
    lines = [
        "| degradation | "
        + " | ".join(f"{m} dB" for m in methods)
        + " | "
        + " | ".join(f"{m} SSIM" for m in methods)
        + " | min Δ dB | below input |",
        "|---|" + "---:|" * (2 * len(methods) + 2),
    ]
    photos = len(next(iter(held["per_photo"].values())))
    rows = {**held["per_degradation"], "**all**": held["mean"]}
    for deg, r in rows.items():
        info = held["degradations"].get(deg)
        mark = " *" if info and not info["trained_family"] else ""
        n = photos if info else photos * len(held["per_degradation"])
        lines.append(
            f"| {deg}{mark} | "
            + " | ".join(f"{r['psnr'][m]:.2f}" for m in methods)
            + " | "
            + " | ".join(f"{r['ssim'][m]:.4f}" for m in methods)
            + f" | {r['min_gain_db']:+.2f} | {r['below_input']}/{n} |"
        )
    return lines


def main() -> int:
    for task in ("enhance", "cartoon"):
        report = json.loads((MODELS / f"{task}.metrics.json").read_text())
        print(f"### {task}: {report['steps']} steps, seed {report['seed']}, {report['seconds']} s")
        print()
        if task == "enhance":
            print("\n".join(enhance_table(report)))
        else:
            print("\n".join(table(report, "psnr_vs_target", ".2f")))
            print()
            print("\n".join(table(report, "edge_sharpness", ".1f")))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
