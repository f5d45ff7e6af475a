"""Soak: N sessions through one ``livefx serve`` for a long time, the server's health sampled.

The server is a child process (the real entry point); this process is every client (the bench's
plain aiortc peer, ``engine.bench.peer``: each frame's number is stamped into its picture, so
every returned frame's round trip is exact). Every ``--interval`` seconds one row goes into
``soak.csv``: the server's RSS, open descriptors and threads (its /proc entry), its CPU share,
and over the last interval the round trip (median, p95), the frames back per second and the
frames the server dropped (its /stats). At the end: ``soak.png`` (the rows over time) and a
summary (also ``soak.json``):

- RSS growth after the warm-up (``--warmup``, default 5 minutes): last row against the first
  row after the warm-up;
- descriptors and threads: their range after the warm-up;
- round-trip median drift: the median of the last 5 minutes' rows against the first 5 minutes'
  after the warm-up;
- crashes: the server exiting, or a session that ended on its own (it is reconnected, and
  counted);
- after the sessions end: descriptors and threads back at the idle server's figures.

Defaults: 4 sessions of 640×480 blur at 30 fps for one hour. The test suite runs a 30 s one.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from engine.bench import peer
from engine.bench.run import BenchConfig, Target, source_frames
from engine.server.client import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
FIELDS = [
    "t_s",
    "rss_mb",
    "fds",
    "threads",
    "cpu_pct",
    "sessions",
    "rtt_median_ms",
    "rtt_p95_ms",
    "fps_back",
    "dropped",
    "crashes",
]


async def settled_figures(
    server: ServerProcess, target: dict[str, float] | None
) -> dict[str, float]:
    """The figures once sessions that were just deleted are gone (their threads and sockets go
    within a few seconds): when they reach ``target``, or stop falling, or after 15 s."""
    deadline = time.perf_counter() + 15
    last = server.figures()
    while time.perf_counter() < deadline:
        await asyncio.sleep(1.0)
        now = server.figures()
        if (
            target is not None
            and now["fds"] <= target["fds"]
            and now["threads"] <= target["threads"]
        ):
            return now
        if target is None and (now["fds"], now["threads"]) == (last["fds"], last["threads"]):
            return now
        last = now
    return last


async def server_dropped(http: aiohttp.ClientSession, origin: str) -> int:
    try:
        async with http.get(origin + "/stats") as r:
            stats = await r.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return -1
    return int(sum(s.get("dropped", 0) for s in stats.get("sessions", [])))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b - 1.0, 4)


def summarise(
    rows: list[dict[str, Any]],
    warmup: float,
    idle: dict[str, float],
    after: dict[str, float] | None,
    crashes: int,
) -> dict[str, Any]:
    settled = [r for r in rows if r["t_s"] >= warmup] or rows[-1:]
    end = settled[-1]["t_s"] if settled else 0.0
    first = [r for r in settled if r["t_s"] < settled[0]["t_s"] + 300]
    last = [r for r in settled if r["t_s"] > end - 300]

    def med(part: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in part if r[key] is not None]
        return round(statistics.median(values), 2) if values else None

    return {
        "rows": len(rows),
        "seconds": rows[-1]["t_s"] if rows else 0.0,
        "warmup_s": warmup,
        "rss_mb": {
            "first": settled[0]["rss_mb"] if settled else None,
            "last": settled[-1]["rss_mb"] if settled else None,
            "max": max(r["rss_mb"] for r in rows) if rows else None,
        },
        "rss_growth": ratio(settled[-1]["rss_mb"], settled[0]["rss_mb"]) if settled else None,
        "fds_range": [min(r["fds"] for r in settled), max(r["fds"] for r in settled)]
        if settled
        else None,
        "threads_range": [min(r["threads"] for r in settled), max(r["threads"] for r in settled)]
        if settled
        else None,
        "rtt_median_ms": {"first": med(first, "rtt_median_ms"), "last": med(last, "rtt_median_ms")},
        "rtt_drift": ratio(med(last, "rtt_median_ms"), med(first, "rtt_median_ms")),
        "rtt_p95_ms": med(settled, "rtt_p95_ms"),
        "fps_back": med(settled, "fps_back"),
        "crashes": crashes,
        "idle": {k: idle[k] for k in ("fds", "threads", "rss_mb")},
        "after": {k: after[k] for k in ("fds", "threads", "rss_mb")} if after else None,
    }


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    panels = [
        ("rss_mb", "RSS (MB)"),
        ("fds", "descriptors"),
        ("threads", "threads"),
        ("rtt_median_ms", "round trip median / p95 (ms)"),
        ("fps_back", "frames back / s"),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 10), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        ax.plot(t, [r[key] for r in rows], lw=1)
        if key == "rtt_median_ms":
            ax.plot(t, [r["rtt_p95_ms"] for r in rows], lw=1, alpha=0.6)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes")
    axes[0].set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def soak(args: argparse.Namespace, server: ServerProcess, out: Path) -> dict[str, Any]:
    w, h = (int(v) for v in args.size.split("x"))
    url = f"{server.url}/offer?effect={args.effect}"
    config = BenchConfig(targets=[Target("soak", url=url)], width=w, height=h, fps=args.fps)
    frames = source_frames(config)
    layout = config.layout()
    rows: list[dict[str, Any]] = []
    crashes = 0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        base = peer.SessionConfig(url=url, fps=args.fps)
        # The idle figures are taken after a short first round: what the server creates once
        # and keeps (its thread pool, the model runtime's files) is not a leak.
        primer = [peer.BenchSession(base, frames, layout, http) for _ in range(args.sessions)]
        for s in primer:
            await s.start()
        await asyncio.sleep(3)
        await asyncio.gather(*(s.stop() for s in primer), return_exceptions=True)
        idle = await settled_figures(server, None)
        sessions = [peer.BenchSession(base, frames, layout, http) for _ in range(args.sessions)]
        for s in sessions:
            await s.start()
        t0 = time.perf_counter()
        last_cpu, last_t = server.figures()["cpu_s"], t0
        seen = [0] * len(sessions)
        with (out / "soak.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            while (now := time.perf_counter()) - t0 < args.duration:
                await asyncio.sleep(min(args.interval, args.duration - (now - t0)))
                now = time.perf_counter()
                if server.proc.poll() is not None:
                    crashes += 1
                    print(f"soak: the server exited ({server.proc.returncode})", flush=True)
                    break
                rtts: list[float] = []
                back = 0
                for i, s in enumerate(sessions):
                    m = s.measurement
                    fresh = m.records[seen[i] :]
                    seen[i] = len(m.records)
                    rtts += [(r.received - r.sent) * 1000 for r in fresh]
                    back += len(fresh)
                    pc_state = s.pcs[-1].connectionState if s.pcs else "closed"
                    if pc_state in ("failed", "closed"):
                        crashes += 1
                        print(f"soak: session {i} ended ({pc_state}); reconnecting", flush=True)
                        await s.stop()
                        sessions[i] = peer.BenchSession(base, frames, layout, http)
                        seen[i] = 0
                        await sessions[i].start()
                figures = server.figures()
                cpu = (figures["cpu_s"] - last_cpu) / max(now - last_t, 1e-6) * 100
                last_cpu, last_t = figures["cpu_s"], now
                pct = peer.percentiles(rtts)
                row = {
                    "t_s": round(now - t0, 1),
                    "rss_mb": round(figures["rss_mb"], 1),
                    "fds": figures["fds"],
                    "threads": figures["threads"],
                    "cpu_pct": round(cpu, 1),
                    "sessions": len(sessions),
                    "rtt_median_ms": pct["median"],
                    "rtt_p95_ms": pct["p95"],
                    "fps_back": round(back / args.interval, 1),
                    "dropped": await server_dropped(http, server.url),
                    "crashes": crashes,
                }
                rows.append(row)
                writer.writerow(row)
                f.flush()
                if not args.quiet:
                    print(" ".join(f"{k}={row[k]}" for k in FIELDS), flush=True)
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)
    after = await settled_figures(server, idle) if server.proc.poll() is None else None
    summary = summarise(rows, args.warmup, idle, after, crashes)
    summary["config"] = {
        "sessions": args.sessions,
        "size": args.size,
        "effect": args.effect,
        "fps": args.fps,
        "duration_s": args.duration,
        "interval_s": args.interval,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sessions", type=int, default=4)
    p.add_argument("--size", default="640x480")
    p.add_argument("--effect", default="blur")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--duration", type=float, default=3600.0, help="seconds (default 1 hour)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between rows")
    p.add_argument(
        "--warmup",
        type=float,
        default=300.0,
        help="seconds before growth is measured (default 5 minutes)",
    )
    p.add_argument("--out", default=str(ROOT / "build" / "soak"))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(
        "--max-sessions",
        str(args.sessions),
        "--offer-rate",
        "100",
        "--admit-load",
        "0",
        cwd=str(ROOT),
    )
    try:
        summary = asyncio.run(soak(args, server, out))
    finally:
        log = server.stop()
    summary["server_exit"] = server.proc.returncode
    summary["server_errors"] = [
        line.strip() for line in log.splitlines() if "Traceback" in line or " ERROR " in line
    ][:5]
    rows = list(csv.DictReader((out / "soak.csv").open()))
    parsed = [
        {k: (float(v) if v not in ("", "None") else None) for k, v in r.items()} for r in rows
    ]
    if parsed:
        plot(
            parsed,
            out / "soak.png",
            f"soak: {args.sessions} × {args.size} {args.effect}, {args.duration:g} s",
        )
    (out / "soak.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"soak: {out / 'soak.csv'}, {out / 'soak.png'}, {out / 'soak.json'}")
    return 0 if summary["crashes"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
