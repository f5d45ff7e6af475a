"""Interop over loopback: WHIP in (FFmpeg's own muxer, a plain aiortc publisher), WHEP out, audio
in sync, standard clients with their own host candidates, tokens, CORS and the WHIP/WHEP rules.

Every server is ``livefx serve`` in a child process bound to 127.0.0.1; FFmpeg runs in a child
process too (its WHIP handshake blocks). The A/V checks use receivers that release audio and
video as soon as they are whole (``rtc.install_jitter_buffer``), so that what is measured is
what leaves the server, not the test client's own buffering.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client, Player, Publisher, http_request
from tests.conftest import ROOT, ServerProcess, run_cli, wait_for

W, H = 640, 480
TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
def clip():
    return composited_clip(W, H, 30, motion="sway", noise=2.0)


@pytest.fixture()
def loopback_client():
    """LiveFX's own test clients gather on loopback and release media as soon as it is whole."""
    rtc.use_loopback_ice(True)
    rtc.install_jitter_buffer(True)
    yield
    rtc.use_loopback_ice(False)
    rtc.install_jitter_buffer(False)


def stats(server, token: str | None = None) -> dict:
    status, body, _ = http_request(server.url + "/stats", "GET", token=token)
    assert status == 200, body
    return json.loads(body)


def regions(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    person = cv2.erode((alpha >= 250).astype(np.uint8), k) > 0
    background = cv2.erode((alpha == 0).astype(np.uint8), k) > 0
    return person, background


def assert_green_background_person_kept(
    frames: list[np.ndarray], clip, tolerance: float = 10.0
) -> None:
    person, background = regions(clip.alphas[0])
    y = frames[-1][:H]
    # BT.601 limited-range green #00b140: Y ≈ 112, V ≈ 58.
    assert abs(float(np.median(y[background])) - 112) < 10
    v = frames[-1][H + H // 4 :].reshape(H // 2, W // 2)
    assert abs(float(np.median(v[background[::2, ::2]])) - 58) < 10
    best = min(float(np.abs(y.astype(int) - f.y.astype(int))[person].mean()) for f in clip.frames)
    assert best < tolerance  # the person came back as sent, up to two codecs


def ffmpeg_publish(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ffmpeg_whip.py"), url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )


def av_offset_ms(received) -> float:
    return statistics.median(received.latencies_ms) - statistics.median(received.audio_latencies_ms)


# -- WHIP in, WHEP out ---------------------------------------------------------------------------


def test_ffmpeg_whip_publish_to_whep_players(server, clip, loopback_client) -> None:
    """FFmpeg's WHIP muxer with its own certificate (P-224 ECDSA, DTLS server) publishes; an
    aiortc WHEP player sees the person on a green background and hears the tone."""
    publisher = ffmpeg_publish(
        server.url + "/whip/studio?effect=colour&colour=green", "--seconds", "7"
    )
    try:
        assert wait_for(
            lambda: any(
                s["publisher"] for s in stats(server)["streams"] if s["stream"] == "studio"
            ),
            timeout=15,
        ), publisher.stdout.read() if publisher.poll() is not None else "no publisher"

        async def play() -> tuple[Player, int]:
            p = Player(server.url, "studio")
            p.keep_frames = True
            await p.start()
            await asyncio.sleep(3.0)
            frames_out = stats(server)["streams"][0]["encoders"][0]["frames"]
            status = await p.stop()
            assert status == 200
            return p, frames_out

        player, encoded = asyncio.run(play())
        out, _ = publisher.communicate(timeout=20)
    finally:
        if publisher.poll() is None:
            publisher.kill()
    assert publisher.returncode == 0 and "published" in out, out
    assert len(player.received.frames) > 40 and encoded > 40
    assert_green_background_person_kept(player.received.frames, clip)
    assert player.received.audio_frames > 100  # 20 ms frames for ~3 s
    assert player.received.audio_peak > 2000  # the tone came through, not silence
    # FFmpeg's DELETE ended its session (not the idle timeout).
    assert wait_for(lambda: any(e["kind"] == "publish" for e in stats(server)["ended"]), 5)
    ended = [e for e in stats(server)["ended"] if e["kind"] == "publish"]
    assert ended[-1]["reason"] == "deleted by the client"


def _rsa_certificate(tmp_path: Path) -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from engine.server.certs import self_signed, write_pem

    key = rsa.generate_private_key(65537, 2048)
    write_pem(self_signed(key, "whip-client"), key, tmp_path / "rsa.crt", tmp_path / "rsa.key")
    return str(tmp_path / "rsa.crt"), str(tmp_path / "rsa.key")


def test_ffmpeg_whip_with_an_rsa_certificate_and_a_token(clip, tmp_path: Path) -> None:
    cert, key = _rsa_certificate(tmp_path)
    s = ServerProcess("--token", TOKEN, "--effect", "none")
    try:
        refused = ffmpeg_publish(s.url + "/whip/rsa", "--seconds", "1")
        out, _ = refused.communicate(timeout=30)
        assert refused.returncode == 1 and "401" in out, out  # no token: refused
        publisher = ffmpeg_publish(
            s.url + "/whip/rsa", "--seconds", "4", "--token", TOKEN, "--cert", cert, "--key", key
        )
        assert wait_for(
            lambda: any(
                x["kind"] == "publish" and x["frames_in"] > 30 for x in stats(s, TOKEN)["sessions"]
            ),
            timeout=20,
        )
        out, _ = publisher.communicate(timeout=30)
        assert publisher.returncode == 0, out
    finally:
        s.stop()


def test_dtls_accepts_rsa_and_ffmpeg_certificates() -> None:
    """The DTLS check the server runs at start (P-224 needs engine/server/openssl.cnf)."""
    assert rtc.dtls_check() == []


def test_aiortc_whip_to_two_whep_players_one_encode(server, clip, loopback_client) -> None:
    """A plain aiortc publisher that offers no candidates (as OBS), two players on one stream:
    the stream is encoded once, the background is blurred, audio comes back in sync."""

    async def run():
        pub = Publisher(server.url, "show", clip.frames)
        # A/V sync of the stream itself: the body prior's thread, on two cores shared with the
        # publisher and both players, moved the offset to 51 ms in one run (bound 40).
        await pub.start(
            {"effect": "blur", "strength": "1", "person_model": "off"}, candidates="none"
        )
        assert await pub.connected()
        a = Player(server.url, "show", pub)
        b = Player(server.url, "show", pub)
        a.keep_frames = True
        await a.start()
        await b.start()
        await asyncio.sleep(4.0)
        st = stats(server)
        statuses = [await a.stop(), await b.stop(), await pub.stop()]
        return pub, a, b, st, statuses

    _, a, b, st, statuses = asyncio.run(run())
    assert statuses == [200, 200, 200]
    (stream,) = st["streams"]
    (encoder,) = stream["encoders"]  # one codec, one encoder for both players
    assert encoder["players"] == 2
    got = [len(a.received.arrivals), len(b.received.arrivals)]
    assert min(got) > 60
    assert encoder["frames"] < 0.7 * sum(got)  # once, not once per player
    # Blurred background, person kept.
    person, background = regions(clip.alphas[0])
    y = a.received.frames[-1][:H]
    diffs = [float(np.abs(y.astype(int) - f.y.astype(int))[person].mean()) for f in clip.frames]
    assert min(diffs) < 10.0
    sent = clip.frames[int(np.argmin(diffs))].y

    def detail(plane: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(plane.astype(np.float32), cv2.CV_32F))[background].mean())

    assert detail(y) < 0.5 * detail(sent)
    # Audio: received, and in sync with the video (both timed against the publisher's clock).
    for p in (a, b):
        assert len(p.received.audio_latencies_ms) >= 2 and p.received.latencies_ms
        assert abs(av_offset_ms(p.received)) < 40


def test_sendrecv_audio_comes_back_in_sync(server, clip, loopback_client) -> None:
    async def run() -> Client:
        c = Client(server.url, clip.frames, audio=True)
        await c.start({"effect": "blur"})
        await asyncio.sleep(4.5)
        await c.stop()
        return c

    c = asyncio.run(run())
    assert c.received.audio_frames > 150 and c.received.audio_peak > 2000
    assert len(c.received.audio_latencies_ms) >= 3
    assert abs(av_offset_ms(c.received)) < 40


def test_trickle_ice_and_its_etag_rules(server, clip, loopback_client) -> None:
    """A publisher that sends its candidates later, by PATCH; the ETag rules around it."""

    async def run():
        pub = Publisher(server.url, "trickled", clip.frames, audio=False)
        await pub.start({"effect": "none"}, candidates="trickle")
        loc = pub.location
        frag = b"a=ice-ufrag:" + b"x" * 8 + b"\r\na=ice-pwd:" + b"y" * 24 + b"\r\n"
        kind = "application/trickle-ice-sdpfrag"
        no_match = await pub.http("PATCH", loc, frag, kind)
        wrong = await pub.http("PATCH", loc, frag, kind, headers={"If-Match": '"nope"'})
        restart = await pub.http("PATCH", loc, frag, kind, headers={"If-Match": pub.etag})
        garbage = await pub.http("PATCH", loc, b"\x00\x01binary", kind, headers={"If-Match": "*"})
        await asyncio.sleep(2.0)
        st = stats(server)
        get = await pub.http("GET", loc)
        head = await pub.http("HEAD", loc)
        deleted = await pub.http("DELETE", loc)
        gone = await pub.http("DELETE", loc)
        await pub.stop()
        return pub, no_match, wrong, restart, garbage, st, get, head, deleted, gone

    pub, no_match, wrong, restart, garbage, st, get, head, deleted, gone = asyncio.run(run())
    assert pub.trickle_status == 204
    assert no_match[0] == 428 and wrong[0] == 412
    assert restart[0] == 422 and b"ICE restart" in restart[1]
    assert garbage[0] == 400
    (session,) = [x for x in st["sessions"] if x["kind"] == "publish"]
    assert session["state"] == "connected" and session["frames_in"] > 20  # trickled ICE worked
    assert get[0] == 200 and head[0] == 200 and get[2].get("ETag") == pub.etag
    assert deleted[0] == 200 and gone[0] == 404


# -- the HTTP rules ------------------------------------------------------------------------------


class StunServer:
    """A STUN binding responder on loopback: enough for ``--ice-server stun:…`` to be used."""

    def __init__(self) -> None:
        from aioice import stun

        self.stun = stun
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            try:
                request = self.stun.parse_message(data)
            except ValueError:
                continue
            self.requests += 1
            response = self.stun.Message(
                message_method=self.stun.Method.BINDING,
                message_class=self.stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = addr
            self.sock.sendto(bytes(response), addr)

    def close(self) -> None:
        self.running = False
        self.thread.join(timeout=2)
        self.sock.close()


def test_whip_whep_http_rules(clip, loopback_client) -> None:
    stun = StunServer()
    s = ServerProcess(
        "--offer-rate",
        "1000",  # many bad offers in a row: the rate limit is tested in test_reliability.py
        "--allow-origin",
        "https://studio.example",
        "--ice-server",
        f"stun:127.0.0.1:{stun.port}",
        "--ice-server",
        "turn:127.0.0.1:3478?transport=udp,user,pass",
    )
    url = s.url

    def call(method: str, path: str, body: bytes = b"", kind: str = "", **headers: str):
        return http_request(url + path, method, body, kind, headers=headers)

    try:
        # CORS preflight for an allowed origin, and for one that is not.
        status, _, h = call(
            "OPTIONS",
            "/whip/cam",
            Origin="https://studio.example",
            **{
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert status == 204 and h["Access-Control-Allow-Origin"] == "https://studio.example"
        assert (
            "POST" in h["Access-Control-Allow-Methods"]
            and "Authorization" in h["Access-Control-Allow-Headers"]
        )
        assert h["Accept-Post"] == "application/sdp" and "Link" not in h  # no credentials here
        status, _, h = call(
            "OPTIONS",
            "/whip/cam",
            Origin="https://evil.example",
            **{"Access-Control-Request-Method": "POST"},
        )
        assert "Access-Control-Allow-Origin" not in h
        assert call("GET", "/whip/cam")[0] == 200 and call("HEAD", "/whep/cam")[0] == 200
        # Bad requests: each a 4xx with one line, the server still serving.
        assert call("POST", "/whip/cam", b"v=0\r\n", "text/plain")[0] == 415
        assert call("POST", "/whip/bad%20name", b"v=0\r\n", "application/sdp")[0] == 400
        refusals = [
            ("/whip/cam", "m=audio 9 RTP 111\r\na=rtpmap:111 opus/48000/2\r\na=sendonly", 422,
             b"no video track"),
            ("/whip/cam", "m=video 9 RTP 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly", 422,
             b"recvonly"),
            ("/whip/cam", "m=video 9 RTP 96\r\na=rtpmap:96 AV1/90000\r\na=sendonly", 422,
             b"no video codec in common"),
            ("/whep/cam", "m=video 9 RTP 96\r\na=rtpmap:96 VP8/90000\r\na=recvonly", 409,
             b"no publisher"),
        ]  # fmt: skip
        ice = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 AB"
        for path, media, expected, message in refusals:
            offer = f"v=0\r\n{ice}\r\n{media}\r\n".encode()
            status, body, h = call("POST", path, offer, "application/sdp")
            assert status == expected and message in body, (path, status, body)
        assert "Retry-After" in h  # on the last one, WHEP's 409

        async def run():
            pub = Publisher(url, "cam", clip.frames, audio=False)
            await pub.start({"effect": "none"})
            second = Publisher(url, "cam", clip.frames, audio=False)
            with pytest.raises(RuntimeError, match="409"):
                await second.start()
            await second.pc.close()
            player = Player(url, "cam")
            await player.start()
            await asyncio.sleep(1.5)
            patch = await player.http("PATCH", player.location + "?effect=blur")
            await player.stop()
            await pub.stop()
            return pub, player, patch

        pub, player, patch = asyncio.run(run())
        links = pub.answer_headers.get("Link", "")
        assert f'<stun:127.0.0.1:{stun.port}>; rel="ice-server"' in links
        assert 'rel="ice-server"; username="user"; credential="pass"' in links
        assert pub.location.startswith("/sessions/") and pub.etag
        assert len(player.received.arrivals) > 20
        assert patch[0] == 409  # a player has no settings of its own
        assert stun.requests > 0  # the server used the STUN server it was given
        assert json.loads(call("GET", "/health")[1])["status"] == "ok"
    finally:
        s.stop()
        stun.close()


def test_tokens_guard_every_session_request(clip, loopback_client) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    s = ServerProcess("--token", TOKEN)
    try:
        offer = b"v=0\r\n"
        for path in ("/offer", "/whip/x", "/whep/x"):
            status, _, h = http_request(s.url + path, "POST", offer, "application/sdp")
            assert status == 401 and h["WWW-Authenticate"].startswith("Bearer")
            status, _, h = http_request(
                s.url + path, "POST", offer, "application/sdp", token="wrong-token"
            )
            assert status == 401 and 'error="invalid_token"' in h["WWW-Authenticate"]
        assert http_request(s.url + "/stats", "GET")[0] == 401
        assert http_request(s.url + "/sessions/abc", "DELETE")[0] == 401
        assert http_request(s.url + "/", "GET")[0] == 200  # the page loads, then uses the token
        assert http_request(s.url + "/health", "GET")[0] == 200
        ws = s.url.replace("http://", "ws://") + "/ws"
        with pytest.raises(InvalidStatus):
            connect(ws).close()
        with connect(ws, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            assert json.loads(c.recv(timeout=5))["type"] == "hello"
        encoded = base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("=")
        with connect(ws, subprotocols=["livefx", f"livefx.token.{encoded}"]) as c:
            assert json.loads(c.recv(timeout=5))["type"] == "hello"

        async def run() -> Client:
            c = Client(s.url, clip.frames, token=TOKEN)
            await c.start({"effect": "none"})
            await asyncio.sleep(2.0)
            await c.stop()
            return c

        assert len(asyncio.run(run()).received.arrivals) > 20
        assert "open http://127.0.0.1:" in "".join(s.log) and f"?token={TOKEN}" in "".join(s.log)
    finally:
        s.stop()


def test_a_loopback_server_without_a_token_serves_loopback_names_only(server) -> None:
    status, body, _ = http_request(
        server.url + "/health", "GET", headers={"Host": "rebound.example"}
    )
    assert status == 403 and b"not served" in body
    port = server.url.rsplit(":", 1)[1]
    assert (
        http_request(server.url + "/health", "GET", headers={"Host": f"localhost:{port}"})[0] == 200
    )


def test_serve_refuses_a_public_address_without_a_token() -> None:
    r = run_cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2
    assert "set --token" in r.stderr and "--no-auth" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3
    r = run_cli("serve", "--ice-server", "ftp://x", "--port", "0")
    assert r.returncode == 2 and "ice_server" in r.stderr
    r = run_cli("serve", "--cert", "nope.pem", "--port", "0")
    assert r.returncode == 2 and "cert/key" in r.stderr


# -- standard clients ----------------------------------------------------------------------------


def test_plain_aiortc_client_with_its_own_host_candidates(server, clip) -> None:
    """No LiveFX code in the client: aioice gathers on this machine's own interface addresses;
    a server bound to 127.0.0.1 keeps them and answers with its loopback candidate."""
    import fractions

    import av
    from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
    from websockets.asyncio.client import connect as aconnect

    from engine.media import frame_to_av

    rtc.use_loopback_ice(False)  # aioice's own gathering, whatever ran before in this process
    rtc.install_jitter_buffer(False)

    class Camera(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.i = 0

        async def recv(self) -> av.VideoFrame:
            pts, _ = await self.next_timestamp()
            frame = frame_to_av(clip.frames[self.i % len(clip.frames)])
            frame.pts, frame.time_base = pts, fractions.Fraction(1, 90000)
            self.i += 1
            return frame

    async def session(via: str) -> tuple[list[np.ndarray], str]:
        pc = RTCPeerConnection()
        pc.addTrack(Camera())
        frames: list[np.ndarray] = []
        tasks = []

        @pc.on("track")
        def on_track(track):
            async def pull():
                with contextlib.suppress(Exception):
                    while True:
                        frames.append((await track.recv()).to_ndarray(format="yuv420p"))

            tasks.append(asyncio.ensure_future(pull()))

        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        if via == "offer":
            status, body, _ = await asyncio.get_running_loop().run_in_executor(
                None,
                http_request,
                server.url + "/offer?effect=colour&colour=green",
                "POST",
                offer.encode(),
                "application/sdp",
            )
            assert status == 201, body
            await pc.setRemoteDescription(RTCSessionDescription(body.decode(), "answer"))
            await asyncio.sleep(3.0)
        else:
            async with aconnect(server.url.replace("http://", "ws://") + "/ws") as ws:
                await ws.recv()
                await ws.send(
                    json.dumps({"type": "offer", "sdp": offer, "settings": {"effect": "colour"}})
                )
                answer = json.loads(await ws.recv())
                await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
                await asyncio.sleep(3.0)
        await pc.close()
        return frames, offer

    for via in ("offer", "ws"):
        frames, offer = asyncio.run(session(via))
        hosts = [line.split()[4] for line in offer.splitlines() if line.startswith("a=candidate")]
        assert hosts and not any(h.startswith("127.") for h in hosts)  # its own addresses
        assert len(frames) > 30, via
        # aiortc's own encoder on the client starts at 500 kbit/s: a softer person than ours.
        assert_green_background_person_kept(frames, clip, tolerance=15.0)
