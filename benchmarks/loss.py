"""Loss, reordering and an outage, both ways, in the client's own transport (never the network):
what comes back from LiveFX and from aiortc's bare echo, 640×480 at 30 fps.

Servers are child processes: ``livefx serve`` (``/offer?effect=blur``; its receivers wait for a
lost packet only until a deadline, ask again for what is missing, then ask for a keyframe and
skip to it) and ``livefx serve --mode bare-echo`` (aiortc's own receivers and relay: the peer).
The client is ``livefx bench``'s aiortc peer (``engine.bench``: each frame's number in its
picture, so every frame back is matched to when it was sent), with two receivers: aiortc's own
(``standard``) and LiveFX's (``marker``, the same loss handling as the server's; a browser has
its own). Conditions: no loss, 5 % and 15 % random loss, 5 % with 20 ± 15 ms of jitter (which
reorders), and a 300 ms outage. Figures per run: frames back (share of those sent), round trip
median and p95, the longest gap between frames back, and for the outage how long after its end
the picture was back.

    python benchmarks/loss.py [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.bench.run import BenchConfig, Target, bench
from engine.server.client import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
OUTAGE_MS = 300.0
CONDITIONS = [
    ("no loss", {}),
    ("5 % loss", {"loss": 0.05}),
    ("15 % loss", {"loss": 0.15}),
    ("5 % loss, 20±15 ms jitter", {"loss": 0.05, "delay_ms": 20.0, "jitter_ms": 15.0}),
    ("300 ms outage", {"outage_ms": OUTAGE_MS, "outage_at_s": 5.0}),
]


def one(target: Target, jb: str, seconds: float, seed: int, **impair: Any) -> dict[str, Any]:
    config = BenchConfig(
        targets=[target], seconds=seconds, warmup=2.0, jitter_buffer=jb, seed=seed, **impair
    )
    result = asyncio.run(bench(config, progress_bar=False))
    run = result["runs"][0]
    freeze = run["longest_freeze_ms"]
    row = {
        "back": run["matched_share"],
        "rtt_median_ms": run["rtt_ms"]["median"],
        "rtt_p95_ms": run["rtt_ms"]["p95"],
        "longest_freeze_ms": freeze,
        "conditions": run["conditions"],
    }
    if impair.get("outage_ms") and freeze is not None:
        row["back_after_outage_ms"] = round(max(0.0, freeze - impair["outage_ms"]), 1)
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="measured per run (default 10)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    livefx = ServerProcess("--offer-rate", "100", "--admit-load", "0", cwd=str(ROOT))
    echo = ServerProcess("--mode", "bare-echo", "--offer-rate", "100", cwd=str(ROOT))
    targets = [
        ("LiveFX blur", Target("livefx", url=f"{livefx.url}/offer?effect=blur")),
        ("aiortc bare echo", Target("echo", url=f"{echo.url}/offer")),
    ]
    rows: list[dict[str, Any]] = []
    try:
        for name, impair in CONDITIONS:
            for jb in ("marker", "standard"):
                for label, target in targets:
                    r = one(target, jb, args.seconds, args.seed, **impair)
                    rows.append({"condition": name, "client": jb, "server": label, **r})
                    extra = (
                        f"  back {r['back_after_outage_ms']} ms after"
                        if "back_after_outage_ms" in r
                        else ""
                    )
                    print(
                        f"{name:28s} {jb:8s} {label:17s} back {r['back'] * 100:5.1f} %  "
                        f"rtt {r['rtt_median_ms']} / p95 {r['rtt_p95_ms']} ms  "
                        f"freeze {r['longest_freeze_ms']} ms{extra} {' '.join(r['conditions'])}",
                        flush=True,
                    )
    finally:
        livefx.stop()
        echo.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
