"""WebSocket signalling (``GET /ws``): the web page's protocol, JSON text messages.

Client → server: ``offer``, ``settings``, ``ping``, ``bye``; server → client: ``hello``,
``answer``, ``settings``, ``stats``, ``pong``, ``error``, ``closed`` (docs/protocol.md). A
message that breaks the schema is answered with an ``error`` and the connection stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from engine import __version__
from engine.config import EFFECTS, GENERATOR_NAMES, SETTINGS
from engine.errors import ConfigError, InputError, LiveFXError
from engine.server import sdp, whip
from engine.server.middleware import HttpError
from engine.server.session import Session

if TYPE_CHECKING:
    from engine.server.app import LiveFXServer

MESSAGE_TYPES = ("offer", "settings", "ping", "bye")


class BadMessage(Exception):
    """A signalling message that breaks the schema; answered with an error, never fatal."""


async def websocket(server: LiveFXServer, request: web.Request) -> web.StreamResponse:
    """``GET /ws``: one session per connection; closing the connection ends it."""
    ws = web.WebSocketResponse(
        max_msg_size=server.config.max_message_bytes, protocols=("livefx",), heartbeat=None
    )
    await ws.prepare(request)
    session: Session | None = None
    stats_task: asyncio.Task[None] | None = None

    async def send(message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(json.dumps(message))

    await send({
        "type": "hello",
        "version": __version__,
        "mode": server.config.mode,
        "effects": list(EFFECTS),
        "backgrounds": server.backgrounds(),
        "models": list(GENERATOR_NAMES),
        "settings": server.describe_settings(server.config.pipeline),
        "setting_names": sorted(SETTINGS),
        "ice_servers": whip.ice_servers_json(server.config),
    })  # fmt: skip
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                break
            try:
                message = parse(msg.data if msg.type == WSMsgType.TEXT else b"")
                kind = message["type"]
                if kind == "ping":
                    await send({"type": "pong", "id": message.get("id"), "t": time.time()})
                elif kind == "bye":
                    break
                elif kind == "offer":
                    if session is not None and not session.closed.is_set():
                        raise BadMessage("this connection already has a session")
                    server.rate_limit(request.remote or "")
                    config = server.settings(
                        server.config.pipeline, message.get("settings", {}), None
                    )
                    sdp.check_sendrecv_offer(message["sdp"])
                    session, answer = await server.start_session(
                        message["sdp"], config, client=request.remote or ""
                    )
                    await send({"type": "answer", "sdp": answer, "session": session.id})
                    stats_task = asyncio.ensure_future(push_stats(server, send, ws, session))
                elif kind == "settings":
                    if session is None:
                        raise BadMessage("send an offer first")
                    session.set_config(
                        server.settings(session.config, message["settings"], session)
                    )
                    await send(
                        {"type": "settings", "settings": server.describe_settings(session.config)}
                    )
            except HttpError as exc:  # full (503), over the rate or still connecting (429)
                kind = "full" if exc.status == 503 else "busy"
                await send({"type": "error", "error": kind, "message": str(exc)})
            except (BadMessage, ConfigError, InputError) as exc:
                await send({"type": "error", "error": "bad_message", "message": str(exc)})
            except LiveFXError as exc:
                await send({"type": "error", "error": "failed", "message": str(exc)})
    finally:
        if stats_task is not None:
            stats_task.cancel()
        if session is not None:
            await session.close("signalling closed")
        await ws.close()
    return ws


def parse(raw: str | bytes) -> dict[str, Any]:
    """A message checked against the schema; ``BadMessage`` with one line otherwise."""
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
        raise BadMessage(f"type must be one of {', '.join(MESSAGE_TYPES)}, got {str(kind)[:40]!r}")
    if kind == "offer":
        if not isinstance(message.get("sdp"), str) or not message["sdp"].startswith("v=0"):
            raise BadMessage("offer: 'sdp' must be an SDP string starting with v=0")
        if not isinstance(message.get("settings", {}), dict):
            raise BadMessage("offer: 'settings' must be an object")
    if kind == "settings" and not isinstance(message.get("settings"), dict):
        raise BadMessage("settings: 'settings' must be an object of setting names to values")
    return message


async def push_stats(
    server: LiveFXServer, send: Any, ws: web.WebSocketResponse, session: Session
) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        while not session.closed.is_set() and not ws.closed:
            await asyncio.sleep(server.config.stats_interval_s)
            await send({"type": "stats", **(await server.session_stats(session))})
        if session.closed.is_set():
            await send({"type": "closed", "reason": session.close_reason})
