"""The ``livefx`` command: serve | process | bench | models.

Errors of LiveFX's own (``LiveFXError``) become one line on stderr and the error's exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from engine import __version__
from engine.config import (
    EFFECTS,
    GUIDES,
    X264_PRESETS,
    BudgetConfig,
    EffectConfig,
    EncoderConfig,
    InferenceConfig,
    MatteConfig,
    ModelConfig,
    PipelineConfig,
    ServerConfig,
)
from engine.errors import LiveFXError
from engine.models.registry import PERSON_MODEL_CHOICES, SEGMENTER_CHOICES

log = logging.getLogger("livefx")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 1")
    return value


def _add_pipeline_args(p: argparse.ArgumentParser) -> None:
    d_eff, d_mat, d_model, d_inf = EffectConfig(), MatteConfig(), ModelConfig(), InferenceConfig()
    g = p.add_argument_group("effect")
    g.add_argument(
        "--effect", default=d_eff.name, help=f"one of {', '.join(EFFECTS)} (default {d_eff.name})"
    )
    g.add_argument(
        "--strength", type=float, default=d_eff.strength, help="blur strength 0..1 (default 0.6)"
    )
    g.add_argument(
        "--background",
        default=None,
        help="replace: image or video file (looped); default samples/backgrounds/rocket.jpg",
    )
    g.add_argument(
        "--colour",
        "--color",
        default=d_eff.colour,
        help="colour: #rrggbb or green|blue|black|white|grey (default green, #00b140)",
    )
    g.add_argument(
        "--model",
        default=d_eff.model,
        help="gan: cartoon, enhance, or a path to an image-to-image .onnx (default cartoon)",
    )
    g.add_argument(
        "--region",
        default=d_eff.region,
        help="gan: frame (the whole picture) or person (the person only); default frame",
    )
    g.add_argument(
        "--gan-size",
        type=int,
        default=d_eff.gan_size,
        help="gan: run the generator with the frame's short side at most this many pixels and "
        f"upsample along the frame's edges; 0 = full size (default {d_eff.gan_size})",
    )
    g = p.add_argument_group("matte")
    g.add_argument("--threshold", type=float, default=d_mat.threshold, help="edge position 0..1")
    g.add_argument(
        "--feather", type=float, default=d_mat.feather, help="edge softness 0 (hard) .. 1 (raw)"
    )
    g.add_argument(
        "--smoothing", type=float, default=d_mat.smoothing, help="temporal smoothing 0 (off) .. 1"
    )
    g.add_argument(
        "--no-guided", action="store_true", help="bilinear matte upsampling, no guided filter"
    )
    g.add_argument(
        "--guide",
        default=d_mat.guide,
        choices=GUIDES,
        help=f"the guided filter's guide: the frame's luma or its colours (default {d_mat.guide})",
    )
    g = p.add_argument_group("model and budget")
    g.add_argument(
        "--segmenter",
        default=d_model.segmenter,
        help=f"segmentation model: {', '.join(SEGMENTER_CHOICES)} (default {d_model.segmenter}: "
        f"landscape when width/height ≥ {d_model.landscape_min_aspect})",
    )
    g.add_argument(
        "--landscape-min-aspect",
        type=float,
        default=d_model.landscape_min_aspect,
        help="aspect ratio at or above which auto picks the landscape model",
    )
    g.add_argument(
        "--person-model",
        default=d_model.person_model,
        choices=PERSON_MODEL_CHOICES,
        help="body prior (BlazePose) fused with the selfie matte so that objects beside or "
        f"behind the person are not cut out with them (default {d_model.person_model})",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=d_inf.threads,
        help=f"ONNX Runtime threads, 0 = one per core (default {d_inf.threads})",
    )
    g.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="cuda: the whole frame on the GPU on LiveFX's kernels; auto: cuda where a GPU and "
        "the kernels are present and the effect has a GPU path (default auto)",
    )
    g.add_argument(
        "--model-runtime",
        default="kernels",
        choices=("kernels", "tensorrt", "onnxruntime"),
        help="how the models run on the cuda backend: LiveFX's own kernels inside the frame's "
        "CUDA graph, TensorRT, or ONNX Runtime on the CPU (default kernels)",
    )
    g.add_argument(
        "--budget-ms",
        type=float,
        default=None,
        help="per-frame budget: quality steps down when frames take longer (default: off)",
    )


def _pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    return PipelineConfig(
        effect=EffectConfig(
            name=args.effect,
            strength=args.strength,
            background=args.background,
            colour=args.colour,
            model=args.model,
            region=args.region,
            gan_size=args.gan_size,
        ),
        matte=MatteConfig(
            threshold=args.threshold,
            feather=args.feather,
            smoothing=args.smoothing,
            guided=not args.no_guided,
            guide=args.guide,
        ),
        model=ModelConfig(
            segmenter=args.segmenter,
            landscape_min_aspect=args.landscape_min_aspect,
            person_model=args.person_model,
        ),
        inference=InferenceConfig(threads=args.threads),
        budget=BudgetConfig(budget_ms=args.budget_ms),
        backend=args.backend,
        model_runtime=args.model_runtime,
    )


def cmd_process(args: argparse.Namespace) -> int:
    from engine.process import format_summary, process_file

    summary = process_file(
        args.input,
        args.output,
        _pipeline_config(args),
        max_frames=args.max_frames,
        progress=False if args.json or args.quiet else None,
        preset=args.preset,
    )
    if not args.quiet or args.json:
        print(format_summary(summary, args.json))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from engine.models.registry import (
        BODY_MODELS,
        GENERATORS,
        SEGMENTERS,
        load_body_model,
        load_cpu_graph,
        load_generator,
        load_model,
    )

    if args.action == "build":
        from engine.models.build import build

        for line in build(args.wheel, args.out, args.check, args.npm_tarball):
            print(line)
        return 0
    shipped: list[tuple[str, str, str, Callable[[str], object]]] = [
        (s.name, f"{s.width}x{s.height}", s.filename, load_model) for s in SEGMENTERS.values()
    ]
    shipped += [  # the same networks folded for ONNX Runtime's CPU provider (models/fold.py)
        (s.name, f"{s.width}x{s.height}", s.cpu_filename, load_cpu_graph)
        for s in SEGMENTERS.values()
    ]
    shipped += [
        (b.name, f"{b.size}x{b.size}", b.filename, load_body_model) for b in BODY_MODELS.values()
    ]
    shipped += [(g.name, "any", g.filename, load_generator) for g in GENERATORS.values()]
    failed = 0
    for name, size, filename, load in shipped:
        try:
            load(name)  # reads the file and checks its sha256
            state = "ok"
        except LiveFXError as exc:
            state, failed = f"FAILED: {exc}", failed + 1
        print(f"{name:<10} {size:<7}  {filename:<40} {state}")
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    import os

    from engine.bench.load import parse_ramp
    from engine.bench.run import BenchConfig, Target, run
    from engine.errors import ConfigError

    targets = [Target(label=url, url=url) for url in args.urls]
    if (args.whip is None) != (args.whep is None):
        raise ConfigError("give --whip and --whep together")
    if args.whip is not None:
        targets.append(Target(label=f"{args.whip} → {args.whep}", whip=args.whip, whep=args.whep))

    def numbers(text: str, name: str, kind: type = float) -> list[Any]:
        try:
            return [kind(v) for v in text.replace("x", ",").split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"{name}: {text!r} is not a list of numbers") from None

    size = numbers(args.size, "size", int)
    if len(size) != 2:
        raise ConfigError(f"size: {args.size!r} is not WxH")
    code_at = numbers(args.code_at, "code-at") if args.code_at else None
    if code_at is not None and len(code_at) != 2:
        raise ConfigError(f"code-at: {args.code_at!r} is not X,Y")
    loss_text = str(args.loss).strip()
    loss = numbers(loss_text.rstrip("%"), "loss")
    if len(loss) != 1:
        raise ConfigError(f"loss: {args.loss!r} is not a share (0.05) or a percentage (5%)")
    share = loss[0] / 100 if loss_text.endswith("%") else loss[0]
    ramp = parse_ramp(args.sessions)
    sample = None
    if args.sample is not None:
        text = args.sample.strip()
        try:
            sample = int(text.split("/", 1)[1] if text.startswith("1/") else text)
        except (ValueError, IndexError):
            raise ConfigError(f"sample: {args.sample!r} is not 1/K") from None
    config = BenchConfig(
        targets=targets,
        sessions=[1] if ramp else numbers(args.sessions, "sessions", int),
        ramp=ramp,
        pre_encoded=args.pre_encoded,
        sample=sample,
        width=size[0],
        height=size[1],
        fps=args.fps,
        seconds=args.seconds,
        warmup=args.warmup,
        codec=args.codec,
        source=args.source,
        code_at=(code_at[0], code_at[1]) if code_at else None,
        loss=share,
        jitter_ms=args.jitter,
        delay_ms=args.delay,
        seed=args.seed,
        outage_ms=args.outage,
        outage_at_s=args.outage_at,
        jitter_buffer=args.client_jitter_buffer,
        browser=args.browser,
        token=args.token or os.environ.get("LIVEFX_TOKEN") or None,
    )
    return run(config, args.json, args.report)


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import secrets

    from engine.config import IceServer, is_loopback_host
    from engine.server.app import serve

    token = args.token if args.token is not None else os.environ.get("LIVEFX_TOKEN") or None
    if token == "auto":
        token = secrets.token_urlsafe(24)
    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_sessions=args.max_sessions,
        max_players=args.max_players,
        idle_timeout_s=args.idle_timeout,
        encoder=EncoderConfig(
            vp8_cpu_used=args.vp8_cpu_used,
            x264_preset=args.x264_preset,
            keyframe_interval=args.keyframe_interval,
            hw_codecs=args.hw_codecs,
        ),
        pipeline=_pipeline_config(args),
        mode=args.mode,
        token=token,
        no_auth=args.no_auth,
        cert=args.cert,
        key=args.key,
        ice_servers=tuple(IceServer.parse(text) for text in args.ice_server),
        allow_origins=tuple(args.allow_origin),
        whep_bitrate=args.whep_bitrate,
        connect_timeout_s=args.connect_timeout,
        max_pending_per_client=args.max_pending_per_client,
        offer_rate=args.offer_rate,
        workers=args.workers,
        admit_load=args.admit_load,
        batch_wait_ms=args.batch_wait_ms,
        shared_models=not args.no_shared_models,
    )
    if args.budget_ms is None and config.pipeline.budget.budget_ms is None:
        # Live video has a frame interval to keep: hold the budget of a 30 fps camera.
        from dataclasses import replace

        from engine.config import BudgetConfig

        config = replace(
            config, pipeline=replace(config.pipeline, budget=BudgetConfig(budget_ms=25.0))
        )
    from engine.pipeline import choose_backend

    choice = choose_backend(
        config.pipeline.backend, config.pipeline.effect.name, runtime=config.pipeline.model_runtime
    )
    print(f"livefx: {choice.describe()}", file=sys.stderr)
    if config.mode == "livefx":  # (bare-echo: aiortc's own codecs)
        from engine.server.rtc import hwcodec

        for line in hwcodec.choose(config.encoder.hw_codecs).lines():
            print(f"livefx: codec {line}", file=sys.stderr)
    if not is_loopback_host(config.host) and config.cert is None:
        print(
            f"livefx: warning: http://{config.host} is not a secure context: browsers on other "
            "machines will refuse the camera (give --cert and --key for HTTPS)",
            file=sys.stderr,
        )
    if config.token is None and not is_loopback_host(config.host):
        print(
            "livefx: warning: --no-auth: anyone who reaches this port can open sessions",
            file=sys.stderr,
        )
    asyncio.run(serve(config))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors (its own print the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"livefx: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="livefx", description="LiveFX: real-time person segmentation and video effects."
    )
    parser.add_argument("--version", action="version", version=f"livefx {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("process", help="process an image (PNG/JPEG) or a video file")
    p.add_argument("input", help="image or video to read")
    p.add_argument("output", help="file to write; a video's codec follows its extension")
    _add_pipeline_args(p)
    p.add_argument("--max-frames", type=_positive_int, default=None, help="stop after N frames")
    p.add_argument(
        "--preset",
        choices=X264_PRESETS,
        default=None,
        help="a video's encoder speed, x264's names (VP8 maps them onto its cpu-used; other "
        "codecs ignore it); default superfast",
    )
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=cmd_process)

    d_srv, d_enc = ServerConfig(), EncoderConfig()
    p = sub.add_parser("serve", help="serve the web client and WebRTC sessions")
    p.add_argument("--host", default=d_srv.host, help=f"address to bind (default {d_srv.host})")
    p.add_argument("--port", type=int, default=d_srv.port, help=f"port (default {d_srv.port})")
    p.add_argument(
        "--max-sessions",
        type=int,
        default=d_srv.max_sessions,
        help=f"sessions that run a pipeline: browsers, /offer, WHIP (default {d_srv.max_sessions})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d_srv.workers,
        help="frame workers serving every session's pipeline, round robin (default 0: a core each)",
    )
    p.add_argument(
        "--admit-load",
        type=float,
        default=d_srv.admit_load,
        help="refuse a new session (503 + Retry-After) when the machine's load with it would pass "
        f"this; 1.0 = every core busy, 0 = off (default {d_srv.admit_load:g})",
    )
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=d_srv.batch_wait_ms,
        help="the shared inference worker waits up to this long for other sessions' inputs to "
        f"batch (never when one session uses it; at most 2; default {d_srv.batch_wait_ms:g})",
    )
    p.add_argument(
        "--no-shared-models",
        action="store_true",
        help="each session runs its own models instead of the shared, batching worker",
    )
    p.add_argument(
        "--max-players",
        type=int,
        default=d_srv.max_players,
        help=f"WHEP players, all streams together (default {d_srv.max_players})",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=d_srv.idle_timeout_s,
        help="end a session after this many seconds without video",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=d_srv.connect_timeout_s,
        help="end a session whose peer has not connected within this many seconds",
    )
    p.add_argument(
        "--max-pending-per-client",
        type=int,
        default=d_srv.max_pending_per_client,
        help="sessions one client address may have still connecting",
    )
    p.add_argument(
        "--offer-rate",
        type=float,
        default=d_srv.offer_rate,
        help=f"offers per second per client address ({d_srv.offer_burst} at once)",
    )
    p.add_argument("--vp8-cpu-used", type=int, default=d_enc.vp8_cpu_used)
    p.add_argument("--x264-preset", default=d_enc.x264_preset)
    p.add_argument("--keyframe-interval", type=int, default=d_enc.keyframe_interval)
    p.add_argument(
        "--hw-codecs",
        default=d_enc.hw_codecs,
        help="auto: NVENC H.264 encode and NVDEC decode where they open (the reason is logged "
        "and in /stats), x264/libvpx otherwise; off: software only",
    )
    p.add_argument(
        "--whep-bitrate",
        type=int,
        default=d_srv.whep_bitrate,
        help="bits/s of a stream's shared WHEP encoder (players' REMB can lower it)",
    )
    p.add_argument(
        "--mode",
        default="livefx",
        choices=("livefx", "bare-echo"),
        help="bare-echo: aiortc's plain relay with its own encoders (a latency baseline)",
    )
    g = p.add_argument_group("security and reach")
    g.add_argument(
        "--token",
        default=None,
        help="Bearer token every session request needs (or LIVEFX_TOKEN); 'auto': a random one",
    )
    g.add_argument(
        "--no-auth",
        action="store_true",
        help="allow a non-loopback --host without a token (anyone reaching it can use it)",
    )
    g.add_argument("--cert", default=None, help="HTTPS certificate chain (PEM); needs --key")
    g.add_argument("--key", default=None, help="private key of --cert (PEM)")
    g.add_argument(
        "--ice-server",
        action="append",
        default=[],
        metavar="URL[,USER,CREDENTIAL]",
        help="STUN/TURN server for the server and its clients (repeatable)",
    )
    g.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a web origin allowed to call the API cross-site, or '*' (repeatable; default none)",
    )
    _add_pipeline_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "bench",
        help="round trips of any WebRTC endpoint, frame by frame (codes in the picture)",
        description="Measure the round trip of an endpoint that takes an SDP offer by HTTP POST "
        "and sends the picture back (LiveFX's /offer, an echo), or of a WHIP/WHEP pair. Several "
        "URLs are measured interleaved. See docs/bench.md.",
    )
    p.add_argument("urls", nargs="*", metavar="URL", help="offer endpoints (application/sdp)")
    p.add_argument("--whip", default=None, help="publish to this WHIP endpoint …")
    p.add_argument("--whep", default=None, help="… and play from this WHEP endpoint")
    p.add_argument(
        "--sessions",
        default="1",
        help="concurrent sessions, a sweep (1,2,4,8), or a ramp to the knee: ramp, ramp:1..64",
    )
    p.add_argument(
        "--pre-encoded",
        dest="pre_encoded",
        action="store_true",
        default=None,
        help="send packets encoded once before the run (default for N > 1, sweeps and ramps)",
    )
    p.add_argument(
        "--live-encode",
        dest="pre_encoded",
        action="store_false",
        help="encode every frame of every session in the client (default for N = 1)",
    )
    p.add_argument(
        "--sample",
        default=None,
        metavar="1/K",
        help="read the code of one received frame in K (default: all up to 240 frames/s in "
        "all, fewer above; every frame is counted)",
    )
    p.add_argument("--size", default="640x480", help="WxH of the frames sent (default 640x480)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=10.0, help="measured per run (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="not measured, per run (default 2)")
    p.add_argument("--codec", choices=("vp8", "h264"), default="vp8")
    p.add_argument("--source", default=None, help="a video or photo to send (default: a sample)")
    p.add_argument(
        "--code-at",
        default=None,
        metavar="X,Y",
        help="centre of the frame code, fractions of the frame (on the person)",
    )
    p.add_argument("--loss", default="0", help="share of media packets lost each way: 0.05, 5%%")
    p.add_argument("--delay", type=float, default=0.0, help="ms added each way")
    p.add_argument("--jitter", type=float, default=0.0, help="± ms on top of the delay")
    p.add_argument("--seed", type=int, default=0, help="of the impairment")
    p.add_argument("--outage", type=float, default=0.0, help="ms of total loss, both ways, once")
    p.add_argument("--outage-at", type=float, default=5.0, help="s after media starts (default 5)")
    p.add_argument(
        "--client-jitter-buffer",
        choices=("standard", "marker"),
        default="standard",
        help="aiortc's own (default), or release frames on the marker bit",
    )
    p.add_argument("--browser", action="store_true", help="measure in headless Chromium")
    p.add_argument("--token", default=None, help="Bearer token (or LIVEFX_TOKEN)")
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.add_argument("--report", default=None, metavar="DIR", help="write report.html and plots")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("models", help="list and verify the shipped models, or rebuild them")
    p.add_argument("action", nargs="?", choices=("list", "build"), default="list")
    p.add_argument("--wheel", type=Path, default=None, help="mediapipe wheel (default: download)")
    p.add_argument(
        "--npm-tarball", type=Path, default=None, help="@mediapipe/pose tarball (default: npm pack)"
    )
    p.add_argument("--out", type=Path, default=None, help="also write the converted models here")
    p.add_argument("--check", action="store_true", help="fail unless equal to the shipped files")
    p.set_defaults(func=cmd_models)
    return parser


def _quiet_native_logs(verbose: int) -> None:
    """OpenCV and FFmpeg print their own diagnostics to stderr; LiveFX reports errors itself."""
    import cv2

    if verbose < 2:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_native_logs(args.verbose)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
        return code
    except LiveFXError as exc:
        print(f"livefx: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("livefx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
