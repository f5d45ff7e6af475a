"""The web client in a real browser: Debian's Chromium, driven by Playwright, a fake camera."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.bench.browser import CHROMIUM_ARGS as BENCH_CHROMIUM_ARGS
from engine.samples import composited_clip
from tests.conftest import ROOT, ServerProcess

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"


def write_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 30) -> Path:
    clip = composited_clip(width, height, frames, motion="sway", noise=2.0)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for fb in clip.frames:
            f.write(b"FRAME\n")
            for plane in (fb.y, fb.u, fb.v):
                f.write(np.ascontiguousarray(plane).tobytes())
    return path


# livefx bench's headless flags (no background networking, loopback ICE, autoplay), and a fake
# camera and microphone that need no permission prompt.
CHROMIUM_ARGS = [
    *BENCH_CHROMIUM_ARGS,
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]


def sync_api():
    api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    return api


def launch(p, camera: Path, *extra: str):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}", *extra],
    )


@pytest.fixture()
def browser_page(tmp_path: Path):
    api = sync_api()
    camera = write_y4m(tmp_path / "camera.y4m")
    with api.sync_playwright() as p:
        browser = launch(p, camera)
        page = browser.new_page(viewport={"width": 1280, "height": 620})
        yield page
        browser.close()


def remote_pixel(page, x: float, y: float) -> list[int]:
    """RGB of the processed video at (x, y) as fractions of its size, read in the page."""
    return page.evaluate(
        """([x, y]) => {
            const v = document.getElementById('remote');
            const c = document.createElement('canvas');
            c.width = v.videoWidth; c.height = v.videoHeight;
            const g = c.getContext('2d');
            g.drawImage(v, 0, 0);
            const d = g.getImageData(Math.floor(x * c.width), Math.floor(y * c.height), 1, 1).data;
            return [d[0], d[1], d[2]];
        }""",
        [x, y],
    )


AUDIO_STATS = """async () => {
    const report = await window.livefx.pc.getStats();
    let packets = 0, level = 0;
    report.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            packets = s.packetsReceived || 0;
            level = Math.max(level, s.audioLevel || 0);
        }
    });
    return [packets, level];
}"""


def test_camera_to_processed_video_in_chromium(server, browser_page, tmp_path: Path) -> None:
    page = browser_page
    page.goto(server.url + "/")
    page.wait_for_function("window.livefx.hello !== null", timeout=10_000)
    page.click("#start")
    page.wait_for_function("window.livefx.framesDecoded > 15", timeout=30_000)
    first = page.evaluate("window.livefx.framesDecoded")
    # The stats overlay shows the server's own figures.
    page.wait_for_function(
        "document.getElementById('stats').textContent.includes('segment')", timeout=10_000
    )
    text = page.inner_text("#stats")
    assert "fps in" in text and "quality" in text

    # Switch to a solid green background: the processed video's top-left corner (background in
    # the test clip) turns green while the person stays.
    page.select_option("#effect", "colour")
    page.wait_for_function(
        """() => {
            const v = document.getElementById('remote');
            const c = document.createElement('canvas');
            c.width = v.videoWidth; c.height = v.videoHeight;
            const g = c.getContext('2d'); g.drawImage(v, 0, 0);
            const d = g.getImageData(8, 8, 1, 1).data;
            return d[1] > 140 && d[0] < 70 && d[2] < 110;
        }""",
        timeout=15_000,
    )
    r, g, _ = remote_pixel(page, 0.5, 0.35)  # her face: not green
    assert not (g > 140 and r < 70)

    # The fake microphone's beeps came back with the processed video.
    page.wait_for_function(f"({AUDIO_STATS})().then(([n, level]) => n > 50)", timeout=10_000)
    assert page.evaluate("window.livefx.audioTracks") == 1

    page.select_option("#effect", "blur")
    page.wait_for_timeout(1500)
    later = page.evaluate("window.livefx.framesDecoded")
    assert later > first + 30  # still playing after two effect changes
    stats = page.evaluate("window.livefx.stats")
    assert stats["settings"]["effect"]["name"] == "blur"
    assert stats["fps_out"] > 10
    page.screenshot(path=str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_gan_effect_from_the_page(server, browser_page) -> None:
    page = browser_page
    page.goto(server.url + "/")
    page.wait_for_function("window.livefx.hello !== null", timeout=10_000)
    page.click("#start")
    page.wait_for_function("window.livefx.framesDecoded > 10", timeout=30_000)
    page.select_option("#effect", "gan")
    assert page.is_visible("#model") and page.is_visible("#region")
    page.select_option("#model", "enhance")
    page.select_option("#region", "person")
    page.wait_for_function(
        """() => {
            const e = window.livefx.stats && window.livefx.stats.settings.effect;
            return e && e.name === 'gan' && e.model === 'enhance' && e.region === 'person';
        }""",
        timeout=15_000,
    )
    # Still playing under the GAN (its frame rate is the benchmarks' business, not this test's).
    before = page.evaluate("window.livefx.framesDecoded")
    page.wait_for_function(f"window.livefx.framesDecoded > {before + 10}", timeout=10_000)


def test_clean_output_view(server, browser_page, tmp_path: Path) -> None:
    page = browser_page
    page.goto(server.url + "/?view=output&effect=colour&colour=blue")
    page.wait_for_function("window.livefx.framesDecoded > 10", timeout=30_000)
    assert not page.is_visible("#controls") and not page.is_visible("#local")
    r, _, b = remote_pixel(page, 0.02, 0.02)
    assert b > 140 and r < 60  # chroma blue behind her
    page.screenshot(path=str(tmp_path / "output.png"))


def test_whep_view_plays_a_stream_published_by_ffmpeg(server, browser_page) -> None:
    """The page a broadcaster uses as a browser source: no camera, the stream's processed video
    and audio. It is opened before anyone publishes (409: it waits and retries)."""
    page = browser_page
    page.goto(server.url + "/?view=whep&stream=live")
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('waiting')", timeout=10_000
    )
    publisher = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "ffmpeg_whip.py"),
         server.url + "/whip/live?effect=colour&colour=blue", "--seconds", "14"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        page.wait_for_function("window.livefx.framesDecoded > 20", timeout=30_000)
        assert not page.is_visible("#controls") and not page.is_visible("#local")
        r, _, b = remote_pixel(page, 0.02, 0.02)
        assert b > 140 and r < 60  # chroma blue behind her
        r, _, b = remote_pixel(page, 0.5, 0.35)  # her face: not blue
        assert not (b > 140 and r < 60)
        page.wait_for_function(f"({AUDIO_STATS})().then(([n, level]) => n > 50 && level > 0)",
                               timeout=10_000)  # fmt: skip
        assert page.evaluate("window.livefx.audioTracks") == 1
        whep = page.evaluate("window.livefx.whep")
        assert "/sessions/" in whep
    finally:
        publisher.kill()
        publisher.wait()


def _certificate(tmp_path: Path, name: str) -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from engine.server.certs import self_signed, write_pem

    key = ec.generate_private_key(ec.SECP256R1())
    write_pem(self_signed(key, name), key, tmp_path / "server.crt", tmp_path / "server.key")
    return str(tmp_path / "server.crt"), str(tmp_path / "server.key")


def test_https_lets_a_non_localhost_page_use_the_camera(tmp_path: Path) -> None:
    """From a name other than localhost the camera needs HTTPS: over --cert/--key the page
    starts it (WSS signalling, the token from the URL); over plain HTTP it cannot."""
    api = sync_api()
    name, token = "livefx.test", "browser-token-123"
    cert, key = _certificate(tmp_path, name)
    secure = ServerProcess("--cert", cert, "--key", key, "--token", token)
    plain = ServerProcess("--token", token)
    camera = write_y4m(tmp_path / "camera.y4m")
    try:
        assert secure.url.startswith("https://")
        port, plain_port = secure.url.rsplit(":", 1)[1], plain.url.rsplit(":", 1)[1]
        with api.sync_playwright() as p:
            browser = launch(p, camera, f"--host-resolver-rules=MAP {name} 127.0.0.1")
            context = browser.new_context(ignore_https_errors=True)  # the test's own certificate
            page = context.new_page()
            page.goto(f"https://{name}:{port}/?token={token}")
            assert page.evaluate("window.isSecureContext") is True
            assert "token" not in page.url  # taken off the address bar
            page.wait_for_function("window.livefx.hello !== null", timeout=10_000)
            page.click("#start")
            page.wait_for_function("window.livefx.framesDecoded > 15", timeout=30_000)
            assert page.evaluate("window.livefx.stats === null || window.livefx.stats.fps_in >= 0")

            page = context.new_page()
            page.goto(f"http://{name}:{plain_port}/?token={token}")
            assert page.evaluate("window.isSecureContext") is False
            page.wait_for_function("window.livefx.hello !== null", timeout=10_000)
            page.click("#start")
            page.wait_for_function(
                "document.getElementById('message').textContent.includes('secure page')",
                timeout=10_000,
            )
            assert page.evaluate("window.livefx.framesDecoded") == 0
            browser.close()
    finally:
        secure.stop()
        plain.stop()
