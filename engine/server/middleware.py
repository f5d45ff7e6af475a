"""The server's cross-cutting rules, each an aiohttp middleware: errors, CORS, authentication.

- ``errors``: LiveFX's own errors and aiohttp's HTTP exceptions become ``{"error": "one line"}``
  with their status; an unexpected exception is logged and answered 500, the server serves on.
- ``cors``: preflights (``OPTIONS`` with ``Access-Control-Request-Method``) answered for the
  origins in ``--allow-origin``, and the headers WHIP/WHEP clients must read (``Location``,
  ``ETag``, ``Link``, ``Accept-Patch``) exposed. No origin is allowed by default: a page on
  another site could otherwise drive a server on this machine.
- ``auth``: with ``--token``, every request that creates, changes, uploads to or ends a session,
  the WebSocket and ``/stats`` need ``Authorization: Bearer TOKEN`` (401 otherwise). A browser's
  WebSocket cannot send headers: it offers the subprotocol ``livefx.token.BASE64URL(TOKEN)``.
  Without a token on a loopback address, only loopback ``Host`` names are served (a DNS
  rebinding page cannot reach the API through a name of its own).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from engine.config import ServerConfig
from engine.errors import ConfigError, InputError, LiveFXError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROTECTED_PREFIXES = ("/offer", "/whip/", "/whep/", "/sessions/", "/ws", "/stats", "/metrics")
TOKEN_PROTOCOL = "livefx.token."
EXPOSED = "Location, ETag, Link, Accept-Patch, Accept-Post, Retry-After"
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match"
ALLOWED_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"


class HttpError(LiveFXError):
    """A refusal with its own status and headers (409 + Retry-After, 412, 428, …)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class Full(HttpError):
    """All sessions (or players) of their kind are in use: 503 + Retry-After."""

    def __init__(self, what: str, n: int, limit: int) -> None:
        super().__init__(
            503, f"server full: {n} of {limit} {what} in use; try again later", {"Retry-After": "5"}
        )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps({"error": message}),
        content_type="application/json",
        headers=headers or {},
    )


def status_of(exc: LiveFXError) -> int:
    status = getattr(exc, "status", None)
    if isinstance(status, int):
        return status
    if isinstance(exc, (ConfigError, InputError)):
        return 400
    return 500


def _one_line(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "message", "") or exc).split())[:200]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # No endpoint takes a compressed body; refusing it unread also refuses zip bombs.
        return error_response(
            415, f"Content-Encoding {encoding[:40]!r} is not accepted: send the body as it is"
        )
    try:
        response = await handler(request)
    except RequestPayloadError as exc:  # a body aiohttp could not read: framing, encoding
        return error_response(400, f"unreadable request body: {_one_line(exc)}")
    except LiveFXError as exc:
        return error_response(status_of(exc), str(exc), getattr(exc, "headers", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {
            404: f"nothing at {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: "body too large",
        }.get(exc.status, exc.reason)
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, message, headers)
    except Exception:  # a bug in a handler must not take the server down
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def cors(config: ServerConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    allowed = set(config.allow_origins)

    def allow(origin: str | None, request: web.Request) -> str | None:
        if origin is None:
            return None
        if "*" in allowed:
            return "*"
        if origin in allowed or origin == f"{request.scheme}://{request.host}":
            return origin
        return None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        granted = allow(origin, request)
        preflight = (
            request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
        )
        if preflight:
            response: web.StreamResponse = web.Response(status=204)
            if granted is not None:
                response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
            _accept_headers(request.path, response)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        if granted is not None:
            response.headers["Access-Control-Allow-Origin"] = granted
            response.headers["Access-Control-Expose-Headers"] = EXPOSED
            if granted != "*":
                response.headers["Vary"] = "Origin"
        if isinstance(response, web.HTTPException):
            raise response
        return response

    return middleware


def count_errors(metrics: Any) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Refused requests in ``livefx_errors_total{kind="http_STATUS"}`` (inside ``errors``, so
    that what it turned into a response is counted too)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except LiveFXError as exc:
            metrics.errors.labels(f"http_{status_of(exc)}").inc()
            raise
        except web.HTTPException as exc:
            if exc.status >= 400:
                metrics.errors.labels(f"http_{exc.status}").inc()
            raise
        if response.status >= 400:
            metrics.errors.labels(f"http_{response.status}").inc()
        return response

    return middleware


def _accept_headers(path: str, response: web.StreamResponse) -> None:
    if path.startswith(("/whip/", "/whep/", "/offer")):
        response.headers["Accept-Post"] = "application/sdp"
    elif path.startswith("/sessions/"):
        response.headers["Accept-Patch"] = "application/trickle-ice-sdpfrag"


def token_from(request: web.Request) -> str | None:
    """The Bearer token of a request: its Authorization header, or (a browser's WebSocket) the
    ``livefx.token.…`` subprotocol it offers."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    for protocol in request.headers.get("Sec-WebSocket-Protocol", "").split(","):
        protocol = protocol.strip()
        if protocol.startswith(TOKEN_PROTOCOL):
            encoded = protocol[len(TOKEN_PROTOCOL) :]
            try:
                return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
    return None


def _loopback_name(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def auth(config: ServerConfig) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = config.token.encode() if config.token else None

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None:
            if config.loopback and not _loopback_name(request.host or ""):
                return error_response(
                    403,
                    f"Host {request.host!r} is not served: this server is bound to loopback "
                    "without a token (set --token to serve other names)",
                )
            return await handler(request)
        if request.method == "OPTIONS" or not request.path.startswith(PROTECTED_PREFIXES):
            return await handler(request)
        given = token_from(request)
        if given is None or not hmac.compare_digest(given.encode(), expected):
            error = "missing" if given is None else "wrong"
            return error_response(
                401,
                f"{error} token: send Authorization: Bearer TOKEN (livefx serve --token)",
                {
                    "WWW-Authenticate": 'Bearer realm="livefx"'
                    + ("" if given is None else ', error="invalid_token"')
                },
            )
        return await handler(request)

    return middleware


class QuietBadRequests(logging.Filter):
    """aiohttp logs a traceback at ERROR for every request its parser refuses (after answering
    400): whoever reaches the port could fill the log. Those records become one debug line and a
    count (``livefx_errors_total{kind="bad_http"}``)."""

    def __init__(self, count: Callable[[], None]) -> None:
        super().__init__()
        self.count = count

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, (HttpProcessingError, RequestPayloadError)):
            return True
        self.count()
        line = _one_line(exc)
        log.debug("bad HTTP request refused (400): %s", line)
        return False
