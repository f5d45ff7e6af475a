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


def main() -> int:
    for task in ("enhance", "cartoon"):
        report = json.loads((MODELS / f"{task}.metrics.json").read_text())
        print(f"### {task}: {report['steps']} steps, seed {report['seed']}, {report['seconds']} s")
        print()
        if task == "enhance":
            print("\n".join(table(report, "psnr", ".2f")))
            print()
            print("\n".join(table(report, "ssim", ".4f")))
        else:
            print("\n".join(table(report, "psnr_vs_target", ".2f")))
            print()
            print("\n".join(table(report, "edge_sharpness", ".1f")))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
