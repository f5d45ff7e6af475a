"""A WebRTC echo that is not LiveFX, for ``livefx bench``'s tests: plain aiortc behind aiohttp.

    python tests/echo_server.py [--hold-ms MS] [--drop-every K] [--jitter-buffer marker]

Routes (``POST``, ``application/sdp`` offer → ``201`` answer):
  /offer   sends each received frame back ``--hold-ms`` later, drops one frame in every
           ``--drop-every``, and stamps its own timestamps (a counter from a random origin), as an
           SFU or a media server's echo test would;
  /half    the same at half the size;
  /silent  answers, connects, sends nothing;
  /notsdp  answers 200 with an HTML page.
Prints ``echo serving on http://127.0.0.1:PORT`` once it listens; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from engine.server import rtc


class HeldEcho(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: MediaStreamTrack, hold_s: float, drop_every: int, half: bool):
        super().__init__()
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=600)
        self.hold_s, self.drop_every, self.half = hold_s, drop_every, half
        self.origin = random.randrange(1 << 30)
        self.count = 0
        self.task = asyncio.ensure_future(self._pull(source))

    async def _pull(self, source: MediaStreamTrack) -> None:
        n = 0
        try:
            while True:
                frame = await source.recv()
                n += 1
                if self.drop_every and n % self.drop_every == 0:
                    continue
                await self.queue.put((time.monotonic() + self.hold_s, frame))
        except MediaStreamError:
            self.stop()

    async def recv(self):
        due, frame = await self.queue.get()
        wait = due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self.half:
            frame = frame.reformat(width=frame.width // 2, height=frame.height // 2)
        frame.pts = self.origin + self.count * 3000
        frame.time_base = fractions.Fraction(1, 90000)
        self.count += 1
        return frame


class Silent(MediaStreamTrack):
    kind = "video"

    async def recv(self):
        await asyncio.sleep(3600)
        raise MediaStreamError


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--hold-ms", type=float, default=0.0)
    p.add_argument("--drop-every", type=int, default=0)
    p.add_argument("--jitter-buffer", choices=("standard", "marker"), default="standard")
    args = p.parse_args()
    rtc.use_loopback_ice(True)
    rtc.install_jitter_buffer(low_latency=args.jitter_buffer == "marker")
    pcs: set[RTCPeerConnection] = set()

    async def answer(request: web.Request) -> web.Response:
        kind = request.path.strip("/")
        if kind == "notsdp":
            return web.Response(text="<html><body>hello</body></html>", content_type="text/html")
        pc = RTCPeerConnection()
        pcs.add(pc)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if kind == "silent":
                pc.addTrack(Silent())
            else:
                pc.addTrack(HeldEcho(track, args.hold_ms / 1000, args.drop_every, kind == "half"))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                pcs.discard(pc)

        await pc.setRemoteDescription(RTCSessionDescription(await request.text(), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.Response(
            status=201, text=pc.localDescription.sdp, content_type="application/sdp"
        )

    app = web.Application()
    for route in ("/offer", "/half", "/silent", "/notsdp"):
        app.router.add_post(route, answer)

    async def serve() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"echo serving on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
