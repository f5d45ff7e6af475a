"""The soak benchmark's short run (``benchmarks/soak.py``, 30 s): sessions through a real server
while its RSS, descriptors and threads are sampled; the long run (an hour) is the benchmark's."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_a_thirty_second_soak_keeps_serving_and_gives_everything_back(tmp_path) -> None:
    out = tmp_path / "soak"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--duration", "30",
         "--sessions", "2", "--size", "320x240", "--interval", "2.5", "--warmup", "8",
         "--out", str(out), "--quiet"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    summary = json.loads((out / "soak.json").read_text())
    rows = list(csv.DictReader((out / "soak.csv").open()))
    assert len(rows) >= 10
    assert summary["crashes"] == 0 and summary["server_exit"] == 0
    assert summary["server_errors"] == []
    assert all(float(row["fps_back"]) > 20 for row in rows[2:]), rows  # two sessions at 30
    low, high = summary["fds_range"]
    assert high - low <= 2, summary  # descriptors flat while the sessions run
    # Once the sessions are deleted, what they held is given back.
    assert summary["after"]["fds"] <= summary["idle"]["fds"], summary
    # Threads: each session's (worker, decoder, and the codecs' own libvpx threads) are gone;
    # the shared pool may have grown by one past its idle size (asyncio's default executor
    # starts its threads as needed). A thread kept per session (two here) fails this.
    assert summary["after"]["threads"] < summary["threads_range"][0], summary
    assert summary["after"]["threads"] <= summary["idle"]["threads"] + 1, summary
    assert (out / "soak.png").stat().st_size > 10_000
