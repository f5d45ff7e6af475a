"""The LiveFX server: routes, signalling, the session and stream registries, on aiohttp.

HTTP and WebSocket on one port (HTTPS/WSS with ``--cert/--key``); every route is listed in
docs/protocol.md:

  GET  /                         the web client (``?view=output``, ``?view=whep&stream=NAME``)
  GET  /health                   liveness: {"status": "ok", ...}
  GET  /stats                    every session's and stream's stats
  POST /offer?SETTINGS           application/sdp offer → 201 answer, Location: /sessions/ID
  POST /whip/NAME?SETTINGS       WHIP publish (RFC 9725), engine/server/whip.py
  POST /whep/NAME                WHEP play
  PATCH /sessions/ID             ?SETTINGS, or a trickle-ice-sdpfrag body (WHIP/WHEP)
  POST /sessions/ID/background   an image for ``background=upload``
  DELETE /sessions/ID            end a session → 200
  GET  /ws                       WebSocket signalling

Cross-cutting rules (errors, CORS, the token) are middleware (engine/server/middleware.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import math
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np
from aiohttp import web

from engine import __version__
from engine.config import (
    GENERATOR_NAMES,
    PipelineConfig,
    ServerConfig,
    describe,
    update,
)
from engine.errors import ConfigError, InputError, LiveFXError
from engine.inference.batch import SharedModels
from engine.server import middleware, rtc, sdp, signalling, whip
from engine.server.limits import OfferLimiter
from engine.server.metrics import Metrics
from engine.server.middleware import Full, HttpError
from engine.server.pool import FramePool
from engine.server.session import Session, slot_of
from engine.server.stream import Stream

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web_client"
BACKGROUNDS_DIR = Path(__file__).resolve().parent.parent.parent / "samples" / "backgrounds"
STATIC = {
    "/": ("index.html", "text/html"),
    "/index.html": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
MAX_UPLOAD_PIXELS = 40_000_000
RETRY_FULL_S = 5  # Retry-After of an offer refused because the machine is at capacity
STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def shipped_backgrounds() -> list[str]:
    return sorted(p.stem for p in BACKGROUNDS_DIR.glob("*.jpg"))


class LiveFXServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.streams: dict[str, Stream] = {}
        self.port = config.port
        self.started = time.monotonic()
        self.dtls_failures: list[str] = []
        self.ended: deque[dict[str, Any]] = deque(maxlen=20)  # the last sessions that ended
        self.limiter = OfferLimiter(config.offer_rate, config.offer_burst)
        self.metrics = Metrics()
        self._decodes = asyncio.Semaphore(2)  # background uploads decoding at once
        self._upload_lock = threading.Lock()
        self._quiet = middleware.QuietBadRequests(self.metrics.errors.labels("bad_http").inc)
        self.metrics.attach(self)
        self.draining = False
        self._watchers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        # Every session's frames on a few workers (one per core), its segmenter on the shared
        # inference worker of its model and size: engine/server/pool.py, engine/inference/batch.py.
        self.pool = FramePool(config.workers)
        self.models = SharedModels(wait_ms=config.batch_wait_ms) if config.shared_models else None
        self.app = self._make_app()

    # -- life cycle -------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[
                middleware.cors(self.config),
                middleware.errors,
                middleware.count_errors(self.metrics),
                middleware.auth(self.config),
            ],
            client_max_size=self.config.max_upload_bytes,
        )
        r = app.router
        for path in STATIC:
            r.add_get(path, self.static)
        r.add_get("/favicon.ico", self.no_content)
        r.add_get("/health", self.health_route)
        r.add_get("/stats", self.stats_route)
        r.add_get("/metrics", self.metrics_route)
        r.add_post("/offer", self.offer)
        r.add_route("OPTIONS", "/offer", self.options)
        r.add_get("/ws", functools.partial(signalling.websocket, self), allow_head=False)
        whip.add_routes(r, self)
        r.add_post("/sessions/{id}/background", self.background)
        return app

    async def start(self) -> int:
        livefx = self.config.mode == "livefx"
        if self.models is not None and livefx:  # before the first session's first frame
            threading.Thread(target=self.models.warm, name="livefx-warm", daemon=True).start()
        rtc.install_encoders(self.config.encoder if livefx else None)
        rtc.install_jitter_buffer(low_latency=livefx)
        rtc.install_dtls()
        rtc.configure_ice(self.config.host)
        rtc.encoders.encode_observers.append(self.metrics.encode_seconds.observe)
        errors = self.metrics.errors
        rtc.encoders.encode_error_observers.append(lambda _: errors.labels("encoder").inc())
        logging.getLogger("aiohttp.server").addFilter(self._quiet)
        rtc.encoders.install_decode_timing(
            lambda start, end, _: self.metrics.decode_seconds.observe(end - start)
        )
        self.dtls_failures = rtc.dtls_check()
        if self.dtls_failures:
            log.warning(
                "DTLS will fail with peers using %s certificates (this OpenSSL cannot, or "
                "OPENSSL_CONF=%s did not add the P-224 group)",
                ", ".join(self.dtls_failures),
                os.environ.get("OPENSSL_CONF"),
            )
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = _listen(self.config.host, self.config.port)
        self.port = int(sock.getsockname()[1])
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl_context())
        await site.start()
        log.info(
            "LiveFX %s serving on %s://%s:%d (%s)",
            __version__,
            self.config.scheme,
            self.config.host,
            self.port,
            self.config.mode,
        )
        return self.port

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.config.cert is None or self.config.key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.config.cert, self.config.key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cert/key: cannot load {self.config.cert}: {exc}") from None
        return ctx

    async def stop(self, timeout: float = 4.0) -> int:
        """Drain: refuse new offers (503), end every session (its peer connection closed: DTLS
        close_notify, no more consent), stop serving HTTP; within ``timeout`` seconds.
        Returns how many sessions were ended."""
        self.draining = True
        logging.getLogger("aiohttp.server").removeFilter(self._quiet)
        sessions = list(self.sessions.values())
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(s.close("server stopping") for s in sessions)), timeout
            )
        for stream in self.streams.values():
            stream.close()
        self.pool.close(timeout=1.0)
        if self.models is not None:
            self.models.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), 1.0)
        return len(sessions)

    # -- settings ---------------------------------------------------------------------------

    def settings(
        self, base: PipelineConfig, changes: dict[str, Any], session: Session | None
    ) -> PipelineConfig:
        """Network settings → a validated config (backgrounds by name, never by path)."""
        changes = dict(changes)
        if "background" in changes:
            name = changes["background"]
            if name == "upload":
                if session is None or session.upload_path is None:
                    raise ConfigError(
                        "background: 'upload' needs an image posted to /sessions/ID/background"
                    )
                changes["background"] = session.upload_path
            elif name in (None, ""):
                changes["background"] = None
            elif isinstance(name, str) and name in shipped_backgrounds():
                changes["background"] = str(BACKGROUNDS_DIR / f"{name}.jpg")
            else:
                names = ", ".join(shipped_backgrounds())
                raise ConfigError(f"background: {str(name)[:80]!r} is not one of {names} or upload")
        if "model" in changes and changes["model"] not in GENERATOR_NAMES:
            raise ConfigError(
                f"model: {str(changes['model'])[:80]!r} is not one of {', '.join(GENERATOR_NAMES)}"
            )
        config = update(base, changes)
        if config.effect != base.effect and config.effect.name in ("replace", "gan"):
            # Check the background can be loaded now, so that a bad one is refused here.
            from engine.effects import create_effect

            create_effect(config.effect).close()
        return config

    def backgrounds(self) -> list[str]:
        return shipped_backgrounds()

    def describe_settings(self, config: PipelineConfig) -> dict[str, Any]:
        """Settings as a client sees them: a background is its shipped name, never a path."""
        out = describe(config)
        background = config.effect.background
        if background is not None:
            path = Path(background)
            out["effect"]["background"] = path.stem if path.parent == BACKGROUNDS_DIR else "upload"
        return out

    # -- sessions ---------------------------------------------------------------------------

    async def start_session(
        self,
        offer: str,
        config: PipelineConfig,
        kind: str = "sendrecv",
        stream: Stream | None = None,
        client: str = "",
    ) -> tuple[Session, str]:
        self.admit(kind, client)
        session = Session(
            self.config,
            config,
            kind=kind,
            stream=stream,
            client=client,
            metrics=self.metrics,
            on_connected=self._connected,
            pool=self.pool,
            models=self.models,
        )
        self.sessions[session.id] = session
        if stream is not None and kind == "publish":
            stream.set_publisher(session)
        try:
            answer = await session.answer(offer)
        except LiveFXError:
            await self._forget(session, "offer refused")
            raise
        except Exception as exc:  # aiortc raises ValueError & co. for SDP it cannot use
            await self._forget(session, "offer refused")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot use this offer: {first[:200]}") from exc
        task = asyncio.ensure_future(self._forget_when_closed(session))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        self.metrics.sessions_started.labels(kind).inc()
        log.info(
            "session %s (%s%s) started: %d sessions",
            session.id,
            kind,
            f" {stream.name}" if stream is not None else "",
            len(self.sessions),
        )
        return session, answer

    def _limit(self, slot: str) -> int:
        return self.config.max_players if slot == "players" else self.config.max_sessions

    def _connected_in(self, slot: str) -> int:
        return sum(s.slot == slot and not s.pending for s in self.sessions.values())

    def rate_limit(self, client: str) -> None:
        """Every offer counts, good or bad, before its body is read (429 past the rate)."""
        if self.draining:
            raise HttpError(503, "the server is shutting down", {"Retry-After": "10"})
        self.limiter.take(client)

    def admit(self, kind: str, client: str) -> None:
        """Refuse an offer before anything is made for it: draining (503), too many of the
        client's sessions still connecting (429), too many connecting in all or connected
        sessions of its kind (503). Sessions still connecting count apart from connected
        ones, and end after ``--connect-timeout``: peers that vanish after their offer hold no
        connected slot, and only for that long."""
        if self.draining:
            raise HttpError(503, "the server is shutting down", {"Retry-After": "10"})
        cfg = self.config
        pending = [s for s in self.sessions.values() if s.pending]
        mine = sum(s.client == client for s in pending)
        if mine >= cfg.max_pending_per_client:
            raise HttpError(
                429,
                f"{mine} sessions from {client} are still connecting (at most "
                f"{cfg.max_pending_per_client}); they end after {cfg.connect_timeout_s:g} s",
                {"Retry-After": str(math.ceil(cfg.connect_timeout_s))},
            )
        if len(pending) >= cfg.max_pending:
            raise Full("connecting sessions", len(pending), cfg.max_pending)
        slot = slot_of(kind)
        used = self._connected_in(slot)
        if used >= self._limit(slot):
            raise Full(slot, used, self._limit(slot))
        if slot == "sessions" and cfg.mode == "livefx":
            held = sum(s.slot == "sessions" and s.processes for s in self.sessions.values())
            why = self.pool.refuse_reason(cfg.admit_load, held)
            if why is not None:  # its frames could not be served: refused, nobody degraded
                self.metrics.errors.labels("admission").inc()
                raise HttpError(503, f"server full: {why}", {"Retry-After": str(RETRY_FULL_S)})

    async def _connected(self, session: Session) -> None:
        """A session that connected takes a connected slot, if one is still free."""
        used, limit = self._connected_in(session.slot), self._limit(session.slot)
        if used > limit:
            await session.close(f"server full: {used - 1} of {limit} connected first")

    async def _forget(self, session: Session, reason: str) -> None:
        await session.close(reason)
        self.sessions.pop(session.id, None)
        self._drop_stream_if_empty(session.stream)

    async def _forget_when_closed(self, session: Session) -> None:
        await session.closed.wait()
        self.sessions.pop(session.id, None)
        self._drop_stream_if_empty(session.stream)
        self.metrics.session_ended(session.kind, session.close_reason, session.frame_counts())
        self.ended.append(
            {
                "session": session.id,
                "kind": session.kind,
                "stream": session.stream.name if session.stream is not None else None,
                "reason": session.close_reason,
            }
        )
        log.info("session %s ended: %s", session.id, session.close_reason)

    def stream(self, name: str, create: bool = False) -> Stream | None:
        if not STREAM_NAME.match(name):
            raise HttpError(
                400, "stream names are 1-64 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        stream = self.streams.get(name)
        if stream is None and create:
            stream = Stream(
                name, self.config.encoder, self.config.whep_bitrate, asyncio.get_running_loop()
            )
            self.streams[name] = stream
        return stream

    def _drop_stream_if_empty(self, stream: Stream | None) -> None:
        if stream is not None and stream.empty and self.streams.get(stream.name) is stream:
            stream.close()
            del self.streams[stream.name]

    def session_of(self, request: web.Request) -> Session:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            raise HttpError(404, "no such session")
        return session

    # -- routes -----------------------------------------------------------------------------

    async def static(self, request: web.Request) -> web.StreamResponse:
        name, kind = STATIC[request.path]
        try:
            body = (WEB_DIR / name).read_bytes()
        except OSError:
            raise HttpError(404, f"{name} is missing from the installation") from None
        return web.Response(body=body, content_type=kind, charset="utf-8")

    async def no_content(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def options(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=204)
        response.headers["Accept-Post"] = "application/sdp"
        return response

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "mode": self.config.mode,
            "sessions": sum(s.slot == "sessions" for s in self.sessions.values()),
            "players": sum(s.kind == "play" for s in self.sessions.values()),
            "streams": len(self.streams),
            "max_sessions": self.config.max_sessions,
            "load": round(self.pool.load_value(), 3),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "codecs": rtc.hwcodec.summary(),  # e.g. {"h264_encode": "libx264", …}
        }

    async def health_route(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.health())

    async def metrics_route(self, request: web.Request) -> web.StreamResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        response = web.Response(body=generate_latest(self.metrics.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def stats_route(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "sessions": [await self.session_stats(s) for s in list(self.sessions.values())],
                "streams": [s.stats() for s in self.streams.values()],
                "ended": list(self.ended),
                "codecs": rtc.hwcodec.status(),  # each direction's codec and why (hw_codecs)
                "pool": self.pool.stats(),
                "shared_models": self.models.stats() if self.models is not None else None,
                # This process's CPU seconds (all its threads) and the cores it may use: load
                # generators turn two readings into CPU % per step (docs/bench.md, "Load").
                "process": {
                    "cpu_s": round(time.process_time(), 3),
                    "cores": len(os.sched_getaffinity(0))
                    if hasattr(os, "sched_getaffinity")
                    else os.cpu_count(),
                },
            }
        )

    async def session_stats(self, session: Session) -> dict[str, Any]:
        stats = await session.stats()
        stats["settings"] = self.describe_settings(session.config)
        return stats

    async def offer(self, request: web.Request) -> web.StreamResponse:
        self.rate_limit(_client(request))
        offer = await whip.read_sdp(request, self.config.max_sdp_bytes)
        config = self.settings(self.config.pipeline, dict(request.query), None)
        sdp.check_sendrecv_offer(offer)
        session, answer = await self.start_session(offer, config, client=_client(request))
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/sessions/{session.id}", "ETag": session.etag},
        )

    async def background(self, request: web.Request) -> web.StreamResponse:
        session = self.session_of(request)
        body = await request.read()
        # Decoding (up to 40 MP) takes the CPU for a while: off the event loop, two at a time.
        async with self._decodes:
            await asyncio.get_running_loop().run_in_executor(None, self._save_upload, session, body)
        return web.json_response({"background": "upload", "bytes": len(body)})

    def _save_upload(self, session: Session, body: bytes) -> None:
        if not body:
            raise InputError("background upload: empty body")
        # The header's size first: a small file can declare 20 000 × 20 000 pixels.
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(body)) as header:
                width, height = header.size
        except Image.DecompressionBombError:  # Pillow's own, far larger, limit
            width = height = MAX_UPLOAD_PIXELS
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError(
                "background upload: not an image (PNG, JPEG, WebP, BMP, TIFF)"
            ) from None
        if width * height >= MAX_UPLOAD_PIXELS:
            raise InputError(
                f"background upload: it declares over {MAX_UPLOAD_PIXELS // 1_000_000} megapixels"
            )
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise InputError("background upload: not an image OpenCV can decode")
        fd, path = tempfile.mkstemp(prefix=f"livefx-{session.id}-", suffix=".png")
        os.close(fd)
        cv2.imwrite(path, image)
        with self._upload_lock:  # two uploads of one session: neither file is left behind
            old, session.upload_path = session.upload_path, path
        if old is not None:
            with contextlib.suppress(OSError):
                os.unlink(old)


def _client(request: web.Request) -> str:
    return request.remote or ""


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def page_url(config: ServerConfig, port: int) -> str:
    """The URL to open: the bind address (or 127.0.0.1 for a wildcard), and the token."""
    host = config.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"{config.scheme}://{host}:{port}/"
    return url + (f"?token={quote(config.token, safe='')}" if config.token else "")


M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most ``arenas`` glibc malloc arenas for the threads started from now on (unless
    ``MALLOC_ARENA_MAX`` is set). glibc gives each new thread its own arena, up to 8 per core;
    the frame buffers that the pool, decoder and worker threads allocate then fragment across
    them and the RSS steps up each time the thread pool grows (seen in the soak). The same cap
    as ``MALLOC_ARENA_MAX=2``, which Python services commonly set for this."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl): nothing to cap
        return False


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Run the server until cancelled."""
    cap_malloc_arenas()
    server = LiveFXServer(config)
    await server.start()
    shown = config.host if ":" not in config.host else f"[{config.host}]"
    print(
        f"LiveFX serving on {config.scheme}://{shown}:{server.port}/  (Ctrl-C to stop)",
        flush=True,
    )
    if config.token:
        print(f"open {page_url(config, server.port)}", flush=True)
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        started = time.monotonic()
        ended = await server.stop()
        print(
            f"LiveFX stopped: {ended} sessions ended in {time.monotonic() - started:.1f} s",
            flush=True,
        )
