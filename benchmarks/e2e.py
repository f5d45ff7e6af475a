"""End-to-end WebRTC round trip against `livefx serve` and a bare echo, on `livefx bench`.

Servers run as child processes (``livefx serve``; ``livefx serve --mode bare-echo``: aiortc's
plain relay with its own encoders and jitter buffer). This process is the client:
``engine.bench`` (what ``livefx bench`` runs), a plain aiortc peer that writes each frame's number
into the picture (on the person, so effects keep it) and times each frame from the moment it is
handed to its sender to the moment it comes out of its receiver. The rows of a resolution are
measured interleaved (rounds of about 5 s), with the same frames.

Sections: per resolution, the bare echo, LiveFX pass-through (``effect=none``) and each effect
(median and p95 ms, frames matched); concurrent sessions (fps and drops); a long session
(median of its first and last 20 s); and the encoders alone (aiortc's settings vs LiveFX's).

The client's receiver releases frames on the RTP marker bit (as LiveFX's server does) for every
row, so the rows differ only by what the servers do (``--client-jitter-buffer standard``: what a
plain aiortc client sees).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc.codecs import h264, vpx
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from engine.bench.run import BenchConfig, Target, bench
from engine.config import EncoderConfig
from engine.frame import FrameBuffer
from engine.media import frame_to_av
from engine.pipeline.timing import summarise_ns
from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def measure(
    targets: list[Target], size: tuple[int, int], args: argparse.Namespace, **kw: Any
) -> dict[str, Any]:
    config = BenchConfig(
        targets=targets,
        width=size[0],
        height=size[1],
        seconds=kw.get("seconds", args.seconds),
        warmup=args.warmup,
        sessions=kw.get("sessions", [1]),
        jitter_buffer=args.client_jitter_buffer,
    )
    return asyncio.run(bench(config, progress_bar=False))


def window_median(series: list[list[float]], start: float, end: float) -> dict[str, float]:
    values = [rtt for t, rtt in series if start <= t < end]
    return summarise_ns([round(v * 1e6) for v in values])


def bench_encoders(frames: dict[str, list[FrameBuffer]], n: int) -> dict[str, Any]:
    """Encode time per frame and PSNR of the decoded luma: aiortc's encoders as they come vs
    with LiveFX's settings, at aiortc's starting bitrate."""
    rtc.install_encoders(EncoderConfig())
    out: dict[str, Any] = {}
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000)
    avc = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000)
    makers: dict[str, tuple[Any, Any, Any]] = {
        "vp8 aiortc": (vpx.Vp8Encoder, vpx.Vp8Decoder, vpx.vp8_depayload),
        "vp8 livefx": (lambda: rtc.livefx_encoder(vp8), vpx.Vp8Decoder, vpx.vp8_depayload),
        "h264 aiortc": (h264.H264Encoder, h264.H264Decoder, h264.h264_depayload),
        "h264 livefx": (lambda: rtc.livefx_encoder(avc), h264.H264Decoder, h264.h264_depayload),
    }
    for res, fs in frames.items():
        for name, (make, make_decoder, depayload) in makers.items():
            enc, dec = make(), make_decoder()
            times, psnr = [], []
            for i in range(n + 10):
                fb = fs[i % len(fs)]
                frame = frame_to_av(fb)
                frame.pts, frame.time_base = i * 3000, fractions.Fraction(1, 90000)
                t = time.perf_counter_ns()
                payloads, _ = enc.encode(frame, False)
                elapsed = time.perf_counter_ns() - t
                data = b"".join(depayload(p) for p in payloads)
                decoded = dec.decode(JitterFrame(data, i * 3000)) if data else []
                if i >= 10:
                    times.append(elapsed)
                    if decoded:
                        y = decoded[0].to_ndarray(format="yuv420p")[: fb.height].astype(float)
                        mse = float(np.mean((y - fb.y.astype(float)) ** 2))
                        psnr.append(10 * np.log10(255**2 / max(mse, 1e-9)))
            out.setdefault(res, {})[name] = {
                **summarise_ns(times),
                "psnr_db": round(float(np.mean(psnr)), 2) if psnr else None,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resolutions", default="640x480,1280x720")
    # (not mask: it sends the matte instead of the picture, so no frame's number comes back)
    ap.add_argument("--effects", default="none,blur,replace,colour")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured per row")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--long", type=float, default=120.0, help="the long session, s (0: skip)")
    ap.add_argument("--encoder-frames", type=int, default=100)
    ap.add_argument("--client-jitter-buffer", choices=("marker", "standard"), default="marker")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    sizes = [tuple(int(v) for v in r.split("x")) for r in args.resolutions.split(",")]
    effects = [e for e in args.effects.split(",") if e]
    results: dict[str, Any] = {"sessions": {}}
    livefx = ServerProcess("--max-sessions", "8", "--admit-load", "0", cwd=str(ROOT))
    echo = ServerProcess("--mode", "bare-echo", "--max-sessions", "8", cwd=str(ROOT))
    try:
        for w, h in sizes:
            targets = [Target("bare aiortc echo", url=echo.url + "/offer")] + [
                Target(f"livefx {e}", url=f"{livefx.url}/offer?effect={e}") for e in effects
            ]
            result = measure(targets, (w, h), args)
            results["sessions"][f"{w}x{h}"] = {r["target"]: r for r in result["runs"]}
        if args.concurrent:
            result = measure(
                [Target("livefx blur", url=livefx.url + "/offer?effect=blur")], (640, 480), args,
                sessions=[args.concurrent],
            )  # fmt: skip
            results["concurrent"] = [s for s in result["sessions"]]
        if args.long:
            result = measure(
                [Target("livefx blur", url=livefx.url + "/offer?effect=blur")], (640, 480), args,
                seconds=args.long,
            )  # fmt: skip
            series = result["runs"][0]["series"]
            results["long"] = {
                "seconds": args.long,
                "first_20s": window_median(series, 0, 20),
                "last_20s": window_median(series, args.long - 20, args.long + 1),
            }
    finally:
        livefx.stop()
        echo.stop()
    frames = {
        f"{w}x{h}": composited_clip(w, h, 30, motion="sway", noise=2.0).frames for w, h in sizes
    }
    results["encoders"] = bench_encoders(frames, args.encoder_frames)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    if args.json:
        for rows in results["sessions"].values():
            for r in rows.values():
                r.pop("series", None)
        print(json.dumps({"machine": machine, **results}))
        return 0
    print(
        "WebRTC round trip over loopback, measured by the client (livefx bench); "
        f"{args.seconds:.0f} s per row after {args.warmup:.0f} s, "
        f"client jitter buffer {args.client_jitter_buffer}"
    )
    print(f"machine: {machine}")
    for res, rows in results["sessions"].items():
        print(f"\n{res} at 30 fps   round trip median / p95 ms   frames matched/sent")
        base = rows.get("livefx none", {}).get("rtt_ms", {}).get("median")
        for name, r in rows.items():
            rtt = r["rtt_ms"]
            if rtt["median"] is None:
                print(f"  {name:<18}       - /       -   {r['matched']}/{r['sent']}")
                continue
            extra = ""
            if base is not None and name.startswith("livefx") and name != "livefx none":
                extra = f"   +{rtt['median'] - base:.1f} ms over pass-through"
            print(
                f"  {name:<18} {rtt['median']:7.2f} / {rtt['p95']:7.2f}   "
                f"{r['matched']}/{r['sent']}{extra}"
            )
    if "concurrent" in results:
        print(f"\n{args.concurrent} concurrent 640x480 blur sessions, {args.seconds:.0f} s")
        for i, r in enumerate(results["concurrent"]):
            dropped = 100.0 * (1 - r["matched_share"])
            print(
                f"  session {i + 1}: {r['fps_out']:5.1f} fps out, {dropped:.2f} % not back, "
                f"round trip {r['rtt_ms']['median']:.1f} / {r['rtt_ms']['p95']:.1f} ms"
            )
    if "long" in results:
        r = results["long"]
        print(
            f"\nlong blur session, {r['seconds']:.0f} s: round trip median first 20 s "
            f"{r['first_20s']['median_ms']:.2f} ms, last 20 s {r['last_20s']['median_ms']:.2f} ms "
            f"(p95 {r['first_20s']['p95_ms']:.2f} → {r['last_20s']['p95_ms']:.2f})"
        )
    print("\nencode time per frame, median / p95 ms, and PSNR (aiortc's settings vs LiveFX's)")
    for res, rows in results["encoders"].items():
        for name, s in rows.items():
            print(
                f"  {res:<9} {name:<12} {s['median_ms']:7.2f} / {s['p95_ms']:7.2f}"
                f"   {s['psnr_db']} dB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
