"""Faults inside the server, made on purpose by failpoints (``engine.faults``,
``LIVEFX_FAILPOINTS`` in the server's environment): a model, an effect, an encoder that raises
mid-session, a worker thread that dies. The real server in a child process, real aiortc peers
over loopback."""

from __future__ import annotations

import asyncio
import json
import re

import numpy as np
import pytest

from engine import faults
from engine.config import EffectConfig, PipelineConfig
from engine.errors import StageError
from engine.pipeline import Pipeline
from engine.samples import composited_clip
from engine.server import rtc
from engine.server.client import Client, http_request
from engine.server.client import ServerProcess as _ServerProcess
from tests.conftest import ROOT, wait_for


@pytest.fixture(autouse=True)
def loopback_ice():
    rtc.use_loopback_ice(True)
    yield
    rtc.use_loopback_ice(False)


@pytest.fixture(scope="module")
def clip():
    return composited_clip(320, 240, 12, motion="sway", noise=2.0)


def faulty_server(points: str, *args: str) -> _ServerProcess:
    return _ServerProcess(
        "--offer-rate",
        "1000",
        "--idle-timeout",
        "5",
        "--admit-load",
        "0",
        *args,
        cwd=str(ROOT),
        env={faults.ENV: points},
    )


def stats(server) -> dict:
    status, body, _ = http_request(server.url + "/stats", "GET")
    assert status == 200
    return json.loads(body)


def session_stats(server, client: Client) -> dict:
    sid = client.location.rstrip("/").rsplit("/", 1)[-1] if client.location else None
    for s in stats(server)["sessions"]:
        if s["session"] == sid or sid is None:
            return s
    raise AssertionError(f"session {sid} is not in /stats")


def metric(server, name: str) -> float:
    _, body, _ = http_request(server.url + "/metrics", "GET")
    for line in body.decode().splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def frames_back(server, clip, effect: str, after_s: float, window_s: float) -> tuple[dict, int]:
    """One session: its stats and how many frames came back in ``window_s`` after ``after_s``."""

    async def run() -> tuple[dict, int]:
        c = Client(server.url, clip.frames)
        await c.start({"effect": effect})
        assert await c.connected()
        await asyncio.sleep(after_s)
        before = len(c.received.arrivals)
        await asyncio.sleep(window_s)
        back = len(c.received.arrivals) - before
        st = session_stats(server, c)
        await c.stop()
        return st, back

    return asyncio.run(run())


def until_the_session_ends(server, clip, effect: str) -> list[dict]:
    """Run one session until the server ends it (at most 10 s); the server's ``ended`` list."""

    async def run() -> None:
        c = Client(server.url, clip.frames)
        await c.start({"effect": effect})
        assert await c.connected()
        deadline = asyncio.get_running_loop().time() + 10
        while stats(server)["sessions"] and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.3)
        await c.stop()

    asyncio.run(run())
    return stats(server)["ended"]


# -- the failpoints themselves -------------------------------------------------------------------


def test_failpoint_rules_and_their_errors() -> None:
    rules = faults.parse("segment=raise@3-4; effect.blur=raise@2-;encode=raise@5;worker=raise")
    assert [rules["segment"].fails(n) for n in range(1, 7)] == [0, 0, 1, 1, 0, 0]
    assert rules["effect.blur"].fails(1) is False and rules["effect.blur"].fails(999)
    assert [rules["encode"].fails(n) for n in (4, 5, 6)] == [False, True, False]
    assert rules["worker"].fails(1)
    for bad in ("segment", "segment=crash", "segment=raise@x", "=raise", "a=raise@1-y"):
        with pytest.raises(ValueError, match="LIVEFX_FAILPOINTS"):
            faults.parse(bad)


def test_a_stage_that_raises_is_named_and_the_next_frame_works(clip) -> None:
    faults.configure("effect.blur=raise@2")
    try:
        p = Pipeline(PipelineConfig(effect=EffectConfig(name="blur")))
        p.process(clip.frames[0])
        with pytest.raises(StageError, match=r"^effect: InjectedFault: failpoint effect.blur"):
            p.process(clip.frames[1])
        out = p.process(clip.frames[2])
        assert out.y.shape == clip.frames[2].y.shape
        assert not np.array_equal(out.y, clip.frames[2].y)  # processed again
        p.close()
    finally:
        faults.configure("")


# -- inside a live session ---------------------------------------------------------------------


def test_a_model_that_raises_mid_session_passes_those_frames_through(clip) -> None:
    s = faulty_server("segment=raise@15-19")
    try:
        st, back = frames_back(s, clip, "blur", after_s=4.0, window_s=1.0)
        assert back > 10, "frames stopped coming back"
        assert st["faults"]["count"] == 5
        assert st["degraded"] is None
        assert "segment: InjectedFault: failpoint segment" in st["faults"]["last"]
        assert st["settings"]["effect"]["name"] == "blur"
        assert metric(s, 'livefx_errors_total{kind="stage:segment"}') == 5
        assert wait_for(lambda: stats(s)["sessions"] == [], 10)
    finally:
        s.stop()


def test_a_persistent_effect_failure_degrades_to_none_and_other_sessions_are_untouched(
    clip,
) -> None:
    s = faulty_server("effect.blur=raise@20-")
    try:

        async def run() -> tuple[dict, dict, int, int]:
            a, b = Client(s.url, clip.frames), Client(s.url, clip.frames)
            await a.start({"effect": "blur"})
            await b.start({"effect": "colour"})
            assert await a.connected() and await b.connected()
            await asyncio.sleep(5.0)
            before = len(a.received.arrivals)
            await asyncio.sleep(1.5)
            after = len(a.received.arrivals)
            sa, sb = session_stats(s, a), session_stats(s, b)
            await a.stop()
            await b.stop()
            return sa, sb, before, after

        sa, sb, before, after = asyncio.run(run())
        assert sa["degraded"].startswith("effect blur turned off after 10 faults in a row: effect:")
        assert sa["settings"]["effect"]["name"] == "none"
        assert after - before > 15, "the degraded session stopped streaming"
        assert sb["faults"]["count"] == 0 and sb["degraded"] is None
        assert sb["settings"]["effect"]["name"] == "colour"
        assert sb["frames_out"] > 60
        assert metric(s, 'livefx_errors_total{kind="degraded"}') == 1
    finally:
        s.stop()


def test_an_encoder_that_raises_is_rebuilt_and_streaming_goes_on(clip) -> None:
    s = faulty_server("encode.vp8=raise@30-34")
    try:
        _, back = frames_back(s, clip, "none", after_s=3.5, window_s=1.0)
        assert back > 15
        assert metric(s, 'livefx_errors_total{kind="encoder"}') == 5
    finally:
        s.stop()


def test_an_encoder_that_keeps_failing_ends_its_session_with_the_reason(clip) -> None:
    s = faulty_server("encode=raise@20-")
    try:
        ended = until_the_session_ends(s, clip, "none")
        reason = ended[-1]["reason"] if ended else ""
        assert re.match(r"encoder failed (\d+) frames in a row: vp8 encoder: InjectedFault", reason)
        assert int(reason.split()[2]) >= 30
        assert (
            metric(s, 'livefx_sessions_ended_total{kind="sendrecv",reason="encoder failed"}') == 1
        )
    finally:
        s.stop()


def test_a_worker_that_dies_ends_its_session_and_the_server_serves_on(clip) -> None:
    s = faulty_server("worker=raise@15")
    try:
        ended = until_the_session_ends(s, clip, "blur")
        assert ended[-1]["reason"] == "worker failed: InjectedFault: failpoint worker (hit 15)"
        status, body, _ = http_request(s.url + "/health", "GET")
        assert status == 200 and json.loads(body)["sessions"] == 0
        assert metric(s, 'livefx_errors_total{kind="worker"}') == 1
    finally:
        s.stop()
