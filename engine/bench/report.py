"""``livefx bench --report DIR``: PNG plots (matplotlib, Agg) and one self-contained report.html.

- ``rtt_cdf.png``: the round trip's distribution, one curve per run (target × sessions);
- ``rtt_time.png``: the round trip of each matched frame against when it was sent;
- ``stages.png``: each run's median split — client encode, server stages (LiveFX's own
  ``/stats``), client decode, the client's jitter buffer, and the rest (network, the server's
  decode/encode and transport);
- ``scaling.png`` (a sweep, ``--sessions 1,2,4,8``): round trip and the share of frames that came
  back against the number of sessions;
- ``load.png`` (a ramp, ``--sessions ramp``): fps out, frames not back, round trip, the server's
  CPU and GPU time per frame against the number of sessions, the knee marked.

report.html embeds them (base64) with the tables, the configuration and the machine, so it can be
mailed or attached as one file.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np


def _label(run: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    sweep = len({r["sessions"] for r in runs}) > 1
    target = run["target"] if len(run["target"]) <= 60 else "…" + run["target"][-59:]
    return f"{target} ×{run['sessions']}" if sweep else target


def _plots(result: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    written: list[Path] = []

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for run in runs:
        rtts = np.sort(np.array([rtt for _, rtt in run["series"]], dtype=float))
        if rtts.size:
            ax.plot(rtts, np.arange(1, rtts.size + 1) / rtts.size, label=_label(run, runs))
    ax.set_xlabel("round trip (ms)")
    ax.set_ylabel("share of matched frames")
    ax.set_title("Round trip, cumulative")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    written.append(_save(fig, out / "rtt_cdf.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    for run in runs:
        pts = np.array(run["series"], dtype=float).reshape(-1, 2)
        if pts.size:
            ax.plot(pts[:, 0], pts[:, 1], ".", markersize=2, label=_label(run, runs))
    ax.set_xlabel("sent at (s into the run; rounds of several targets overlap)")
    ax.set_ylabel("round trip (ms)")
    ax.set_title("Round trip over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right", markerscale=4)
    written.append(_save(fig, out / "rtt_time.png"))

    split = [(run, run["decomposition"]) for run in runs if run.get("decomposition")]
    if split:
        parts = [
            ("client_encode_ms", "client encode"),
            ("client_own_ms", "client's own (the tool)"),
            ("server_stages_ms", "server stages"),
            ("client_decode_ms", "client decode"),
            ("client_jitter_buffer_ms", "client jitter buffer (≈ 1 frame, standard)"),
            ("network_server_io_ms", "network, server decode/encode/transport"),
        ]
        fig, ax = plt.subplots(figsize=(9, 1.9 + 0.45 * len(split)), dpi=110)
        labels = [_label(run, runs) for run, _ in split]
        left = np.zeros(len(split))
        for key, name in parts:
            values = np.array([d[key] for _, d in split], dtype=float)
            ax.barh(labels, values, left=left, label=name)
            left += values
        ax.set_xlabel("median round trip (ms)")
        ax.set_title("Where the round trip goes")
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=7)
        rows = 1 + (len(parts) - 1) // 3
        written.append(
            _save(
                fig, out / "stages.png", bottom=(0.06 + 0.05 * rows) * 4 / (1.9 + 0.45 * len(split))
            )
        )

    if result.get("load"):
        from engine.bench.load import plot

        written.append(plot(result, out))
    counts = sorted({r["sessions"] for r in runs})
    if len(counts) > 1:
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), dpi=110, sharex=True)
        for target in dict.fromkeys(r["target"] for r in runs):
            mine = sorted((r for r in runs if r["target"] == target), key=lambda r: r["sessions"])
            n = [r["sessions"] for r in mine]
            short = target if len(target) <= 50 else "…" + target[-49:]
            top.plot(n, [r["rtt_ms"]["median"] for r in mine], "o-", label=f"{short} median")
            top.plot(n, [r["rtt_ms"]["p95"] for r in mine], "o--", label=f"{short} p95")
            bottom.plot(n, [100 * r["dropped_share"] for r in mine], "o-", label=short)
        top.set_ylabel("round trip (ms)")
        p95s = [r["rtt_ms"]["p95"] for r in runs if r["rtt_ms"]["p95"]]
        if p95s and max(p95s) > 20 * min(p95s):
            top.set_yscale("log")
        top.set_title("Scaling with concurrent sessions")
        top.grid(alpha=0.3)
        top.legend(fontsize=7)
        bottom.set_ylabel("frames not back (%, counted)")
        bottom.set_xlabel("concurrent sessions")
        bottom.set_xticks(counts)
        bottom.grid(alpha=0.3)
        written.append(_save(fig, out / "scaling.png"))
    return written


def _save(fig: Any, path: Path, bottom: float = 0.0) -> Path:
    fig.tight_layout(rect=(0, min(bottom, 0.6), 1, 1))
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _row(cells: list[Any], tag: str = "td") -> str:
    return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def write_report(result: dict[str, Any], out: Path) -> list[Path]:
    """Write the plots, report.html and result.json into ``out`` (made if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(result, out)
    cfg, floor = result["config"], result["floor"]

    def ms(v: Any) -> str:
        return "–" if v is None else f"{v:.1f}"

    rows = [
        _row(["target", "sessions", "median ms", "p95", "p99", "max", "matched / sent",
              "fps out", "longest freeze ms", "notes"], "th")
    ]  # fmt: skip
    for r in result["runs"]:
        rtt = r["rtt_ms"]
        notes = list(r["conditions"]) + (
            ["came back at " + ", ".join(r["resized"])] if r["resized"] else []
        )
        rows.append(
            _row([r["target"], r["sessions"], ms(rtt["median"]), ms(rtt["p95"]), ms(rtt["p99"]),
                  ms(rtt["max"]), f"{r['matched']} / {r['sent']}", r["fps_out"],
                  ms(r["longest_freeze_ms"]), "; ".join(notes)])
        )  # fmt: skip
    split_rows = []
    for r in result["runs"]:
        d = r.get("decomposition")
        if d and r.get("server"):
            stages = ", ".join(f"{k} {v}" for k, v in r["server"]["stages_ms"].items())
            split_rows.append(
                _row([r["target"], r["sessions"], d["client_encode_ms"], d["server_stages_ms"],
                      d["client_decode_ms"], d["client_jitter_buffer_ms"],
                      d["network_server_io_ms"], stages])
            )  # fmt: skip
    images = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{p.name}</figcaption></figure>'
        for p in plots
    )
    load_table = ""
    if result.get("load"):
        from engine.bench.load import table as load_text

        load_table = f"<h2>Load ramp</h2><pre>{html.escape(load_text(result))}</pre>"
    split_table = (
        "<h2>Median split (LiveFX servers)</h2><table>"
        + _row(["target", "sessions", "client encode", "server stages", "client decode",
                "client jitter buffer", "network, server I/O", "server stages (ms)"], "th")
        + "".join(split_rows)
        + "</table>"
        if split_rows
        else ""
    )  # fmt: skip
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>livefx bench report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }}
table {{ border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-size: 0.85rem; }}
td, th {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 0.6rem 0; }} img {{ max-width: 100%; }}
pre {{ background: #f4f4f4; padding: 0.6rem; font-size: 0.75rem; overflow: auto; }}
</style></head><body>
<h1>livefx bench</h1>
<p>{html.escape(cfg["size"])} at {cfg["fps"]:g} fps, {html.escape(cfg["codec"])},
{cfg["seconds"]:g} s per run after {cfg["warmup"]:g} s of warm-up;
client: {html.escape(cfg["client"])} ({html.escape(cfg["jitter_buffer"])} jitter buffer).
Round trip: from the moment a frame is handed to the client's sender to the moment it comes
out of the client's receiver, matched by the number written into its picture.
Client floor (its own encode + decode, both ways):
{floor["floor_ms"]} ms (encode {floor["encode_ms"]}, decode {floor["decode_ms"]}).</p>
{load_table}
<table>{"".join(rows)}</table>
{split_table}
{images}
<h2>Configuration and machine</h2>
<pre>{html.escape(json.dumps({"config": cfg, "machine": result["machine"],
                          "server": result["server"]}, indent=2))}</pre>
</body></html>
"""  # fmt: skip
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    data = out / "result.json"
    data.write_text(json.dumps(result), encoding="utf-8")
    return [report, data, *plots]
