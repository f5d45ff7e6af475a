"""Two LiveFX checkouts' cpu pipelines on the same frames, frame by frame in lockstep.

A machine whose speed drifts (other tenants, frequency) makes two runs minutes apart
incomparable: this runs both in the same minutes. Each checkout's pipeline lives in a worker
process of its own (its own ``engine`` package, imported from that checkout); the driver makes
the frames once (the astronaut cut-out over a photo, swaying, with camera noise, from this
checkout's ``engine.samples``), hands both workers the same file, then asks A and B for one frame
each in turn, swapping who goes first every round, so that only one of them works at a time.

    .venv/bin/python benchmarks/ab.py --a /path/to/old/checkout --b . --effect blur

An older checkout needs no install of its own: the worker puts it first on ``sys.path`` (its
compiled loops, if it has any, must have been built in place). Prints per stage the median and
p95 of each, and B's median over A's (below 1: B faster); ``--json`` prints everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}

# The worker: one checkout's pipeline, one frame per line asked for, the stage times back.
WORKER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import cv2
import numpy as np
cv2.setNumThreads(int(sys.argv[4]))
import engine
from engine.config import EffectConfig, InferenceConfig, PipelineConfig
from engine.frame import FrameBuffer
from engine.pipeline import make_pipeline
with np.load(sys.argv[2]) as f:
    planes = [(f[f"y{i}"], f[f"u{i}"], f[f"v{i}"]) for i in range(int(f["n"]))]
frames = [FrameBuffer(y, u, v) for y, u, v in planes]
effect = json.loads(sys.argv[3])
config = PipelineConfig(
    effect=EffectConfig(**effect), inference=InferenceConfig(threads=int(sys.argv[4])),
    backend="cpu",
)
p = make_pipeline(config)
print(json.dumps({"engine": engine.__file__, "reason": p.backend_reason}), flush=True)
for line in sys.stdin:
    i = int(line)
    p.process(frames[i % len(frames)])
    print(json.dumps(p.times.last_ms()), flush=True)
"""


class Worker:
    def __init__(self, checkout: Path, frames: Path, effect: dict[str, Any], threads: int):
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        args = [sys.executable, "-c", WORKER, str(checkout), str(frames)]
        self.proc = subprocess.Popen(
            [*args, json.dumps(effect), str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.hello = json.loads(self._read())
        if not Path(self.hello["engine"]).resolve().is_relative_to(checkout.resolve()):
            raise SystemExit(f"the worker for {checkout} imported {self.hello['engine']}")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("a worker ended early (its error is above)")
        return line

    def frame(self, i: int) -> dict[str, float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()
        out: dict[str, float] = json.loads(self._read())
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def save_frames(path: Path, w: int, h: int, n: int) -> None:
    from engine.samples import composited_clip

    clip = composited_clip(w, h, n)
    arrays: dict[str, Any] = {"n": np.array(n)}
    for i, f in enumerate(clip.frames):
        arrays |= {f"y{i}": f.y, f"u{i}": f.u, f"v{i}": f.v}
    np.savez(path, **arrays)


def run(
    a: Path, b: Path, res: str, effect: dict[str, Any], repeats: int, warmup: int, threads: int
) -> dict[str, Any]:
    w, h = RESOLUTIONS[res]
    with tempfile.TemporaryDirectory() as tmp:
        frames = Path(tmp) / "frames.npz"
        save_frames(frames, w, h, 24)
        workers = {"A": Worker(a, frames, effect, threads), "B": Worker(b, frames, effect, threads)}
        times: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        try:
            for i in range(warmup + repeats):
                order = ("A", "B") if i % 2 == 0 else ("B", "A")
                for k in order:
                    t = workers[k].frame(i)
                    if i >= warmup:
                        times[k].append(t)
        finally:
            for wk in workers.values():
                wk.close()
    out: dict[str, Any] = {"resolution": res, "reasons": {}, "stages": {}}
    for k, wk in workers.items():
        out["reasons"][k] = wk.hello["reason"]
    stages = list(times["A"][0])
    for s in stages:
        row: dict[str, Any] = {}
        for k in ("A", "B"):
            v = np.array([t[s] for t in times[k] if s in t])
            row[k] = {"median_ms": float(np.median(v)), "p95_ms": float(np.percentile(v, 95))}
        row["B/A"] = row["B"]["median_ms"] / max(row["A"]["median_ms"], 1e-9)
        out["stages"][s] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--a", type=Path, required=True, help="checkout A (e.g. an older commit)")
    ap.add_argument("--b", type=Path, default=ROOT, help="checkout B (default: this one)")
    ap.add_argument("--effect", default="blur", help="blur, replace, colour, mask, gan:MODEL")
    ap.add_argument("--resolutions", default="720p")
    ap.add_argument("-n", "--repeats", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    name, _, model = args.effect.partition(":")
    effect = {"name": name, **({"model": model} if model else {})}
    results = [
        run(args.a, args.b, r, effect, args.repeats, args.warmup, args.threads)
        for r in args.resolutions.split(",")
    ]
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"A: {args.a}\nB: {args.b}\neffect {args.effect}, {args.repeats} frames each after "
          f"{args.warmup} warm-up, A and B in turn, {args.threads} thread(s)")  # fmt: skip
    for r in results:
        print(f"\n{r['resolution']}  (A: {r['reasons']['A']}; B: {r['reasons']['B']})")
        print(f"  {'stage':<11}{'A median':>9}{'A p95':>8}{'B median':>10}{'B p95':>8}{'B/A':>7}")
        for s, row in r["stages"].items():
            a_, b_ = row["A"], row["B"]
            print(
                f"  {s:<11}{a_['median_ms']:>9.2f}{a_['p95_ms']:>8.2f}"
                f"{b_['median_ms']:>10.2f}{b_['p95_ms']:>8.2f}{row['B/A']:>7.2f}"
            )


if __name__ == "__main__":
    main()
