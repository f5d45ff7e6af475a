"""The server over loopback: a real aiortc client, real HTTP and WebSocket, a child process."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.sync.client import connect

from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client
from tests.conftest import ServerProcess, wait_for

W, H = 640, 480


@pytest.fixture(scope="module")
def clip():
    return composited_clip(W, H, 12, motion="sway", noise=2.0)


@pytest.fixture(autouse=True)
def loopback_ice():
    rtc.use_loopback_ice(True)
    yield
    rtc.use_loopback_ice(False)


def http(url: str, method: str = "GET", body: bytes = b"", kind: str = "") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body or None, method=method)
    if kind:
        req.add_header("Content-Type", kind)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def health(server) -> dict:
    return json.loads(http(server.url + "/health")[1])


async def session_frames(server, clip, settings, seconds: float = 3.0) -> tuple[list, Client]:
    c = Client(server.url, clip.frames, fps=30)
    c.keep_frames = True
    await c.start(settings)
    await asyncio.sleep(seconds)
    return c.received.frames, c


def regions(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    person = cv2.erode((alpha >= 250).astype(np.uint8), k) > 0
    background = cv2.erode((alpha == 0).astype(np.uint8), k) > 0
    return person, background


def test_effect_is_applied_and_teardown_frees_the_session(server, clip) -> None:
    async def run():
        # The codec round trip's fidelity alone: on two cores shared with the client, the body
        # prior's thread costs the encoder quality (person pixels 9.6–10.3 levels off the sent
        # frames in 2 runs of 5, against 7.5 without it).
        settings = {"effect": "colour", "colour": "green", "person_model": "off"}
        frames, c = await session_frames(server, clip, settings)
        assert health(server)["sessions"] == 1
        status = await c.stop()
        return frames, c, status

    frames, c, status = asyncio.run(run())
    assert status == 200
    assert len(frames) > 40  # about 30 fps for 3 s, minus start-up
    assert len(c.received.latencies_ms) > 30 and c.received.unmatched == 0
    # Green background, person kept: compare with the frames that were sent (the same clip).
    person, background = regions(clip.alphas[0])
    ys = []
    for yuv in frames[-10:]:
        y = yuv[:H]
        ys.append(y)
        # BT.601 limited-range green #00b140: Y ≈ 112, U ≈ 105, V ≈ 58.
        assert abs(float(np.median(y[background])) - 112) < 10
        v = yuv[H + H // 4 :].reshape(H // 2, W // 2)
        assert abs(float(np.median(v[background[::2, ::2]])) - 58) < 10
    # The person's pixels match one of the sent frames closely (codecs both ways: two real-time
    # VP8 encodes, whose quality follows the machine's load: 7.5–8.4 levels measured on two
    # shared cores). Her pixels replaced by the green would be ~50 levels off.
    sent = [f.y for f in clip.frames]
    best = min(float(np.abs(ys[-1].astype(int) - s.astype(int))[person].mean()) for s in sent)
    assert best < 12.0
    green = np.full_like(ys[-1], 112)
    assert float(np.abs(green.astype(int) - sent[0].astype(int))[person].mean()) > 3 * 12.0
    assert wait_for(lambda: health(server)["sessions"] == 0)


def test_blur_over_the_wire_changes_only_the_background(server, clip) -> None:
    async def run():
        frames, c = await session_frames(server, clip, {"effect": "blur", "strength": "1"})
        await c.stop()
        return frames

    frames = asyncio.run(run())
    import cv2

    person, background = regions(clip.alphas[0])
    y = frames[-1][:H]
    diffs = [float(np.abs(y.astype(int) - f.y.astype(int))[person].mean()) for f in clip.frames]
    sent = clip.frames[int(np.argmin(diffs))].y
    assert min(diffs) < 8.0  # the person came back as sent (up to the codecs)

    def detail(plane: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(plane.astype(np.float32), cv2.CV_32F))[background].mean())

    assert detail(y) < 0.5 * detail(sent)  # the background came back blurred


def test_session_limit_and_bad_requests(server, clip) -> None:
    async def run():
        a = Client(server.url, clip.frames)
        b = Client(server.url, clip.frames)
        await a.start({"effect": "none"})
        await b.start({"effect": "none"})
        while not (a.received.arrivals and b.received.arrivals):  # both connected
            await asyncio.sleep(0.1)
        c = Client(server.url, clip.frames)
        with pytest.raises(RuntimeError, match=r"503 .*server full: 2 of 2"):
            await c.start({"effect": "none"})
        await c.pc.close()
        for x in (a, b):
            await x.stop()

    asyncio.run(run())
    url = server.url
    assert http(url + "/offer", "POST", b"v=0\r\n", "text/plain")[0] == 415
    status, body = http(url + "/offer", "POST", b"hello", "application/sdp")
    assert status == 400 and b"must start with v=0" in body
    status, body = http(url + "/offer", "POST", b"v=0\r\nnot really sdp\r\n", "application/sdp")
    assert status == 400 and b"not an SDP line" in body
    status, body = http(
        url + "/offer", "POST", b"v=0\r\nm=audio 9 RTP/AVP 0\r\n", "application/sdp"
    )
    assert status == 400 and b"no video track" in body
    status, body = http(url + "/offer?effect=sparkle", "POST", b"v=0\r\n", "application/sdp")
    assert status == 400 and b"effect: 'sparkle' is not one of" in body
    status, body = http(url + "/offer?strength=9", "POST", b"v=0\r\n", "application/sdp")
    assert status == 400 and b"strength: 9.0 is outside" in body
    status, body = http(
        url + "/offer?background=/etc/passwd", "POST", b"v=0\r\n", "application/sdp"
    )
    assert status == 400 and b"background: '/etc/passwd' is not one of" in body
    assert http(url + "/offer")[0] == 405
    assert http(url + "/sessions/nope", "DELETE")[0] == 404
    assert http(url + "/nothing-here")[0] == 404
    assert wait_for(lambda: health(server)["sessions"] == 0)
    assert health(server)["status"] == "ok"  # still serving after all that


def test_websocket_signalling_survives_bad_messages(server) -> None:
    ws_url = server.url.replace("http://", "ws://") + "/ws"
    with connect(ws_url, max_size=2**22) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "hello" and "blur" in hello["effects"]
        for bad, expect in [
            ("{not json", "not JSON"),
            ("[1, 2]", "a message must be a JSON object"),
            ('{"type": "launch"}', "type must be one of"),
            ('{"type": "offer", "sdp": 5}', "offer: 'sdp' must be an SDP string"),
            ('{"type": "settings", "settings": {"effect": "blur"}}', "send an offer first"),
            ('{"type": "offer", "sdp": "v=0", "settings": {"smoothing": "lots"}}', "smoothing"),
        ]:
            ws.send(bad)
            reply = json.loads(ws.recv(timeout=5))
            assert reply["type"] == "error" and expect in reply["message"], (bad, reply)
        ws.send(json.dumps({"type": "ping", "id": 7}))
        assert json.loads(ws.recv(timeout=5)) == {
            "type": "pong",
            "id": 7,
            "t": pytest.approx(time.time(), abs=5),
        }
    # An oversized message closes that connection (1009) and nothing else.
    with connect(ws_url, max_size=2**22) as ws:
        ws.recv(timeout=5)
        ws.send(json.dumps({"type": "ping", "id": "x" * 200_000}))
        with pytest.raises(Exception):  # noqa: B017  (closed by the server: 1009)
            for _ in range(3):
                ws.recv(timeout=5)
    assert health(server)["status"] == "ok"
    with connect(ws_url) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"


def test_websocket_offer_settings_and_stats(server, clip) -> None:
    """The browser's path, from Python: offer over /ws, change the effect, get stats."""
    from aiortc import RTCSessionDescription
    from websockets.asyncio.client import connect as aconnect

    from engine.server.client import CameraTrack

    async def run() -> tuple[dict, dict, int]:
        pc = rtc.peer_connection()
        pc.addTrack(CameraTrack(clip.frames, 30))
        got = {"n": 0}
        tasks = []

        @pc.on("track")
        def on_track(track):
            async def pull():
                while True:
                    await track.recv()
                    got["n"] += 1

            tasks.append(asyncio.ensure_future(pull()))

        async with aconnect(server.url.replace("http://", "ws://") + "/ws") as ws:
            await ws.recv()
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send(
                json.dumps(
                    {
                        "type": "offer",
                        "sdp": pc.localDescription.sdp,
                        "settings": {"effect": "blur"},
                    }
                )
            )
            answer = json.loads(await ws.recv())
            await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await ws.send(
                json.dumps(
                    {
                        "type": "settings",
                        "settings": {
                            "effect": "colour",
                            "colour": "#ff0000",
                            "person_model": "full",
                        },
                    }
                )
            )
            applied = json.loads(await ws.recv())
            stats = {}
            for _ in range(10):
                msg = json.loads(await ws.recv())
                if msg["type"] == "stats" and msg.get("stages"):
                    stats = msg
                    if msg["frames_out"] > 30:
                        break
        await pc.close()
        return applied, stats, got["n"]

    applied, stats, received = asyncio.run(run())
    assert applied["type"] == "settings" and applied["settings"]["effect"]["colour"] == "#ff0000"
    assert stats["settings"]["effect"]["name"] == "colour"
    assert {"fps_in", "fps_out", "dropped", "quality", "stages"} <= set(stats)
    assert stats["stages"]["composite"]["median_ms"] > 0 and received > 20
    # The body prior, switched to the full model, runs on its own thread in a live session.
    assert stats["settings"]["model"]["person_model"] == "full"
    assert stats["person"]["model"] == "full" and stats["person"]["asynchronous"] is True
    # Closing the WebSocket ended the session.
    assert wait_for(lambda: health(server)["sessions"] == 0)


def test_a_silent_peer_is_torn_down(server, clip) -> None:
    async def run() -> float:
        c = Client(server.url, clip.frames)
        await c.start({"effect": "none"})
        await asyncio.sleep(1.0)
        assert health(server)["sessions"] == 1
        c.camera.stop()  # the camera stops; the connection stays up
        started = time.monotonic()
        while health(server)["sessions"] != 0 and time.monotonic() - started < 15:
            await asyncio.sleep(0.2)
        waited = time.monotonic() - started
        await c.pc.close()
        return waited

    waited = asyncio.run(run())
    assert health(server)["sessions"] == 0
    assert waited < 10  # --idle-timeout 3 in the fixture


def test_bare_echo_mode_relays_frames(clip) -> None:
    s = ServerProcess("--mode", "bare-echo")
    try:

        async def run():
            frames, c = await session_frames(s, clip, {}, seconds=2.0)
            await c.stop()
            return frames

        frames = asyncio.run(run())
        assert len(frames) > 20
        # A relay: frames come back as sent (up to the codec both ways).
        y = frames[-1][:H].astype(int)
        assert min(float(np.abs(y - f.y.astype(int)).mean()) for f in clip.frames) < 4
    finally:
        s.stop()


def test_a_timed_decoder_is_freed_without_the_cycle_collector() -> None:
    """aiortc drops its decoder when a receiver stops; LiveFX's decode timing must not keep it
    (a libvpx decoder holds a thread: a kept one per session was the soak test's thread leak)."""
    import gc
    import weakref

    import aiortc.rtcrtpreceiver as receiver
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    rtc.encoders.install_decode_timing(lambda start, end, frames: None)
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
    decoder = receiver.get_decoder(codec)
    assert hasattr(decoder, "decode")
    kept = [weakref.ref(decoder), weakref.ref(getattr(decoder, "_inner", decoder))]
    gc.disable()
    try:
        del decoder
        assert [ref() for ref in kept] == [None, None]
    finally:
        gc.enable()
