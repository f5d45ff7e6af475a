"""Hostile input, fuzzed: the real server (a child process) against seeded mutations of what its
clients send, family by family, over loopback.

Families, each ``n`` inputs (``LIVEFX_FUZZ_SCALE`` multiplies them; ``LIVEFX_FUZZ_SEED`` picks
the seed, printed on failure):

- ``http``: raw HTTP/1.1 requests: methods, paths, heads, bodies, encodings, framing;
- ``sdp``: offers mutated from real ones (aiortc's, Chromium's, FFmpeg's WHIP muxer's, an
  OBS-style one) to ``/offer``, ``/whip``, ``/whep`` and as trickle fragments; an answered one
  is deleted at once, so the next is parsed all the way too;
- ``signalling``: ``/ws`` messages, mutated valid ones and random ones, text and binary;
- ``uploads``: background uploads to a live session: truncated and mutated images, other types,
  headers that declare too many pixels, decompression bombs;
- ``datagrams``: garbage RTP/RTCP/STUN/DTLS to a live session's media port, from the peer's own
  address (its ICE socket) and from other sockets.

Every input must get an answer that is not a 500 (or, for broken framing, a 400 or a closed
connection), and the server must log no traceback. After each family: ``/health`` answers, no
session is left but the live one, descriptors are back at the baseline and memory within
``RSS_SLACK_MB`` of it; after ``datagrams`` the live session still streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from aiortc import RTCPeerConnection

from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client
from tests.conftest import ServerProcess
from tests.fuzz import mutate

SEED = int(os.environ.get("LIVEFX_FUZZ_SEED", "20261202"))
SCALE = float(os.environ.get("LIVEFX_FUZZ_SCALE", "1"))
COUNTS = {"http": 3000, "sdp": 2500, "signalling": 2500, "uploads": 600, "datagrams": 3000}
CORPUS = Path(__file__).parent / "corpus"
RSS_SLACK_MB = 60.0  # allocator arenas keep some of what a family used
TIMEOUT_S = 5.0
CONCURRENCY = 16
done: Counter[str] = Counter()  # inputs sent, by family


def count(family: str) -> int:
    return max(1, round(COUNTS[family] * SCALE))


# -- one event loop for the whole module: the live session lives in it -------------------------


class Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 300) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Fuzz:
    """The server, the live session, the seed offers, the baseline figures."""

    def __init__(self) -> None:
        rtc.use_loopback_ice(True)
        self.server = ServerProcess(
            "--offer-rate", "10000", "--max-pending-per-client", "8", "--connect-timeout", "1",
            "--max-sessions", "16", "--idle-timeout", "30",
        )  # fmt: skip
        self.host, port = self.server.url.rsplit("//", 1)[1].rsplit(":", 1)
        self.port = int(port)
        self.loop = Loop()
        self.seeds = {p.stem: p.read_text() for p in sorted(CORPUS.glob("*.sdp"))}
        self.seeds["aiortc"] = self.loop.run(aiortc_offer())
        self.clip = composited_clip(320, 240, 8, motion="sway", noise=2.0)
        self.live: Client | None = None
        self.live_id = ""
        self.loop.run(self.start_live())
        self.baseline: dict[str, float] = {}

    async def start_live(self) -> None:
        c = Client(self.server.url, self.clip.frames, fps=15)
        await c.start({"effect": "none"})
        assert await c.connected(), "the live session did not connect"
        self.live = c
        assert c.location is not None
        self.live_id = c.location.rstrip("/").rsplit("/", 1)[-1]

    def close(self) -> None:
        if self.live is not None:
            with contextlib.suppress(Exception):
                self.loop.run(self.live.stop(), timeout=20)
        self.loop.close()
        self.server.stop()
        rtc.use_loopback_ice(False)

    def tracebacks(self) -> list[str]:
        log = "".join(self.server.log)
        return [block[:2000] for block in log.split("Traceback")[1:]]

    def settle(self, family: str) -> dict[str, float]:
        """After a family: health, no leaked session, descriptors and memory at the baseline."""
        deadline = time.monotonic() + 15
        while True:
            status, body = self.loop.run(get(self, "/stats"))
            sessions = [s["session"] for s in json.loads(body)["sessions"]] if status == 200 else []
            figures = self.server.figures()
            clean = status == 200 and sessions == [self.live_id]
            if clean and (not self.baseline or figures["fds"] <= self.baseline["fds"]):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        status, body = self.loop.run(get(self, "/health"))
        assert status == 200, f"{family}: /health answered {status}"
        ended = json.loads(self.loop.run(get(self, "/stats"))[1]).get("ended", [])
        live_end = [e["reason"] for e in ended if e["session"] == self.live_id]
        assert self.live_id in sessions, f"{family}: the live session ended: {live_end}"
        assert sessions == [self.live_id], f"{family}: sessions left behind: {sessions}"
        if self.baseline:
            assert figures["fds"] <= self.baseline["fds"], (
                f"{family}: {figures['fds']:.0f} descriptors open, {self.baseline['fds']:.0f} "
                "before"
            )
            grown = figures["rss_mb"] - self.baseline["rss_mb"]
            assert grown < RSS_SLACK_MB, f"{family}: RSS grew {grown:.1f} MB"
        assert not self.tracebacks(), f"{family}: the server logged:\n{self.tracebacks()[0]}"
        return figures


async def aiortc_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    pc.addTransceiver("audio", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


@pytest.fixture(scope="module")
def fuzz():
    f = Fuzz()
    try:
        # A first short round of every family: what the server makes once and keeps (its thread
        # pool, the model runtime's files) is part of the baseline, not a leak.
        for family, run in FAMILIES.items():
            f.loop.run(run(f, random.Random(SEED - 1), 10))
            assert not failures, failures[:3]
            f.settle(family)
        f.baseline = f.server.figures()
        yield f
        total = sum(done.values())
        print(f"\nfuzz answers: {dict(sorted(statuses.items()))}")
        print(f"\nfuzz: seed {SEED}, {total} inputs: {dict(done)}; figures {f.server.figures()}")
    finally:
        f.close()


# -- HTTP ---------------------------------------------------------------------------------------


async def exchange(f: Fuzz, data: bytes, half_close: bool = False) -> int | str:
    """Send raw bytes; the response's status, or "closed" / "timeout". A request whose body
    never ends is waited for 1 s (the server may wait for the rest)."""
    wait = 1.0 if half_close else TIMEOUT_S
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(f.host, f.port), TIMEOUT_S)
    except OSError as exc:
        return f"connect failed: {exc}"
    try:
        writer.write(data)
        if half_close:
            writer.write_eof()
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), wait)
        line = head.split(b"\r\n", 1)[0].split(b" ")
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else "garbled"
    except (asyncio.IncompleteReadError, ConnectionError):
        return "closed"
    except asyncio.TimeoutError:
        return "timeout"
    except asyncio.LimitOverrunError:
        return "garbled"
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def get(f: Fuzz, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(f"{f.server.url}{path}") as r:
        return r.status, await r.read()


PATHS = [
    "/", "/offer", "/whip/fuzz", "/whep/fuzz", "/whip/", "/whep/a/b", "/sessions/x",
    "/sessions/{live}", "/sessions/{live}/background", "/stats", "/metrics", "/health", "/ws",
    "/favicon.ico", "/app.js", "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/whip/%00",
    "/whip/" + "a" * 300, "/" + "x" * 9000, "/offer?effect=blur&strength=1e308",
    "/offer?effect=gan&model=../../x.onnx", "/whip/s?effect=replace&background=/etc/shadow",
    "/offer?" + "a=1&" * 2000, "//offer", "/offer/", "/OFFER", "/stats?x=%ff%fe", "*",
    "http://127.0.0.1/offer", "/whip/\u00e9", "/sessions/" + "A" * 100,
]  # fmt: skip
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT",
           "get", "PROPFIND", "G\x00T", "", "X" * 300]  # fmt: skip
TYPES = ["application/sdp", "application/trickle-ice-sdpfrag", "application/json", "text/plain",
         "image/png", "multipart/form-data; boundary=x", "application/sdp; charset=utf-16",
         "application/x-www-form-urlencoded", "", "*/*", "application/sdp\x00"]  # fmt: skip


DEFLATE_BOMB = zlib.compress(b"\x00" * 50_000_000, 9)  # made once (0.3 s): not on the loop


def http_request(rng: random.Random, f: Fuzz) -> tuple[bytes, bool]:
    """One request (bytes) and whether to half-close after it (a truncated body)."""
    method = rng.choice(METHODS)
    # Anyone on a loopback server without a token may end a session: not the live one here.
    live = f.live_id if method != "DELETE" else "not-the-live-one"
    path = rng.choice(PATHS).replace("{live}", live)
    version = rng.choices(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9.9", ""], [90, 5, 2, 2, 1])[0]
    body = b""
    if rng.random() < 0.6:
        body = rng.choice([
            lambda: mutate.sdp_bytes(rng, rng.choice(list(f.seeds.values()))),
            lambda: rng.randbytes(rng.randrange(2000)),
            lambda: json.dumps(mutate.random_json(rng)).encode(),
            lambda: b"a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n" * rng.randrange(1, 50),
            lambda: b"x" * rng.choice([65 * 1024, 300 * 1024]),
        ])()  # fmt: skip
    headers = [
        (
            "Host",
            rng.choices(
                [f"{f.host}:{f.port}", "example.com", "127.0.0.1", "", "[::1]", "a" * 5000],
                [85, 4, 4, 2, 3, 2],
            )[0],
        )
    ]
    if body or rng.random() < 0.2:
        headers.append(("Content-Type", rng.choice(TYPES)))
    framing = rng.randrange(12)
    truncated = False
    if framing == 0:
        headers.append(("Transfer-Encoding", "chunked"))
        body = rng.choice([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"ffffffffffff\r\nx",
                           b"3\r\nabcdef\r\n", b"0\r\n"])  # fmt: skip
    elif framing == 1:
        headers.append(("Content-Length", rng.choice(["-1", "abc", "1e3", "99999999999999999999",
                                                      " 5", "5, 6"])))  # fmt: skip
    elif framing == 2 and body:
        headers.append(("Content-Length", str(len(body) + rng.randrange(1, 100))))
        truncated = True
    elif framing == 3:
        headers += [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + 1))]
    elif framing == 4 and body:
        headers += [("Content-Encoding", rng.choice(["gzip", "deflate", "br", "x-bogus"])),
                    ("Content-Length", str(len(body)))]  # fmt: skip
    elif framing == 5:  # a deflate bomb: 50 MB of zeros in ~50 KB
        body = DEFLATE_BOMB
        headers += [("Content-Encoding", "deflate"), ("Content-Length", str(len(body)))]
    else:
        headers.append(("Content-Length", str(len(body))))
    extra = rng.randrange(10)
    if extra == 0:
        headers += [(f"X-{i}", "v" * rng.randrange(100)) for i in range(rng.choice([50, 200]))]
    elif extra == 1:
        headers.append(("Authorization", rng.choice(["Bearer", "Bearer " + "a" * 9000, "Basic x",
                                                     "Bearer \x00", "bearer t"])))  # fmt: skip
    elif extra == 2:
        headers.append(("Origin", rng.choice(["null", "http://evil.example", "file://", "\xff"])))
    elif extra == 3:
        headers.append(("If-Match", rng.choice(['"x"', "*", "", '"' * 100])))
    elif extra == 4:
        headers += [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", rng.choice(["", "x", "dGhlIHNhbXBsZSBub25jZQ=="])),
                    ("Sec-WebSocket-Version", rng.choice(["13", "8", ""]))]  # fmt: skip
    elif extra == 5:
        headers.append((rng.choice(["Bad Header", "X\x00", ":", "X-é"]), "v"))
    head = f"{method} {path} {version}".rstrip() + "\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
    data = head.encode("utf-8", "surrogateescape") + body
    if rng.random() < 0.03:  # bytes broken anywhere: the framing may be gone too
        data = mutate.mutate_bytes(rng, data)
        truncated = True
    return data, truncated


failures: list[str] = []  # what the family being run got wrong


statuses: Counter[str] = Counter()


def judge(family: str, status: int | str, allowed_text: tuple[str, ...], detail: str) -> None:
    done[family] += 1
    statuses[f"{family} {status}"] += 1
    ok = (status < 500 or status == 503) if isinstance(status, int) else status in allowed_text
    if not ok:
        failures.append(f"{family}: {status} for {detail[:400]!r}")


async def gather_limited(jobs: list[Coroutine[Any, Any, None]], limit: int = CONCURRENCY) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(job: Coroutine[Any, Any, None]) -> None:
        async with sem:
            await job

    await asyncio.gather(*(one(j) for j in jobs))


async def run_http(f: Fuzz, rng: random.Random, n: int) -> None:
    async def one(data: bytes, truncated: bool) -> None:
        status = await exchange(f, data, half_close=truncated)
        # A body that never ends (or breaks the framing) may be answered 400 or dropped.
        judge("http", status, ("closed", "timeout", "garbled") if truncated else ("closed",),
              data[:200].decode("latin-1"))  # fmt: skip

    await gather_limited([one(*http_request(rng, f)) for _ in range(n)])


# -- SDP ----------------------------------------------------------------------------------------


async def run_sdp(f: Fuzz, rng: random.Random, n: int) -> None:
    seeds = list(f.seeds.values())
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S * 3)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one(k: int) -> None:
            offer = mutate.mutate_sdp(rng, rng.choice(seeds), seeds)
            target = rng.choice(["/offer", "/whip/fuzz", "/whep/fuzz", "/offer?effect=blur",
                                 "trickle"])  # fmt: skip
            data = mutate.sdp_bytes(rng, offer)
            if target == "trickle":
                path, method = f"/sessions/{f.live_id}", "PATCH"
                kind = "application/trickle-ice-sdpfrag"
                headers = {"If-Match": rng.choice(["*", '"x"'])}
            else:
                path, method, kind, headers = target, "POST", "application/sdp", {}
            try:
                async with http.request(
                    method,
                    f.server.url + path,
                    data=data,
                    headers={"Content-Type": kind, **headers},
                ) as r:
                    status: int | str = r.status
                    location = r.headers.get("Location")
                    await r.read()
                if status == 201 and location:
                    async with http.delete(f.server.url + location) as r:
                        await r.read()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            judge("sdp", status, (), offer)

        await gather_limited([one(k) for k in range(n)])


# -- signalling -----------------------------------------------------------------------------------


async def run_signalling(f: Fuzz, rng: random.Random, n: int) -> None:
    seeds = list(f.seeds.values())
    offer = f.seeds["aiortc"]
    sent = 0
    async with aiohttp.ClientSession() as http:
        while sent < n:
            async with http.ws_connect(f"{f.server.url}/ws", protocols=("livefx",)) as ws:
                hello = await ws.receive_json(timeout=TIMEOUT_S)
                names = list(hello.get("setting_names") or ["effect"])
                for _ in range(rng.randrange(20, 200)):
                    if sent >= n:
                        break
                    sent += 1
                    kind = rng.randrange(20)
                    if kind == 0:
                        await ws.send_bytes(rng.randbytes(rng.randrange(100)))
                    elif kind == 1:
                        await ws.send_str("x" * (70 * 1024))  # over the message limit
                    else:
                        await ws.send_str(mutate.ws_message(rng, names, offer, seeds))
                    try:
                        msg = await ws.receive(timeout=TIMEOUT_S)
                    except asyncio.TimeoutError:
                        judge("signalling", "timeout", (), "no reply")
                        continue
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.CLOSING):  # fmt: skip
                        judge("signalling", "closed", ("closed",), "")
                        break
                    reply = json.loads(msg.data)
                    assert reply.get("type") in ("error", "pong", "answer", "settings", "stats",
                                                 "closed"), reply  # fmt: skip
                    if reply["type"] == "error":
                        assert reply["message"] and "\n" not in reply["message"], reply
                    judge("signalling", 200, (), "")


# -- uploads ------------------------------------------------------------------------------------


def upload_body(rng: random.Random, images: list[bytes], bombs: list[bytes]) -> bytes:
    kind = rng.randrange(12)
    if kind <= 2:
        return rng.choice(images)[: rng.randrange(1, 4000)]  # truncated
    if kind <= 5:
        return mutate.mutate_bytes(rng, rng.choice(images))
    if kind == 6:
        return mutate.png(rng.choice([20_000, 7000, 65_535, 1, 0]), rng.choice([20_000, 7000, 1]))
    if kind == 7:
        return mutate.jpeg_header(rng.choice([65_535, 10_000, 0]), rng.choice([65_535, 9000, 1]))
    if kind == 8:
        return rng.choice(bombs)
    if kind == 9:
        return rng.choice(
            [
                b"",
                b"GIF89a" + rng.randbytes(50),
                b"v=0\r\n",
                b"{}",
                b"BM" + b"\xff" * 60,
                b"II*\x00" + rng.randbytes(100),
                b"RIFF\xff\xff\xff\xffWEBPVP8 ",
            ]
        )
    if kind == 10:
        return rng.randbytes(rng.randrange(1, 5000))
    return rng.choice(images)


async def run_uploads(f: Fuzz, rng: random.Random, n: int) -> None:
    picture = cv2.cvtColor(f.clip.rgb[0] if f.clip.rgb else np.zeros((240, 320, 3), np.uint8),
                           cv2.COLOR_RGB2BGR)  # fmt: skip
    images = [cv2.imencode(ext, picture)[1].tobytes() for ext in (".png", ".jpg", ".webp", ".bmp")]
    bombs = [mutate.bomb_png(random.Random(SEED + i)) for i in range(2)]
    url = f"{f.server.url}/sessions/{f.live_id}/background"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def one() -> None:
            body = upload_body(rng, images, bombs)
            kind = rng.choice(["image/png", "image/jpeg", "application/octet-stream", "text/plain"])
            try:
                async with http.post(url, data=body, headers={"Content-Type": kind}) as r:
                    status: int | str = r.status
                    text = await r.text()
                assert status in (200, 400, 413), f"uploads: {status} {text[:200]}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            judge("uploads", status, (), repr(body[:60]))

        # Decoding is the server's CPU: a few at a time.
        await gather_limited([one() for _ in range(n)], limit=4)


# -- datagrams ----------------------------------------------------------------------------------


def media_paths(f: Fuzz) -> tuple[Any, tuple[str, int], list[int]]:
    """The live session's ICE socket (the peer's own address), the server's address on the
    nominated pair, and the peer's SSRCs."""
    assert f.live is not None
    pc = f.live.pc
    ice = pc.getTransceivers()[0].sender.transport.transport
    pair = ice._connection._nominated[1]  # aioice: component 1's nominated pair
    ssrcs = [t.sender._ssrc for t in pc.getTransceivers() if t.sender is not None]
    return pair.protocol.transport, pair.remote_addr, ssrcs


async def run_datagrams(f: Fuzz, rng: random.Random, n: int) -> None:
    assert f.live is not None
    own, server_addr, ssrcs = media_paths(f)
    others = []
    for source in ("127.0.0.1", "127.0.0.2"):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source, 0))
        s.setblocking(False)
        others.append(s)
    before = len(f.live.received.arrivals)
    try:
        for i in range(n):
            data = mutate.datagram(rng, ssrcs)
            if rng.random() < 0.5:
                own.sendto(data, server_addr)
            else:
                with contextlib.suppress(BlockingIOError):
                    rng.choice(others).sendto(data, server_addr)
            done["datagrams"] += 1
            if i % 50 == 0:
                await asyncio.sleep(0.005)  # let the live session's media through too
        await asyncio.sleep(1.5)
        after = len(f.live.received.arrivals)
        await asyncio.sleep(1.0)
        assert len(f.live.received.arrivals) - after >= 5, "the live session stopped streaming"
        assert after > before
    finally:
        for s in others:
            s.close()


FAMILIES = {
    "http": run_http,
    "sdp": run_sdp,
    "signalling": run_signalling,
    "uploads": run_uploads,
    "datagrams": run_datagrams,
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fuzz_family(fuzz: Fuzz, family: str) -> None:
    rng = random.Random(f"{SEED}-{family}")
    start = time.monotonic()
    failures.clear()
    fuzz.loop.run(FAMILIES[family](fuzz, rng, count(family)), timeout=240)
    assert not failures, (
        f"{len(failures)} failures (seed {SEED}), the first:\n"
        + "\n".join(failures[:3])
        + "\nthe server logged:\n"
        + "\n".join(fuzz.tracebacks()[:2])
    )
    figures = fuzz.settle(family)
    print(
        f"\nfuzz {family}: {count(family)} inputs in {time.monotonic() - start:.1f} s; "
        f"fds {figures['fds']:.0f} (baseline {fuzz.baseline['fds']:.0f}), RSS "
        f"{figures['rss_mb']:.0f} MB (baseline {fuzz.baseline['rss_mb']:.0f})"
    )


def test_fuzz_covered_ten_thousand_inputs(fuzz: Fuzz) -> None:
    if SCALE >= 1:
        assert sum(done.values()) >= 10_000, dict(done)
