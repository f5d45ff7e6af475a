"""How many sessions one LiveFX server carries: a local server and a load ramp against it.

Starts ``livefx serve`` (cpu backend, the effect given, blur by default) as a child process on
loopback and runs ``livefx bench URL --sessions ramp:1..MAX`` against it from this process:
sessions are added (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, …), each sending pre-encoded frames
(no encoder in the client) and reading the codes of a sample of what comes back, until more
than 2 % of frames do not come back, the round trip's p95 doubles from one session's, or the
server refuses a session (503: full). Prints the curve (sessions against fps out, drops, round
trip, the server's CPU, GPU time per frame) and the knee; ``--report DIR`` adds load.png and
report.html. Server and client share the machine: the client's own CPU is in the table.

    python benchmarks/load.py [--codec vp8|h264] [--size 640x480] [--fps 30] [--seconds 8]
                              [--max-sessions 64] [--effect blur] [--backend cpu]
                              [--url URL] [--report DIR] [--json] [--server-arg=--workers=2 …]

With ``--url``, no server is started: the ramp runs against that offer URL (any LiveFX, e.g. one
on a GPU machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.bench import load
from engine.bench.run import BenchConfig, Target
from engine.server.client import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", choices=("vp8", "h264"), default="vp8")
    ap.add_argument("--size", default="640x480", help="WxH sent (default 640x480)")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=8.0, help="measured per step (default 8)")
    ap.add_argument("--warmup", type=float, default=2.0, help="after each step's new sessions")
    ap.add_argument("--max-sessions", type=int, default=64, help="the ramp's end (default 64)")
    ap.add_argument("--min-sessions", type=int, default=1, help="the ramp's start (default 1)")
    ap.add_argument("--effect", default="blur")
    ap.add_argument("--backend", default="cpu", help="the server's (default cpu)")
    ap.add_argument("--sample", type=int, default=None, help="read 1 code in K (default: auto)")
    ap.add_argument("--live-encode", action="store_true", help="encode in the client instead")
    ap.add_argument("--url", default=None, help="ramp against this offer URL; start no server")
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="passed to livefx serve (repeatable), e.g. --server-arg=--admit-load=0",
    )
    ap.add_argument("--report", default=None, metavar="DIR", help="report.html and load.png")
    ap.add_argument("--json", action="store_true", help="one JSON object as the last line")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    server = None
    if args.url is None:
        server = ServerProcess(
            "--host", "127.0.0.1", "--backend", args.backend, "--effect", args.effect,
            "--max-sessions", str(args.max_sessions), "--offer-rate", "1000",
            *args.server_arg, cwd=str(ROOT),
        )  # fmt: skip
        url = f"{server.url}/offer?effect={args.effect}"
    else:
        url = args.url
    try:
        config = BenchConfig(
            targets=[Target(label=url, url=url)],
            ramp=(args.min_sessions, args.max_sessions),
            width=width,
            height=height,
            fps=args.fps,
            seconds=args.seconds,
            warmup=args.warmup,
            codec=args.codec,
            sample=args.sample,
            pre_encoded=not args.live_encode,
        )

        def progress(step: dict) -> None:
            if not args.json:
                print(load.progress_line(step), file=sys.stderr, flush=True)

        result = asyncio.run(load.ramp(config, on_step=progress))
    finally:
        if server is not None:
            server.stop()
    if args.report is not None:
        from engine.bench.report import write_report

        write_report(result, Path(args.report))
    if args.json:
        print(json.dumps(result))
    else:
        print(load.table(result))
        if args.report is not None:
            print(f"\nreport: {Path(args.report) / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
