"""``livefx bench`` as a user runs it (the real command, in a child process), against an aiortc
echo written here (``tests/echo_server.py``: it holds frames a known time, drops a known share
and rewrites their timestamps) and against ``livefx serve``; loopback only."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from engine.bench import code
from engine.bench.impair import Impairment
from engine.errors import ConfigError
from tests.conftest import ROOT, run_cli

CHROMIUM = "/usr/bin/chromium"


class Echo:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "echo_server.py"), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        assert m, line
        self.url = m.group(1)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def echoes():
    fast, held = Echo(), Echo("--hold-ms", "120", "--drop-every", "5")
    yield fast, held
    fast.stop()
    held.stop()


def bench(*args: str) -> tuple[subprocess.CompletedProcess[str], dict | None]:
    r = run_cli("bench", "--warmup", "1", *args)
    result = None
    if r.stdout.strip():
        last = r.stdout.strip().splitlines()[-1]
        if last.startswith("{"):
            result = json.loads(last)
    return r, result


def test_the_frame_code_survives_what_it_must_and_refuses_what_it_cannot_read() -> None:
    import numpy as np

    layout = code.Layout()
    y = np.full((480, 640), 90, np.uint8)
    for n in (0, 1, 4_194_303, 123_456):
        code.stamp(y, n, layout)
        assert code.read(y, layout) == n
        small = cv2.resize(y, (320, 240), interpolation=cv2.INTER_AREA)
        assert code.read(small, layout) == n  # a server that rescales keeps it readable
    x0, y0, x1, y1 = layout.cells(640, 480)[5]  # a data cell flipped: refused, not guessed
    y[y0:y1, x0:x1] = 255 - y[y0:y1, x0:x1]
    assert code.read(y, layout) is None
    rng = np.random.default_rng(0)
    assert all(
        code.read(rng.integers(0, 256, (480, 640), np.uint8), layout) is None for _ in range(50)
    )
    assert not code.Layout(0.02, 0.5).fits(640, 480)


def test_impairment_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="loss"):
        Impairment(loss=1.5)
    with pytest.raises(ConfigError, match="delay"):
        Impairment(delay_ms=-1)


def test_round_trip_follows_what_the_echo_does(echoes) -> None:
    """Two echoes measured interleaved: one sends frames straight back, one 120 ms later and
    drops one in five; both rewrite the timestamps."""
    fast, held = echoes
    r, result = bench(f"{fast.url}/offer", f"{held.url}/offer", "--seconds", "6", "--json")
    assert r.returncode == 0, r.stderr
    assert result is not None
    by_target = {run["target"]: run for run in result["runs"]}
    quick, slow = by_target[f"{fast.url}/offer"], by_target[f"{held.url}/offer"]
    assert quick["matched_share"] > 0.95 and quick["unreadable"] == 0
    moved = slow["rtt_ms"]["median"] - quick["rtt_ms"]["median"]
    assert abs(moved - 120) <= 15, moved
    assert abs(slow["matched_share"] - 0.8) <= 0.05, slow["matched_share"]
    assert result["config"]["rounds"] >= 1 and result["floor"]["floor_ms"] > 0
    assert {"sent", "received", "matched", "rtt_ms", "longest_freeze_ms", "fps_out"} <= set(
        result["sessions"][0]
    )
    assert set(result["rtt_ms"]) >= {"median", "p95", "p99", "max"}


def test_against_livefx_with_its_stage_times_and_a_report(server, tmp_path: Path) -> None:
    report = tmp_path / "report"
    r, result = bench(
        server.url + "/offer?effect=blur", "--seconds", "4", "--json", "--report", str(report)
    )
    assert r.returncode == 0, r.stderr
    (run,) = result["runs"]
    assert result["server"][server.url]["livefx"] is True
    assert run["server"]["settings"]["effect"]["name"] == "blur"  # the effect was applied
    assert run["server"]["stages_ms"]["segment"] > 0
    split = run["decomposition"]
    assert split["server_stages_ms"] > 0 and split["client_encode_ms"] > 0
    assert abs(sum(split.values()) - run["rtt_ms"]["median"]) < 0.1
    assert run["matched"] > 80
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # cdf, over time, the split
    for name in ("rtt_cdf.png", "rtt_time.png", "stages.png"):
        image = cv2.imread(str(report / name))
        assert image is not None and image.shape[0] > 200
    assert json.loads((report / "result.json").read_text())["runs"][0]["matched"] == run["matched"]


def test_whip_publish_and_whep_play(server) -> None:
    r, result = bench(
        "--whip", server.url + "/whip/bench?effect=colour", "--whep", server.url + "/whep/bench",
        "--seconds", "4", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (run,) = result["runs"]
    assert run["matched"] > 80 and run["rtt_ms"]["median"] > 0
    assert run["server"]["settings"]["effect"]["name"] == "colour"


def test_loss_lowers_matched_frames_and_raises_p95(server) -> None:
    """5 % of media packets lost each way, in the client's own transport: retransmissions raise
    the p95, and the frames that then arrive in a burst may be partly dropped (newest wins; the
    server's receivers often recover every frame, so the share may stay the same)."""
    url = server.url + "/offer?effect=none"
    _, clean = bench(url, "--seconds", "5", "--json")
    r, lossy = bench(url, "--seconds", "5", "--json", "--loss", "5%")
    assert r.returncode == 0, r.stderr
    assert clean is not None and lossy is not None
    c, lo = clean["runs"][0], lossy["runs"][0]
    assert lo["matched_share"] <= c["matched_share"]
    assert lo["rtt_ms"]["p95"] > c["rtt_ms"]["p95"]
    assert lossy["config"]["loss"] == 0.05


def test_a_sweep_plots_its_scaling_curve(echoes, tmp_path: Path) -> None:
    fast, _ = echoes
    r, result = bench(
        f"{fast.url}/offer", "--sessions", "1,2", "--seconds", "3", "--json",
        "--report", str(tmp_path),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [run["sessions"] for run in result["runs"]] == [1, 2]
    assert len([s for s in result["sessions"] if s["run_sessions"] == 2]) == 2
    assert cv2.imread(str(tmp_path / "scaling.png")) is not None


@pytest.mark.browser
def test_the_same_measurement_in_chromium(server) -> None:
    pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    r, result = bench(server.url + "/offer?effect=blur", "--browser", "--seconds", "4", "--json")
    assert r.returncode == 0, r.stderr
    (run,) = result["runs"]
    assert result["config"]["client"] == "headless Chromium"
    assert run["matched"] > 40 and run["rtt_ms"]["median"] > 0
    assert run["client"]["jitter_buffer_ms"] is not None  # the browser's own, from getStats


def test_endpoints_that_misbehave(echoes, server) -> None:
    fast, _ = echoes
    r, _ = bench("http://127.0.0.1:9/offer", "--seconds", "2")
    assert r.returncode == 5 and "cannot reach" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r, _ = bench(f"{fast.url}/notsdp", "--seconds", "2")
    assert r.returncode == 5 and "not with SDP" in r.stderr
    r, _ = bench(server.url + "/offer?effect=sparkle", "--seconds", "2")
    assert r.returncode == 5 and "refused the offer: 400" in r.stderr
    started = time.monotonic()
    r, result = bench(f"{fast.url}/silent", "--seconds", "2", "--json")
    assert time.monotonic() - started < 2 + 30  # --seconds + a bounded set-up
    assert r.returncode == 5 and "no frame came back" in r.stderr
    assert result is not None and result["runs"][0]["conditions"] == ["no media came back"]
    r, result = bench(f"{fast.url}/half", "--seconds", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert result["runs"][0]["resized"] == ["320x240"] and result["runs"][0]["matched"] > 40
    for args, message in [
        (("--size", "640", server.url + "/offer"), "size"),
        (("--loss", "2", server.url + "/offer"), "loss"),
        (("--size", "10000x10", server.url + "/offer"), "size"),
        (("--whip", "http://x/whip"), "--whep"),
        ((), "give an endpoint"),
        (("ftp://x",), "not an http"),
    ]:
        r, _ = bench(*args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)
