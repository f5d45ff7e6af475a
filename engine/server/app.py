"""The LiveFX server: routes, signalling, the session registry.

HTTP (same port):
  GET  /                      the web client (``/?view=output``: the processed video only)
  GET  /app.js, /style.css    its files
  GET  /health                {"status": "ok", "sessions": n, "max_sessions": m, ...}
  GET  /stats                 every session's stats
  POST /offer?SETTINGS        body application/sdp → 201 application/sdp answer, Location
  PATCH /sessions/ID?SETTINGS change a session's settings → 200 JSON
  POST /sessions/ID/background  an image (body) for ``background=upload`` → 200 JSON
  DELETE /sessions/ID         end a session → 204
  GET  /ws                    WebSocket signalling (docs/protocol.md)

SETTINGS are the names in ``engine.config.SETTINGS`` (effect, strength, colour, background,
threshold, feather, smoothing, guided, budget_ms, segmenter). Over the network ``background``
names a shipped background (rocket, hubble, coffee) or ``upload``; never a server path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engine import __version__
from engine.config import (
    EFFECTS,
    GENERATOR_NAMES,
    SETTINGS,
    PipelineConfig,
    ServerConfig,
    describe,
    update,
)
from engine.errors import ConfigError, InputError, LiveFXError
from engine.server import rtc
from engine.server.http import HttpServer, Request, Response, WebSocket
from engine.server.session import Session

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web_client"
BACKGROUNDS_DIR = Path(__file__).resolve().parent.parent.parent / "samples" / "backgrounds"
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MESSAGE_TYPES = ("offer", "settings", "ping", "bye")


class BadMessage(Exception):
    """A signalling message that breaks the schema; answered with an error, never fatal."""


def shipped_backgrounds() -> list[str]:
    return sorted(p.stem for p in BACKGROUNDS_DIR.glob("*.jpg"))


class LiveFXServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.http = HttpServer(
            self.handle,
            self.handle_ws,
            max_body=config.max_upload_bytes,
            max_ws_message=config.max_message_bytes,
        )
        self.port = config.port
        self.started = time.monotonic()
        self._watchers: set[asyncio.Task[None]] = set()

    # -- life cycle -------------------------------------------------------------------------

    async def start(self) -> int:
        livefx = self.config.mode == "livefx"
        rtc.install_encoders(self.config.encoder if livefx else None)
        rtc.install_jitter_buffer(low_latency=livefx)
        rtc.use_loopback_ice(self.config.host in ("127.0.0.1", "localhost", "::1"))
        self.port = await self.http.start(self.config.host, self.config.port)
        log.info(
            "LiveFX %s serving on http://%s:%d (%s)",
            __version__,
            self.config.host,
            self.port,
            self.config.mode,
        )
        return self.port

    async def stop(self) -> None:
        await asyncio.gather(*(s.close("server stopping") for s in list(self.sessions.values())))
        await self.http.close()

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
                raise ConfigError(f"background: {name!r} is not one of {names} or upload")
        if "model" in changes and changes["model"] not in GENERATOR_NAMES:
            raise ConfigError(
                f"model: {changes['model']!r} is not one of {', '.join(GENERATOR_NAMES)}"
            )
        config = update(base, changes)
        if config.effect != base.effect and config.effect.name in ("replace", "gan"):
            # Check the background can be loaded now, so that a bad one is refused here.
            from engine.effects import create_effect

            create_effect(config.effect).close()
        return config

    # -- HTTP -------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except _Full as exc:
            return Response.error(503, str(exc), **{"Retry-After": "5"})
        except (ConfigError, InputError) as exc:
            return Response.error(400, str(exc))
        except LiveFXError as exc:
            return Response.error(500, str(exc))

    async def _route(self, r: Request) -> Response:
        if r.method in ("GET", "HEAD") and r.path in STATIC:
            name, kind = STATIC[r.path]
            try:
                return Response(200, (WEB_DIR / name).read_bytes(), kind)
            except OSError:
                return Response.error(404, f"{name} is missing from {WEB_DIR}")
        if r.path == "/favicon.ico":
            return Response(204)
        if r.method == "GET" and r.path == "/health":
            return Response.json(200, self.health())
        if r.method == "GET" and r.path == "/stats":
            return Response.json(
                200, {"sessions": [await s.stats() for s in self.sessions.values()]}
            )
        if r.path == "/offer":
            if r.method != "POST":
                return Response.error(405, "use POST", Allow="POST")
            return await self._offer(r)
        if r.path.startswith("/sessions/"):
            parts = r.path.split("/")
            session = self.sessions.get(parts[2]) if len(parts) > 2 else None
            if session is None:
                return Response.error(404, "no such session")
            if len(parts) == 3 and r.method == "DELETE":
                await session.close("deleted by the client")
                return Response(204)
            if len(parts) == 3 and r.method == "PATCH":
                session.set_config(self.settings(session.config, r.query, session))
                return Response.json(200, {"settings": describe(session.config)})
            if len(parts) == 4 and parts[3] == "background" and r.method == "POST":
                self._save_upload(session, r.body)
                return Response.json(200, {"background": "upload", "bytes": len(r.body)})
            return Response.error(405, f"{r.method} is not allowed on {r.path}")
        return Response.error(404, f"nothing at {r.path}")

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "mode": self.config.mode,
            "sessions": len(self.sessions),
            "max_sessions": self.config.max_sessions,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    async def _offer(self, r: Request) -> Response:
        kind = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/sdp":
            return Response.error(415, "the offer must be sent as application/sdp")
        try:
            sdp = r.body.decode("utf-8")
        except UnicodeDecodeError:
            return Response.error(400, "the offer is not UTF-8 text")
        if not sdp.startswith("v=0"):
            return Response.error(400, "the body is not an SDP offer (it must start with v=0)")
        config = self.settings(self.config.pipeline, r.query, None)
        session, answer = await self._start_session(sdp, config)
        return Response(
            201, answer.encode(), "application/sdp", {"Location": f"/sessions/{session.id}"}
        )

    def _save_upload(self, session: Session, body: bytes) -> None:
        if not body:
            raise InputError("background upload: empty body")
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise InputError("background upload: not an image OpenCV can decode")
        fd, path = tempfile.mkstemp(prefix=f"livefx-{session.id}-", suffix=".png")
        os.close(fd)
        cv2.imwrite(path, image)
        old, session.upload_path = session.upload_path, path
        if old is not None:
            with contextlib.suppress(OSError):
                os.unlink(old)

    async def _start_session(self, sdp: str, config: PipelineConfig) -> tuple[Session, str]:
        if len(self.sessions) >= self.config.max_sessions:
            raise _Full(len(self.sessions), self.config.max_sessions)
        session = Session(self.config, config)
        self.sessions[session.id] = session
        try:
            answer = await session.answer(sdp)
        except LiveFXError:
            await session.close("offer refused")
            self.sessions.pop(session.id, None)
            raise
        except Exception as exc:  # aiortc raises ValueError & co. for SDP it cannot use
            await session.close("offer refused")
            self.sessions.pop(session.id, None)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot use this offer: {first}") from exc
        task = asyncio.ensure_future(self._forget_when_closed(session))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
        log.info(
            "session %s started (%d of %d)",
            session.id,
            len(self.sessions),
            self.config.max_sessions,
        )
        return session, answer

    async def _forget_when_closed(self, session: Session) -> None:
        await session.closed.wait()
        self.sessions.pop(session.id, None)
        log.info("session %s ended: %s", session.id, session.close_reason)

    # -- WebSocket signalling ---------------------------------------------------------------

    async def handle_ws(self, ws: WebSocket, request: Request) -> None:
        session: Session | None = None
        stats_task: asyncio.Task[None] | None = None
        await ws.send(json.dumps({
            "type": "hello",
            "version": __version__,
            "mode": self.config.mode,
            "effects": list(EFFECTS),
            "backgrounds": shipped_backgrounds(),
            "models": list(GENERATOR_NAMES),
            "settings": describe(self.config.pipeline),
            "setting_names": sorted(SETTINGS),
        }))  # fmt: skip
        try:
            while True:
                raw = await ws.recv()
                if raw is None:
                    break
                try:
                    message = self._parse(raw)
                    kind = message["type"]
                    if kind == "ping":
                        await ws.send(
                            json.dumps({"type": "pong", "id": message.get("id"), "t": time.time()})
                        )
                    elif kind == "bye":
                        break
                    elif kind == "offer":
                        if session is not None and not session.closed.is_set():
                            raise BadMessage("this connection already has a session")
                        config = self.settings(
                            self.config.pipeline, message.get("settings", {}), None
                        )
                        session, answer = await self._start_session(message["sdp"], config)
                        await ws.send(
                            json.dumps({"type": "answer", "sdp": answer, "session": session.id})
                        )
                        stats_task = asyncio.ensure_future(self._push_stats(ws, session))
                    elif kind == "settings":
                        if session is None:
                            raise BadMessage("send an offer first")
                        session.set_config(
                            self.settings(session.config, message["settings"], session)
                        )
                        await ws.send(
                            json.dumps({"type": "settings", "settings": describe(session.config)})
                        )
                except _Full as exc:
                    await ws.send(
                        json.dumps({"type": "error", "error": "full", "message": str(exc)})
                    )
                except (BadMessage, ConfigError, InputError) as exc:
                    await ws.send(
                        json.dumps({"type": "error", "error": "bad_message", "message": str(exc)})
                    )
                except LiveFXError as exc:
                    await ws.send(
                        json.dumps({"type": "error", "error": "failed", "message": str(exc)})
                    )
        finally:
            if stats_task is not None:
                stats_task.cancel()
            if session is not None:
                await session.close("signalling closed")

    def _parse(self, raw: str | bytes) -> dict[str, Any]:
        if isinstance(raw, bytes):
            raise BadMessage("binary messages are not part of the protocol; send JSON text")
        try:
            message = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadMessage(f"not JSON: {exc.msg} at character {exc.pos}") from None
        if not isinstance(message, dict):
            raise BadMessage("a message must be a JSON object")
        kind = message.get("type")
        if kind not in MESSAGE_TYPES:
            raise BadMessage(f"type must be one of {', '.join(MESSAGE_TYPES)}, got {kind!r}")
        if kind == "offer":
            if not isinstance(message.get("sdp"), str) or not message["sdp"].startswith("v=0"):
                raise BadMessage("offer: 'sdp' must be an SDP string starting with v=0")
            if not isinstance(message.get("settings", {}), dict):
                raise BadMessage("offer: 'settings' must be an object")
        if kind == "settings" and not isinstance(message.get("settings"), dict):
            raise BadMessage("settings: 'settings' must be an object of setting names to values")
        return message

    async def _push_stats(self, ws: WebSocket, session: Session) -> None:
        try:
            while not session.closed.is_set() and not ws.closed:
                await asyncio.sleep(self.config.stats_interval_s)
                await ws.send(json.dumps({"type": "stats", **(await session.stats())}))
            if session.closed.is_set():
                await ws.send(json.dumps({"type": "closed", "reason": session.close_reason}))
        except asyncio.CancelledError:
            pass


class _Full(LiveFXError):
    def __init__(self, n: int, limit: int) -> None:
        super().__init__(f"server full: {n} of {limit} sessions in use; try again later")


async def serve(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
    """Run the server until cancelled."""
    server = LiveFXServer(config)
    await server.start()
    print(f"LiveFX serving on http://{config.host}:{server.port}/  (Ctrl-C to stop)", flush=True)
    if ready is not None:
        ready.set()
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()
