"""The server against peers that hoard, vanish or flood, and what an operator reads of it:
connect timeouts, per-client limits, the offer rate, /metrics, uploads that declare too many
pixels, SIGTERM. Loopback only; other "clients" are other loopback addresses (127.0.0.2, …)."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import struct
import subprocess
import sys
import time
import zlib
from urllib.parse import urlsplit

import pytest
from aiortc import RTCPeerConnection, VideoStreamTrack

from engine.config import ServerConfig
from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client, http_request
from tests.conftest import ROOT, ServerProcess, wait_for


@pytest.fixture(autouse=True)
def loopback_ice():
    rtc.use_loopback_ice(True)
    yield
    rtc.use_loopback_ice(False)


def post_from(url: str, source: str, path: str, body: bytes, kind: str = "application/sdp"):
    """An HTTP request from another loopback address: another client to the server."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=20, source_address=(source, 0)
    )
    conn.request("POST", path, body=body, headers={"Content-Type": kind})
    r = conn.getresponse()
    out = r.status, r.read(), dict(r.getheaders())
    conn.close()
    return out


async def vanishing_offer() -> str:
    """An offer from a peer that will never connect (its answer is never applied)."""
    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def metrics(server) -> str:
    status, body, headers = http_request(server.url + "/metrics", "GET")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return body.decode()


def value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (
            line.startswith(name + "{") and line.split(" ")[0] == name
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_vanished_peers_cannot_hoard_sessions(clip_small) -> None:
    s = ServerProcess("--max-sessions", "2", "--connect-timeout", "2", "--idle-timeout", "3")
    try:
        offer = asyncio.run(vanishing_offer()).encode()
        # 127.0.0.2: a peer that offers and vanishes, three times.
        results = [post_from(s.url, "127.0.0.2", "/offer?effect=none", offer) for _ in range(3)]
        assert [r[0] for r in results] == [201, 201, 429]
        assert b"still connecting" in results[2][1] and results[2][2]["Retry-After"] == "2"

        # Meanwhile a real client from 127.0.0.1 is served at once: connecting sessions hold
        # no connected slot.
        async def real() -> Client:
            c = Client(s.url, clip_small.frames)
            await c.start({"effect": "none"})
            assert await c.connected()
            await asyncio.sleep(1.0)
            await c.stop()
            return c

        assert len(asyncio.run(real()).received.arrivals) > 10
        # The vanished ones are ended after --connect-timeout.
        assert wait_for(
            lambda: json.loads(http_request(s.url + "/health", "GET")[1])["sessions"] == 0, 6
        )
        ended = json.loads(http_request(s.url + "/stats", "GET")[1])["ended"]
        assert sum(e["reason"] == "not connected within 2 s" for e in ended) == 2
        text = metrics(s)
        assert 'livefx_sessions_ended_total{kind="sendrecv",reason="not connected"} 2.0' in text
        assert 'livefx_errors_total{kind="http_429"} 1.0' in text
    finally:
        s.stop()


def test_a_flood_of_offers_is_rate_limited_and_others_are_served(clip_small) -> None:
    s = ServerProcess()
    try:
        statuses = [post_from(s.url, "127.0.0.3", "/offer", b"v=0\r\n")[0] for _ in range(30)]
        assert statuses[:5] == [400] * 5  # the burst: bad offers, each still counted …
        assert set(statuses[5:]) == {429}  # … then the rate
        status, body, headers = post_from(s.url, "127.0.0.3", "/whip/x", b"v=0\r\n")
        assert status == 429 and int(headers["Retry-After"]) >= 1 and b"too many offers" in body

        async def real() -> int:
            c = Client(s.url, clip_small.frames)
            await c.start({"effect": "none"})
            await asyncio.sleep(1.5)
            await c.stop()
            return len(c.received.arrivals)

        assert asyncio.run(real()) > 15
    finally:
        s.stop()


def test_metrics_while_a_session_runs(server, clip_small) -> None:
    async def run() -> str:
        c = Client(server.url, clip_small.frames)
        await c.start({"effect": "blur"})
        assert await c.connected()
        await asyncio.sleep(2.0)
        text = metrics(server)
        await c.stop()
        return text

    text = asyncio.run(run())
    assert 'livefx_sessions{kind="sendrecv",state="connected"} 1.0' in text
    assert value(text, 'livefx_frames_total{direction="in"}') > 20
    assert value(text, 'livefx_frames_total{direction="out"}') > 20
    assert 'livefx_stage_seconds_count{stage="segment"}' in text
    assert value(text, 'livefx_stage_seconds_count{stage="segment"}') > 20
    assert value(text, "livefx_encode_seconds_count") > 20
    assert value(text, "livefx_decode_seconds_count") > 20
    assert value(text, 'livefx_sessions_started_total{kind="sendrecv"}') == 1


def test_metrics_need_the_token_when_there_is_one() -> None:
    s = ServerProcess("--token", "metrics-token-1")
    try:
        assert http_request(s.url + "/metrics", "GET")[0] == 401
        assert http_request(s.url + "/metrics", "GET", token="metrics-token-1")[0] == 200
    finally:
        s.stop()


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width × height and carries a few bytes of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_an_upload_that_declares_too_many_pixels_is_refused_before_decoding(server, clip_small):
    async def run() -> tuple:
        c = Client(server.url, clip_small.frames)
        await c.start({"effect": "replace"})
        bomb = await c.http("POST", c.location + "/background", _png_header(20_000, 20_000))
        fine = await c.http(
            "POST", c.location + "/background", (ROOT / "samples" / "astronaut.jpg").read_bytes()
        )
        await c.stop()
        return bomb, fine

    bomb, fine = asyncio.run(run())
    assert bomb[0] == 400 and b"declares over 40 megapixels" in bomb[1]
    assert fine[0] == 200


def test_sigterm_drains_and_exits_within_five_seconds(clip_small) -> None:
    s = ServerProcess()

    async def run() -> tuple[float, str]:
        c = Client(s.url, clip_small.frames)
        await c.start({"effect": "none"})
        assert await c.connected()
        await asyncio.sleep(0.5)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        while s.proc.poll() is None and time.monotonic() - t0 < 8:
            await asyncio.sleep(0.05)
        waited = time.monotonic() - t0
        # The server closed the connection (DTLS close_notify): the client sees it end.
        ended = await _wait_state(c, "closed", 3.0)
        await c.pc.close()
        return waited, ended

    waited, ended = asyncio.run(run())
    out = s.stop()
    assert s.proc.returncode == 0
    assert waited < 5.0 and "LiveFX stopped: 1 sessions ended" in out
    assert ended in ("closed", "failed")


async def _wait_state(c: Client, state: str, timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end and c.pc.connectionState not in (state, "failed"):
        await asyncio.sleep(0.05)
    return c.pc.connectionState


def test_a_player_that_vanishes_is_ended_within_ten_seconds(clip_small) -> None:
    """A WHEP player killed outright (no DTLS close, no RTCP): consent checks end it."""
    s = ServerProcess()
    script = f"""
import asyncio, sys
sys.path.insert(0, {str(ROOT)!r})
from engine.server import rtc
from engine.server.client import Player
rtc.use_loopback_ice(True)
async def main():
    p = Player({s.url!r}, "gone")
    await p.start()
    await p.connected()
    print("playing", flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""
    player = None
    try:

        async def publish_and_watch() -> float:
            from engine.server.client import Publisher

            nonlocal player
            pub = Publisher(s.url, "gone", clip_small.frames, audio=False)
            await pub.start({"effect": "none"})
            assert await pub.connected()
            player = subprocess.Popen(
                [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
            )
            assert player.stdout is not None
            line = await asyncio.get_running_loop().run_in_executor(None, player.stdout.readline)
            assert "playing" in line
            await asyncio.sleep(1.0)
            player.kill()
            t0 = time.monotonic()
            while time.monotonic() - t0 < 15:
                stats = json.loads(http_request(s.url + "/stats", "GET")[1])
                if not any(x["kind"] == "play" for x in stats["sessions"]):
                    break
                await asyncio.sleep(0.2)
            waited = time.monotonic() - t0
            await pub.stop()
            return waited

        waited = asyncio.run(publish_and_watch())
        assert waited < 10.0, waited
    finally:
        if player is not None and player.poll() is None:
            player.kill()
        s.stop()


def test_draining_refuses_new_offers() -> None:
    from engine.server.app import LiveFXServer
    from engine.server.middleware import HttpError

    server = LiveFXServer(ServerConfig())
    server.draining = True
    with pytest.raises(HttpError, match="shutting down") as info:
        server.rate_limit("127.0.0.1")
    assert info.value.status == 503


@pytest.fixture(scope="module")
def clip_small():
    return composited_clip(320, 240, 12, motion="sway", noise=2.0)
