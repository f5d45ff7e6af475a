"""End-to-end WebRTC round trip, measured by the client, against `livefx serve` and a bare echo.

Servers run as child processes (``livefx serve``; ``livefx serve --mode bare-echo``: aiortc's
plain relay with its own encoders and jitter buffer). This process is the client (aiortc over
loopback, ``engine.server.client``): it sends composited frames with a person at 30 fps and times
each frame from the moment it is handed to its sender to the moment the processed frame comes out
of its receiver. Every session of a resolution uses the same frames in the same run.

Sections: per resolution, the bare echo, LiveFX pass-through (``effect=none``) and each effect
(median and p95 ms, frames received); three concurrent sessions (fps and drops); a long session
(median of its first and last 20 s); and the encoders alone (aiortc's settings vs LiveFX's).

The client's own receiver releases frames on the RTP marker bit (as LiveFX's server does) for
every row, so the rows differ only by what the servers do.
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

from engine.config import EncoderConfig
from engine.frame import FrameBuffer
from engine.media import frame_to_av
from engine.pipeline.timing import summarise_ns
from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client, ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def summary_ms(values: list[float]) -> dict[str, float]:
    return summarise_ns([round(v * 1e6) for v in values])


async def one_session(
    url: str, frames: list[FrameBuffer], settings: dict[str, Any], seconds: float, warmup: float
) -> dict[str, Any]:
    c = Client(url, frames, fps=30.0)
    await c.start(settings)
    await asyncio.sleep(warmup)
    skip = len(c.received.latencies_ms)
    sent0, recv0 = c.camera.count, len(c.received.arrivals)
    await asyncio.sleep(seconds)
    lat = c.received.latencies_ms[skip:]
    sent, recv = c.camera.count - sent0, len(c.received.arrivals) - recv0
    await c.stop()
    return {
        "latency": summary_ms(lat),
        "sent": sent,
        "received": recv,
        "fps_out": round(recv / seconds, 1),
        "dropped_pct": round(100.0 * max(sent - recv, 0) / max(sent, 1), 2),
        "unmatched": c.received.unmatched,
    }


async def concurrent(
    url: str, frames: list[FrameBuffer], n: int, seconds: float
) -> list[dict[str, Any]]:
    return list(
        await asyncio.gather(
            *(one_session(url, frames, {"effect": "blur"}, seconds, 3.0) for _ in range(n))
        )
    )


async def long_session(url: str, frames: list[FrameBuffer], seconds: float) -> dict[str, Any]:
    c = Client(url, frames, fps=30.0)
    await c.start({"effect": "blur"})
    await asyncio.sleep(3.0)
    t0 = time.perf_counter()
    first_n = len(c.received.latencies_ms)
    await asyncio.sleep(20.0)
    first = c.received.latencies_ms[first_n:]
    await asyncio.sleep(max(seconds - 40.0, 0.0))
    last_n = len(c.received.latencies_ms)
    await asyncio.sleep(20.0)
    last = c.received.latencies_ms[last_n:]
    elapsed = time.perf_counter() - t0
    await c.stop()
    return {
        "seconds": round(elapsed, 1),
        "first_20s": summary_ms(first),
        "last_20s": summary_ms(last),
    }


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
    ap.add_argument("--effects", default="none,blur,replace,colour,mask")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured per session")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--concurrent", type=int, default=3)
    ap.add_argument("--long", type=float, default=120.0, help="the long session, s (0: skip)")
    ap.add_argument("--encoder-frames", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    rtc.use_loopback_ice(True)
    rtc.install_jitter_buffer(low_latency=True)
    rtc.install_encoders(EncoderConfig())  # the client's own sender
    sizes = [tuple(int(v) for v in r.split("x")) for r in args.resolutions.split(",")]
    frames = {
        f"{w}x{h}": composited_clip(w, h, 30, motion="sway", noise=2.0).frames for w, h in sizes
    }
    effects = [e for e in args.effects.split(",") if e]
    results: dict[str, Any] = {"sessions": {}}
    livefx = ServerProcess("--max-sessions", "8", cwd=str(ROOT))
    echo = ServerProcess("--mode", "bare-echo", "--max-sessions", "8", cwd=str(ROOT))
    try:
        for res, fs in frames.items():
            rows = {
                "bare aiortc echo": asyncio.run(
                    one_session(echo.url, fs, {}, args.seconds, args.warmup)
                )
            }
            for e in effects:
                rows[f"livefx {e}"] = asyncio.run(
                    one_session(livefx.url, fs, {"effect": e}, args.seconds, args.warmup)
                )
            results["sessions"][res] = rows
        if args.concurrent:
            fs = frames.get("640x480") or composited_clip(640, 480, 30, motion="sway").frames
            results["concurrent"] = asyncio.run(
                concurrent(livefx.url, fs, args.concurrent, args.seconds)
            )
        if args.long:
            fs = frames.get("640x480") or composited_clip(640, 480, 30, motion="sway").frames
            results["long"] = asyncio.run(long_session(livefx.url, fs, args.long))
    finally:
        livefx.stop()
        echo.stop()
    results["encoders"] = bench_encoders(frames, args.encoder_frames)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, **results}))
        return 0
    print(
        "WebRTC round trip over loopback, measured by the client; "
        f"{args.seconds:.0f} s per session after {args.warmup:.0f} s"
    )
    print(f"machine: {machine}")
    for res, rows in results["sessions"].items():
        print(f"\n{res} at 30 fps   round trip median / p95 ms   frames received/sent")
        base = rows.get("livefx none", {}).get("latency", {}).get("median_ms")
        for name, r in rows.items():
            lat = r["latency"]
            extra = ""
            if base is not None and name.startswith("livefx") and name != "livefx none":
                extra = f"   +{lat['median_ms'] - base:.1f} ms over pass-through"
            print(
                f"  {name:<18} {lat['median_ms']:7.2f} / {lat['p95_ms']:7.2f}   "
                f"{r['received']}/{r['sent']}{extra}"
            )
    if "concurrent" in results:
        print(f"\n{args.concurrent} concurrent 640x480 blur sessions, {args.seconds:.0f} s")
        for i, r in enumerate(results["concurrent"]):
            print(
                f"  session {i + 1}: {r['fps_out']:5.1f} fps out, "
                f"{r['dropped_pct']:.2f} % dropped, "
                f"round trip {r['latency']['median_ms']:.1f} / {r['latency']['p95_ms']:.1f} ms"
            )
    if "long" in results:
        r = results["long"]
        print(
            f"\nlong blur session, {r['seconds']} s: round trip median first 20 s "
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
