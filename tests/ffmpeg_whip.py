"""Publish the composited sample clip (and a tone) with FFmpeg's own WHIP muxer, through PyAV.

A third-party WHIP client for the tests: FFmpeg 8's ``whip`` muxer (ICE, DTLS as the server
with its own certificate unless ``--cert/--key``, SRTP), H.264 constrained baseline + Opus, as
``ffmpeg -f whip`` would send them. Run as a child process (FFmpeg's handshake blocks):

    python tests/ffmpeg_whip.py URL [--seconds S] [--token T] [--cert C --key K]

Prints ``published N video frames`` and exits 0, or prints FFmpeg's error and exits 1.
"""

from __future__ import annotations

import argparse
import fractions
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import av
import numpy as np

from engine.media import frame_to_av
from engine.samples import composited_clip


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--token", default=None)
    p.add_argument("--cert", default=None)
    p.add_argument("--key", default=None)
    p.add_argument("--size", default="640x480")
    args = p.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    clip = composited_clip(width, height, 30, motion="sway", noise=2.0)
    options = {"handshake_timeout": "10000"}
    if args.token:
        options["authorization"] = args.token
    if args.cert:
        options["cert_file"], options["key_file"] = args.cert, args.key
    try:
        out = av.open(args.url, "w", format="whip", options=options)
        video = out.add_stream("libx264", rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "bf": "0",
            "g": "30",
        }
        audio = out.add_stream("libopus", rate=48_000)
        audio.layout = "stereo"
        audio.bit_rate = 64_000
        t = np.arange(960) / 48_000
        tone = np.repeat((8000 * np.sin(2 * math.pi * 1000 * t)).astype(np.int16), 2)
        silence = np.zeros(1920, np.int16)
        start = time.perf_counter()
        n = samples = 0
        while time.perf_counter() - start < args.seconds:
            frame = frame_to_av(clip.frames[n % len(clip.frames)])
            frame.pts, frame.time_base = n, fractions.Fraction(1, 30)
            for packet in video.encode(frame):
                out.mux(packet)
            while samples < (n + 1) * 1600:  # 48 kHz audio up to this video frame's end
                i = samples // 960
                a = av.AudioFrame.from_ndarray(
                    (tone if i % 50 < 3 else silence).reshape(1, -1), format="s16", layout="stereo"
                )
                a.sample_rate, a.pts = 48_000, samples
                samples += 960
                for packet in audio.encode(a):
                    out.mux(packet)
            n += 1
            time.sleep(max(0.0, start + n / 30 - time.perf_counter()))
        out.close()  # FFmpeg sends its DELETE here
    except av.FFmpegError as exc:
        print(f"ffmpeg: {exc}", flush=True)
        return 1
    print(f"published {n} video frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
