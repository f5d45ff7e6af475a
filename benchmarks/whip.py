"""WHIP publish → WHEP play over loopback: latency against pass-through, A/V offset, and what
many players of one stream cost the server.

Servers run as child processes: ``livefx serve`` and ``livefx serve --mode bare-echo`` (there a
WHIP publisher's decoded frames go to its WHEP players unprocessed, behind aiortc's own jitter
buffers). This process is every client (aiortc over loopback,
``engine.server.client``): a publisher sends composited frames with a person at 30 fps and a tone
burst every second; players time each frame and each burst against the publisher's own clock
(round trip = received − handed to the publisher's sender), so the A/V offset is video latency −
audio latency of the same run (positive: the picture is late).

Rows, all 640×480 unless ``--size``: ``/offer`` bare aiortc echo and LiveFX ``effect=none`` (the
sendrecv references), WHIP → WHEP through the bare-echo server (aiortc's own jitter buffers, no
pipeline), WHIP → WHEP ``none`` (the pass-through: LiveFX's path without an effect) and
``blur``. Then one blur stream with 1 and with ``--players`` players: the server's CPU
time (its /proc/PID/stat) per second of each, and their ratio.

The clients' receivers release frames as soon as they are whole (``--client-jitter-buffer
marker``, as the server's do), so rows differ by what the server does; ``standard`` uses aiortc's
own (one frame interval more for video, four packets of prefetch for audio).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import EncoderConfig
from engine.frame import FrameBuffer
from engine.pipeline.timing import summarise_ns
from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client, Player, Publisher, ServerProcess

ROOT = Path(__file__).resolve().parent.parent
PASS = "WHIP→WHEP livefx none"  # the pass-through: the same path, no effect


def summary_ms(values: list[float]) -> dict[str, float]:
    return summarise_ns([round(v * 1e6) for v in values])


def row(received: Any, sent: int, seconds: float, skip_v: int, skip_a: int) -> dict[str, Any]:
    video = received.latencies_ms[skip_v:]
    audio = received.audio_latencies_ms[skip_a:]
    out: dict[str, Any] = {
        "latency": summary_ms(video),
        "received": len(video),
        "sent": sent,
        "fps_out": round(len(video) / seconds, 1),
        "unmatched": received.unmatched,
        "audio_latency_ms": round(statistics.median(audio), 2) if audio else None,
        "bursts": len(audio),
    }
    if video and audio:
        out["av_offset_ms"] = round(statistics.median(video) - statistics.median(audio), 2)
    return out


async def sendrecv(url: str, frames: list[FrameBuffer], settings: dict[str, Any], seconds: float,
                   warmup: float) -> dict[str, Any]:  # fmt: skip
    c = Client(url, frames, fps=30.0, audio=True)
    await c.start(settings)
    await asyncio.sleep(warmup)
    skip_v, skip_a, sent0 = (
        len(c.received.latencies_ms),
        len(c.received.audio_latencies_ms),
        c.camera.count,
    )
    await asyncio.sleep(seconds)
    result = row(c.received, c.camera.count - sent0, seconds, skip_v, skip_a)
    await c.stop()
    return result


async def whip_whep(url: str, frames: list[FrameBuffer], settings: dict[str, Any], seconds: float,
                    warmup: float, name: str) -> dict[str, Any]:  # fmt: skip
    pub = Publisher(url, name, frames, fps=30.0, audio=True)
    await pub.start(settings)
    await asyncio.sleep(0.5)
    player = Player(url, name, pub)
    await player.start()
    await asyncio.sleep(warmup)
    r = player.received
    skip_v, skip_a, sent0 = len(r.latencies_ms), len(r.audio_latencies_ms), pub.camera.count
    await asyncio.sleep(seconds)
    result = row(r, pub.camera.count - sent0, seconds, skip_v, skip_a)
    await player.stop()
    await pub.stop()
    return result


async def players_cost(server: ServerProcess, frames: list[FrameBuffer], n: int, seconds: float,
                       warmup: float, name: str) -> dict[str, Any]:  # fmt: skip
    pub = Publisher(server.url, name, frames, fps=30.0, audio=True)
    await pub.start({"effect": "blur"})
    await asyncio.sleep(0.5)
    await pub.connected()
    players = [Player(server.url, name, pub) for _ in range(n)]
    for p in players:
        await p.start()
        await p.connected()  # LiveFX lets one address have 2 sessions connecting at a time
    await asyncio.sleep(warmup)
    counts = [len(p.received.arrivals) for p in players]
    cpu0, t0 = server.figures()["cpu_s"], time.perf_counter()
    await asyncio.sleep(seconds)
    cpu = server.figures()["cpu_s"] - cpu0
    elapsed = time.perf_counter() - t0
    fps = [(len(p.received.arrivals) - c) / elapsed for p, c in zip(players, counts, strict=True)]
    medians = [
        statistics.median(p.received.latencies_ms[-150:])
        for p in players
        if p.received.latencies_ms
    ]
    for p in players:
        await p.stop()
    await pub.stop()
    return {
        "players": n,
        "server_cpu_s_per_s": round(cpu / elapsed, 3),
        "fps_out_min": round(min(fps), 1),
        "latency_median_ms_worst": round(max(medians), 2) if medians else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured per row")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--players", type=int, default=8)
    ap.add_argument("--client-jitter-buffer", choices=("marker", "standard"), default="marker")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rtc.use_loopback_ice(True)
    rtc.install_jitter_buffer(low_latency=args.client_jitter_buffer == "marker")
    rtc.install_encoders(EncoderConfig())  # the clients' own senders
    w, h = (int(v) for v in args.size.split("x"))
    frames = composited_clip(w, h, 30, motion="sway", noise=2.0).frames
    rows: dict[str, Any] = {}
    cost: list[dict[str, Any]] = []
    livefx = ServerProcess(
        "--max-sessions", "8", "--max-players", "64", "--admit-load", "0", cwd=str(ROOT)
    )
    echo = ServerProcess("--mode", "bare-echo", "--max-sessions", "8", cwd=str(ROOT))
    s, wu = args.seconds, args.warmup
    try:
        rows["/offer bare aiortc echo"] = asyncio.run(sendrecv(echo.url, frames, {}, s, wu))
        rows["/offer livefx none"] = asyncio.run(
            sendrecv(livefx.url, frames, {"effect": "none"}, s, wu)
        )
        rows["WHIP→WHEP bare-echo server"] = asyncio.run(
            whip_whep(echo.url, frames, {}, s, wu, "p")
        )
        rows[PASS] = asyncio.run(whip_whep(livefx.url, frames, {"effect": "none"}, s, wu, "n"))
        rows["WHIP→WHEP livefx blur"] = asyncio.run(
            whip_whep(livefx.url, frames, {"effect": "blur"}, s, wu, "b")
        )
        for n in (1, args.players):
            cost.append(asyncio.run(players_cost(livefx, frames, n, s, wu, f"c{n}")))
    finally:
        livefx.stop()
        echo.stop()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    ratio = round(cost[1]["server_cpu_s_per_s"] / max(cost[0]["server_cpu_s_per_s"], 1e-9), 3)
    result = {
        "machine": machine,
        "size": args.size,
        "client_jitter_buffer": args.client_jitter_buffer,
        "rows": rows,
        "players": cost,
        "cpu_ratio": ratio,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"WHIP → WHEP over loopback at {args.size}, 30 fps, {s:.0f} s per row after {wu:.0f} s; "
        f"client jitter buffers: {args.client_jitter_buffer}"
    )
    print(f"machine: {machine}")
    print(f"\n  {'':<26} {'video median / p95 ms':>22} {'audio ms':>9} {'A/V ms':>7} {'frames':>9}")
    base = rows[PASS]["latency"]["median_ms"]
    for name, r in rows.items():
        lat = r["latency"]
        extra = ""
        if name == "WHIP→WHEP livefx blur":
            extra = f"   {lat['median_ms'] - base:+.1f} ms over pass-through"
        audio = "-" if r["audio_latency_ms"] is None else f"{r['audio_latency_ms']:.1f}"
        offset = "-" if "av_offset_ms" not in r else f"{r['av_offset_ms']:+.1f}"
        print(
            f"  {name:<26} {lat['median_ms']:>10.2f} / {lat['p95_ms']:<9.2f} {audio:>9} "
            f"{offset:>7} {r['received']:>4}/{r['sent']:<4}{extra}"
        )
    print("\none blur stream, server CPU per second of stream (1 core = 1.0):")
    for c in cost:
        print(
            f"  {c['players']} player(s): {c['server_cpu_s_per_s']:.3f}   slowest player "
            f"{c['fps_out_min']} fps, worst median round trip {c['latency_median_ms_worst']} ms"
        )
    print(f"  {args.players} players ÷ 1 player: {ratio:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
