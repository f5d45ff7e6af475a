"""One port for HTTP and WebSocket: a small HTTP/1.1 server on asyncio streams.

Plain requests (static files, ``POST /offer``, ``DELETE /sessions/…``) are parsed here; a
``GET /ws`` upgrade is handed to the ``websockets`` library's Sans-I/O protocol
(``websockets.server.ServerProtocol``), which does the handshake, framing, masking, ping/pong and
closing. The ``websockets`` asyncio server cannot share the port with ``POST`` (its HTTP parser
takes only ``GET``), hence this split.

Limits: request head 16 KiB, body ``max_body`` bytes, one request per connection
(``Connection: close``), ``read_timeout`` seconds to send a request. A request that breaks them
gets a 4xx and the connection is closed; nothing here raises into the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger(__name__)

MAX_HEAD = 16 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    peer: str = ""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, **headers: str) -> Response:
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers))

    @classmethod
    def error(cls, status: int, message: str, **headers: str) -> Response:
        return cls.json(status, {"error": message}, **headers)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class WebSocket:
    """A server-side WebSocket over asyncio streams, framed by websockets' ServerProtocol."""

    def __init__(
        self,
        protocol: ServerProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_message: int,
    ) -> None:
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self.max_message = max_message
        self._pending: list[bytes] = []
        self._messages: list[str | bytes] = []
        self.closed = False

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
            else:  # the protocol asks for the TCP connection to end
                with contextlib.suppress(OSError):
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def recv(self) -> str | bytes | None:
        """The next whole message, or None once the connection is closed."""
        while not self._messages:
            if self.closed:
                return None
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, OSError):
                data = b""
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            for frame in self.protocol.events_received():
                if not isinstance(frame, Frame):
                    continue
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                    self._pending.append(bytes(frame.data))
                    if sum(len(p) for p in self._pending) > self.max_message:
                        self.protocol.fail(1009, "message too big")
                        self.closed = True
                        self._pending.clear()
                        break
                    if frame.fin:
                        raw = b"".join(self._pending)
                        first = frame.opcode if frame.opcode != Opcode.CONT else self._first
                        self._pending.clear()
                        if first == Opcode.TEXT:
                            try:
                                self._messages.append(raw.decode("utf-8"))
                            except UnicodeDecodeError:
                                self.protocol.fail(1007, "invalid UTF-8")
                                self.closed = True
                        else:
                            self._messages.append(raw)
                    elif frame.opcode != Opcode.CONT:
                        self._first = frame.opcode
                elif frame.opcode == Opcode.CLOSE:
                    self.closed = True
            if self.protocol.state is State.CLOSED or not data:
                self.closed = True
            await self._flush()
        return self._messages.pop(0)

    async def send(self, message: str) -> None:
        if self.closed:
            return
        try:
            self.protocol.send_text(message.encode("utf-8"))
        except Exception:  # the protocol refuses to send once closing: the peer is gone
            self.closed = True
            return
        await self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self.protocol.send_close(code, reason)
                await self._flush()
        self.closed = True

    _first: Opcode = Opcode.TEXT


Handler = Callable[[Request], Awaitable[Response]]
WsHandler = Callable[[WebSocket, Request], Awaitable[None]]


class HttpServer:
    """Routes plain requests to ``handler`` and ``GET {ws_path}`` upgrades to ``ws_handler``."""

    def __init__(
        self,
        handler: Handler,
        ws_handler: WsHandler,
        *,
        ws_path: str = "/ws",
        max_body: int = 1 << 20,
        max_ws_message: int = 1 << 20,
        read_timeout: float = 10.0,
    ) -> None:
        self.handler = handler
        self.ws_handler = ws_handler
        self.ws_path = ws_path
        self.max_body = max_body
        self.max_ws_message = max_ws_message
        self.read_timeout = read_timeout
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._connection, host, port, limit=MAX_HEAD)
        sock = self.server.sockets[0]
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug in a handler must not take the server down
            log.exception("request failed")
            if not getattr(writer, "_livefx_upgraded", False):
                with contextlib.suppress(Exception):
                    await self._write(writer, Response.error(500, "internal error"))
        finally:
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str(writer.get_extra_info("peername"))
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.read_timeout)
        except asyncio.LimitOverrunError:
            await self._write(writer, Response.error(431, "request head too large"))
            return
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        try:
            request = self._parse_head(head, peer)
        except HttpError as exc:
            await self._write(writer, Response.error(exc.status, str(exc)))
            return
        if (
            request.path == self.ws_path
            and request.headers.get("upgrade", "").lower() == "websocket"
        ):
            await self._upgrade(head, request, reader, writer)
            return
        length = request.headers.get("content-length", "0")
        if not length.isdigit():
            await self._write(writer, Response.error(400, "bad Content-Length"))
            return
        if int(length) > self.max_body:
            await self._write(writer, Response.error(413, f"body over {self.max_body} bytes"))
            return
        try:
            request.body = await asyncio.wait_for(
                reader.readexactly(int(length)), self.read_timeout
            )
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        response = await self.handler(request)
        await self._write(writer, response, head_only=request.method == "HEAD")

    def _parse_head(self, head: bytes, peer: str) -> Request:
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
            raise HttpError(400, "undecodable request") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "bad request line")
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise HttpError(400, "bad header line")
            headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        return Request(
            method=method.upper(),
            path=url.path or "/",
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=headers,
            peer=peer,
        )

    async def _upgrade(
        self,
        head: bytes,
        request: Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        protocol = ServerProtocol(max_size=self.max_ws_message)
        protocol.receive_data(head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], WsRequest):
            await self._write(writer, Response.error(400, "bad WebSocket handshake"))
            return
        response = protocol.accept(events[0])
        protocol.send_response(response)
        setattr(writer, "_livefx_upgraded", True)  # noqa: B010  (no HTTP error reply after this)
        ws = WebSocket(protocol, reader, writer, self.max_ws_message)
        await ws._flush()
        if response.status_code != 101:
            return
        try:
            await self.ws_handler(ws, request)
        finally:
            await ws.close()

    async def _write(
        self, writer: asyncio.StreamWriter, response: Response, head_only: bool = False
    ) -> None:
        reason = (
            HTTPStatus(response.status).phrase
            if response.status in HTTPStatus._value2member_map_
            else ""
        )
        headers = {
            "Content-Type": response.content_type,
            "Content-Length": str(len(response.body)),
            "Connection": "close",
            "Cache-Control": "no-store",
            **response.headers,
        }
        head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n")
        if not head_only:
            writer.write(response.body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
