"""The web client in a real browser: Debian's Chromium, driven by Playwright, a fake camera."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.samples import composited_clip

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


@pytest.fixture()
def browser_page(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    camera = write_y4m(tmp_path / "camera.y4m")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}",
                "--allow-loopback-in-peer-connection",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
            ],
        )
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
    before = page.evaluate("window.livefx.framesDecoded")
    page.wait_for_timeout(1500)
    assert page.evaluate("window.livefx.framesDecoded") > before + 10  # still playing


def test_clean_output_view(server, browser_page, tmp_path: Path) -> None:
    page = browser_page
    page.goto(server.url + "/?view=output&effect=colour&colour=blue")
    page.wait_for_function("window.livefx.framesDecoded > 10", timeout=30_000)
    assert not page.is_visible("#controls") and not page.is_visible("#local")
    r, _, b = remote_pixel(page, 0.02, 0.02)
    assert b > 140 and r < 60  # chroma blue behind her
    page.screenshot(path=str(tmp_path / "output.png"))
