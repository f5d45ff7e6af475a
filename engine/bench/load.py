"""``livefx bench URL --sessions ramp``: how many sessions a server carries, and where it breaks.

The ramp adds sessions to one offer URL, step by step (N = 1, 2, 3, 4, 6, 8, 12, 16, 24, 32,
48, 64 within ``ramp:LO..HI``), keeping those already running. Each step waits ``--warmup``,
measures ``--seconds`` over all N sessions, and stops the ramp when

- more than ``drop_limit`` (2 %) of the frames sent in the window did not come back (counted on
  every received frame, read or not), or
- the round trip's p95 is above ``p95_factor`` (2) × the first step's p95, or
- a session could not start (``503``: the server is full) or ended (the server closed it, the
  connection failed, no media came back).

The knee is the last N that passed. Sessions send pre-encoded packets by default
(``engine.bench.preencode``: no encoder in the client) and read the code of a sample of the
returned frames; against a LiveFX server each step also has the server's CPU (its ``/stats``
``process`` entry: % of one core and of all its cores) and GPU time per frame (the cuda
pipeline's, from ``/stats``; ``-`` on the cpu backend), and this client's own CPU, which says
whether the client, not the server, was the limit.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from engine.bench import peer
from engine.bench.preencode import EncodedLoop, encode_loop
from engine.bench.run import (
    GRACE_S,
    STATS_EVERY_S,
    BenchConfig,
    StatsPoller,
    _config_json,
    _loop_json,
    codec_floor,
    emit,
    machine_json,
    merge,
    server_info,
    source_frames,
)
from engine.errors import ConfigError, EndpointError

RAMP_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def parse_ramp(text: str) -> tuple[int, int] | None:
    """``ramp`` → (1, 64); ``ramp:LO..HI`` → (LO, HI); anything else → None (a list of N)."""
    text = text.strip().lower()
    if text == "ramp":
        return (1, 64)
    if not text.startswith("ramp:"):
        return None
    lo, sep, hi = text[5:].partition("..")
    try:
        if not sep:
            return (1, int(lo))
        return (int(lo), int(hi))
    except ValueError:
        raise ConfigError(f"sessions: {text!r} is not ramp, ramp:HI or ramp:LO..HI") from None


def counts(lo: int, hi: int) -> list[int]:
    """The session counts of a ramp from ``lo`` to ``hi``: RAMP_COUNTS between them, and both."""
    return sorted({lo, hi, *(n for n in RAMP_COUNTS if lo <= n <= hi)})


def stop_reason(
    step: dict[str, Any], first: dict[str, Any], drop_limit: float, p95_factor: float
) -> str | None:
    """Why the ramp stops at this step (None: it passed). ``first`` is the ramp's first step,
    whose p95 the others are held to."""
    if step["conditions"]:
        return "; ".join(step["conditions"])
    if step["matched"] == 0:
        return "no frame came back with a readable code"
    if step["dropped_share"] > drop_limit:
        return (
            f"drops {100 * step['dropped_share']:.1f} % > {100 * drop_limit:g} % "
            f"at {step['sessions']} sessions"
        )
    p95, base = step["rtt_ms"]["p95"], first["rtt_ms"]["p95"]
    if p95 is not None and base is not None and p95 > p95_factor * base:
        return (
            f"round trip p95 {p95:.1f} ms > {p95_factor:g} × {base:.1f} ms (the first step's) "
            f"at {step['sessions']} sessions"
        )
    return None


def step_figures(
    n: int,
    summaries: list[dict[str, Any]],
    seconds: float,
    server: dict[str, Any] | None,
    client_cpu_pct: float,
    late: int,
    conditions: list[str],
) -> dict[str, Any]:
    """One step of the ramp: what its N sessions saw together in the measured window."""
    run = merge(summaries)
    fps = [s["fps_out"] for s in summaries]
    cpu = (server or {}).get("cpu") or {}
    return {
        "sessions": n,
        "sample": run["sample"],
        "sent": run["sent"],
        "received": run["received"],
        "matched": run["matched"],
        "dropped": run["dropped"],
        "dropped_share": run["dropped_share"],
        "fps_in": round(run["sent"] / max(n * seconds, 1e-6), 1),
        "fps_out": round(statistics.mean(fps), 1) if fps else 0.0,
        "fps_out_total": round(sum(fps), 1),
        "rtt_ms": run["rtt_ms"],
        "server_cpu_pct": cpu.get("one_core_pct"),
        "server_cpu_all_pct": cpu.get("all_cores_pct"),
        "server_cores": cpu.get("cores"),
        "gpu_ms": (server or {}).get("gpu_ms"),
        "client_cpu_pct": round(client_cpu_pct, 1),
        "late": late,
        "conditions": sorted({*run["conditions"], *conditions}),
    }


async def ramp(
    config: BenchConfig, on_step: Any = None, frames: list[Any] | None = None
) -> dict[str, Any]:
    """Ramp sessions against ``config``'s one offer URL (see the module's text)."""
    from engine.server import rtc

    assert config.ramp is not None
    target = config.targets[0]
    frames = frames or source_frames(config)
    layout = config.layout()
    rtc.install_jitter_buffer(low_latency=config.jitter_buffer == "marker")
    rtc.install_encoders(None)  # aiortc's own encoders (live-encode), as a plain client
    peer.codec_times.install()
    floor = codec_floor(config, frames)
    loop: EncodedLoop | None = (
        encode_loop(frames, layout, config.fps, config.codec) if config.uses_pre_encoded else None
    )
    steps: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    sessions_out: list[dict[str, Any]] = []
    stopped: str | None = None
    running: list[peer.BenchSession] = []
    timeout = aiohttp.ClientTimeout(total=peer.HTTP_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        servers = {target.origin: await server_info(http, target.origin, config.token)}
        livefx = servers[target.origin]["livefx"]
        try:
            for n in counts(*config.ramp):
                k = config.sample_for(n)
                base = peer.SessionConfig(
                    url=target.url, fps=config.fps, codec=config.codec, token=config.token,
                    sample=k, patient=False,
                )  # fmt: skip
                conditions: list[str] = []
                while len(running) < n and not conditions:
                    s = peer.BenchSession(
                        replace(base, impairment=config.impairment(len(running))),
                        frames, layout, http, loop,
                    )  # fmt: skip
                    running.append(s)
                    try:
                        await s.start()
                    except EndpointError as exc:
                        if not steps and len(running) == 1:
                            raise  # the endpoint cannot be used at all: an error, not a knee
                        full = getattr(exc, "status", None) == 503
                        said = str(exc).split("refused the offer: ", 1)[-1]
                        conditions.append(
                            f"server full at session {len(running)} ({said})"
                            if full
                            else f"session {len(running)}: {exc}"
                        )
                        running.pop()
                    else:
                        if s.measurement.condition is not None:
                            conditions.append(f"session {len(running)}: {s.measurement.condition}")
                if conditions:
                    stopped = "; ".join(conditions)
                    break
                for s in running:
                    s.measurement.sample = k
                poller = StatsPoller(http, target.origin, config.token) if livefx else None
                ids = [i for s in running for i in s.session_ids]
                start = time.perf_counter() + config.warmup
                end = start + config.seconds
                late0 = sum(getattr(s.camera, "late", 0) for s in running)
                cpu0: tuple[float, float] | None = None
                while (now := time.perf_counter()) < end + GRACE_S:
                    await asyncio.sleep(min(STATS_EVERY_S, max(end + GRACE_S - now, 0.01)))
                    now = time.perf_counter()
                    if now >= start and cpu0 is None:
                        cpu0 = (now, time.process_time())
                    if poller is not None and start <= now <= end + STATS_EVERY_S:
                        await poller.poll(ids)
                client_cpu = (
                    100 * (time.process_time() - cpu0[1]) / max(time.perf_counter() - cpu0[0], 1e-6)
                    if cpu0
                    else 0.0
                )
                summaries = [
                    s.measurement.summary(start, end, s.sent_size, GRACE_S) for s in running
                ]
                ended = sum(
                    1
                    for s in running
                    if any(pc.connectionState in ("closed", "failed") for pc in s.pcs)
                )
                if ended:
                    conditions.append(f"{ended} session(s) ended (closed by the server or failed)")
                for summary in summaries:
                    if summary["received"] == 0 and not summary["condition"]:
                        summary["condition"] = "no media came back"
                srv = poller.summary() if poller is not None else None
                late = sum(getattr(s.camera, "late", 0) for s in running) - late0
                step = step_figures(n, summaries, config.seconds, srv, client_cpu, late, conditions)
                reason = stop_reason(step, steps[0] if steps else step, config.drop_limit,
                                     config.p95_factor)  # fmt: skip
                step["passed"] = reason is None
                steps.append(step)
                series = [pt for one in summaries for pt in one["series"]][:20_000]
                run = {"target": target.label, "sessions": n, **merge(summaries), "server": srv,
                       "client": None, "decomposition": None, "above_floor_ms": None,
                       "series": series}  # fmt: skip
                runs.append(run)
                for i, one in enumerate(summaries):
                    sessions_out.append(
                        {"target": target.label, "run_sessions": n, "session": i,
                         **{key: v for key, v in one.items() if key != "series"}}
                    )  # fmt: skip
                if on_step is not None:
                    on_step(step)
                if reason is not None:
                    stopped = reason
                    break
            else:
                stopped = f"reached {config.ramp[1]} sessions (the ramp's end) with no limit hit"
        finally:
            await asyncio.gather(*(s.stop() for s in running), return_exceptions=True)
    passed = [s["sessions"] for s in steps if s["passed"]]
    all_rtts = [rtt for r in runs for _, rtt in r["series"]]
    return {
        "load": {
            "steps": steps,
            "knee": passed[-1] if passed else None,
            "stopped": stopped,
            "first_p95_ms": steps[0]["rtt_ms"]["p95"] if steps else None,
            "drop_limit": config.drop_limit,
            "p95_factor": config.p95_factor,
        },
        "rtt_ms": peer.percentiles(all_rtts),
        "sessions": sessions_out,
        "runs": runs,
        "config": _config_json(config, layout, 1),
        "server": servers,
        "floor": floor,
        "pre_encoded": _loop_json(loop),
        "machine": machine_json(),
    }


# -- output --------------------------------------------------------------------------------------


def _v(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


HEADER = (
    f"  {'N':>3} {'fps in':>6} {'fps out':>7} {'total':>6} {'drops':>6} {'median':>7} "
    f"{'p95':>7} {'srv CPU':>8} {'of all':>7} {'GPU':>6} {'client':>7} {'codes':>5}  "
)
UNITS = (
    f"  {'':>3} {'/sess':>6} {'/sess':>7} {'fps':>6} {'%':>6} {'ms':>7} {'ms':>7} "
    f"{'%1 core':>8} {'cores %':>7} {'ms/fr':>6} {'CPU %':>7} {'read':>5}"
)


def step_line(step: dict[str, Any]) -> str:
    rtt = step["rtt_ms"]
    mark = "ok" if step.get("passed") else "STOP"
    return (
        f"  {step['sessions']:>3} {step['fps_in']:>6.1f} {step['fps_out']:>7.1f} "
        f"{step['fps_out_total']:>6.0f} {100 * step['dropped_share']:>6.1f} "
        f"{_v(rtt['median']):>7} {_v(rtt['p95']):>7} {_v(step['server_cpu_pct'], 0):>8} "
        f"{_v(step['server_cpu_all_pct'], 0):>7} {_v(step['gpu_ms'], 2):>6} "
        f"{_v(step['client_cpu_pct'], 0):>7} {'1/' + str(step['sample']):>5}  {mark}"
    )


def progress_line(step: dict[str, Any]) -> str:
    return (
        f"ramp: {step['sessions']} sessions: {step['fps_out']:.1f} fps out each, "
        f"{100 * step['dropped_share']:.1f} % not back, p95 {_v(step['rtt_ms']['p95'])} ms"
        + ("" if step.get("passed") else " (stop)")
    )


def table(result: dict[str, Any]) -> str:
    cfg, load = result["config"], result["load"]
    loop = result.get("pre_encoded")
    sending = (
        f"pre-encoded {loop['codec']} ({loop['frames']}-frame loop, {loop['mbit_s']} Mbit/s)"
        if loop
        else f"{cfg['codec']} encoded live by the client"
    )
    lines = [
        f"livefx bench ramp: {cfg['targets'][0]['url']}",
        f"{cfg['size']} at {cfg['fps']:g} fps, {sending}; {cfg['seconds']:g} s per step after "
        f"{cfg['warmup']:g} s; stop past {100 * load['drop_limit']:g} % drops or p95 > "
        f"{load['p95_factor']:g} × the first step's",
        "",
        HEADER,
        UNITS,
    ]
    lines += [step_line(s) for s in load["steps"]]
    knee = load["knee"]
    lines.append("")
    lines.append(
        f"knee: {knee} concurrent sessions" if knee else "knee: none (the first step failed)"
    )
    lines.append(f"stopped: {load['stopped']}")
    return "\n".join(lines)


def plot(result: dict[str, Any], out: Path) -> Path:
    """``load.png``: fps out, drops, round trip, server CPU and GPU time against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    load = result["load"]
    steps = load["steps"]
    n = [s["sessions"] for s in steps]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), dpi=110, sharex=True)
    (fps_ax, drop_ax), (rtt_ax, cpu_ax) = axes
    fps_ax.plot(n, [s["fps_out"] for s in steps], "o-", label="fps out per session")
    fps_ax.axhline(result["config"]["fps"], color="grey", lw=0.8, ls=":", label="fps sent")
    fps_ax.set_ylabel("fps out per session")
    total = fps_ax.twinx()
    total.plot(n, [s["fps_out_total"] for s in steps], "s--", color="tab:green")
    total.set_ylabel("fps out, all sessions", color="tab:green")
    fps_ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    drop_ax.plot(n, [100 * s["dropped_share"] for s in steps], "o-", color="tab:red")
    drop_ax.axhline(100 * load["drop_limit"], color="grey", lw=0.8, ls=":", label="limit")
    drop_ax.set_ylabel("frames not back (%)")
    drop_ax.legend(fontsize=7)
    rtt_ax.plot(n, [s["rtt_ms"]["median"] for s in steps], "o-", label="median")
    rtt_ax.plot(n, [s["rtt_ms"]["p95"] for s in steps], "o--", label="p95")
    if load["first_p95_ms"]:
        rtt_ax.axhline(load["p95_factor"] * load["first_p95_ms"], color="grey", lw=0.8, ls=":",
                       label=f"{load['p95_factor']:g} × first p95")  # fmt: skip
    rtt_ax.set_ylabel("round trip (ms)")
    rtt_ax.legend(fontsize=7)
    cpu = [(s["sessions"], s["server_cpu_all_pct"]) for s in steps if s["server_cpu_all_pct"]]
    if cpu:
        cpu_ax.plot(*zip(*cpu, strict=True), "o-", label="server CPU, % of all cores")
    cpu_ax.plot(n, [s["client_cpu_pct"] for s in steps], "o:", label="client CPU, % of one core")
    cpu_ax.set_ylabel("CPU (%)")
    gpu = [(s["sessions"], s["gpu_ms"]) for s in steps if s["gpu_ms"] is not None]
    if gpu:
        g = cpu_ax.twinx()
        g.plot(*zip(*gpu, strict=True), "s--", color="tab:purple")
        g.set_ylabel("GPU ms per frame", color="tab:purple")
    cpu_ax.legend(fontsize=7)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        if load["knee"]:
            ax.axvline(load["knee"], color="tab:orange", lw=1, alpha=0.6)
    for ax in axes[1]:
        ax.set_xlabel("concurrent sessions")
        ax.set_xticks(n)
    fig.suptitle(f"Load ramp: knee at {load['knee']} sessions ({load['stopped']})", fontsize=9)
    fig.tight_layout()
    path = out / "load.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def run(config: BenchConfig, as_json: bool, report_dir: str | None) -> int:
    def progress(step: dict[str, Any]) -> None:
        if not as_json:
            print(progress_line(step), file=sys.stderr, flush=True)

    result = asyncio.run(ramp(config, on_step=progress))
    emit(result, table, as_json, report_dir)
    if not result["load"]["steps"] or all(s["matched"] == 0 for s in result["load"]["steps"]):
        raise EndpointError(
            f"no frame came back with a readable code ({result['load']['stopped']})"
        )
    return 0
