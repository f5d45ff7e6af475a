"""WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) routes, and the session resource they share.

  OPTIONS /whip/NAME, /whep/NAME          204, Accept-Post: application/sdp (CORS: middleware)
  GET, HEAD /whip/NAME, /whep/NAME        200, no content
  POST /whip/NAME?SETTINGS  (sdp offer)   201 recvonly answer, Location, ETag, Link ice-server;
                                          409 when NAME already has a publisher
  POST /whep/NAME           (sdp offer)   201 sendonly answer (the processed stream), …;
                                          409 + Retry-After when NAME has no publisher
  GET, HEAD /sessions/ID                  200, no content
  PATCH /sessions/ID  trickle-ice-sdpfrag If-Match: the ETag or "*" → 204; 428 without it, 412
                                          when it differs; 422 for an ICE restart (not supported)
  PATCH /sessions/ID?SETTINGS             the publisher's (or any pipeline session's) settings
  DELETE /sessions/ID                     200; ends ICE and DTLS

Offers must be ``application/sdp`` (415 otherwise), UTF-8 SDP (400), at most one audio and one
video track going the right way (422). Answers carry every local candidate and
``a=rtcp-mux-only``; clients that offer no candidates (OBS, FFmpeg) are reached as peer-reflexive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.config import ServerConfig
from engine.server import sdp
from engine.server.middleware import HttpError

if TYPE_CHECKING:
    from engine.server.app import LiveFXServer

TRICKLE = "application/trickle-ice-sdpfrag"


def add_routes(router: web.UrlDispatcher, server: LiveFXServer) -> None:
    routes = Routes(server)
    for kind in ("whip", "whep"):
        path = f"/{kind}/{{stream}}"
        router.add_route("OPTIONS", path, routes.endpoint_options)
        router.add_get(path, routes.endpoint_get)  # HEAD too
        router.add_post(path, routes.publish if kind == "whip" else routes.play)
    router.add_route("OPTIONS", "/sessions/{id}", routes.session_options)
    router.add_get("/sessions/{id}", routes.session_get)
    router.add_patch("/sessions/{id}", routes.session_patch)
    router.add_delete("/sessions/{id}", routes.session_delete)


async def read_sdp(request: web.Request, limit: int) -> str:
    kind = request.content_type.lower()
    if kind != "application/sdp":
        raise HttpError(
            415, "the offer must be sent as application/sdp", {"Accept-Post": "application/sdp"}
        )
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, f"SDP over {limit} bytes")
    body = await request.read()
    if len(body) > limit:
        raise HttpError(413, f"SDP over {limit} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "the offer is not UTF-8 text") from None


def ice_servers_json(config: ServerConfig) -> list[dict[str, Any]]:
    """The configured STUN/TURN servers as RTCPeerConnection's ``iceServers``."""
    out: list[dict[str, Any]] = []
    for s in config.ice_servers:
        entry: dict[str, Any] = {"urls": s.url}
        if s.username is not None:
            entry["username"] = s.username
            entry["credential"] = s.credential
        out.append(entry)
    return out


def link_headers(config: ServerConfig) -> list[str]:
    """RFC 9725 §4.6: one ``Link: <URL>; rel="ice-server"`` per server, TURN with credentials."""
    links = []
    for s in config.ice_servers:
        link = f'<{s.url}>; rel="ice-server"'
        if s.username is not None:
            link += f'; username="{s.username}"; credential="{s.credential}"'
            link += '; credential-type="password"'
        links.append(link)
    return links


def created(session: Any, answer: str, config: ServerConfig) -> web.Response:
    response = web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"/sessions/{session.id}", "ETag": session.etag},
    )
    for link in link_headers(config):
        response.headers.add("Link", link)
    return response


class Routes:
    def __init__(self, server: LiveFXServer) -> None:
        self.server = server

    async def endpoint_options(self, request: web.Request) -> web.StreamResponse:
        self.server.stream(request.match_info["stream"])  # a bad name is a 400 here too
        return web.Response(status=204, headers={"Accept-Post": "application/sdp"})

    async def endpoint_get(self, request: web.Request) -> web.StreamResponse:
        self.server.stream(request.match_info["stream"])
        return web.Response(status=200, headers={"Accept-Post": "application/sdp"})

    async def publish(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        name = request.match_info["stream"]
        server.rate_limit(request.remote or "")
        server.stream(name)  # the name first: a bad one is refused before anything else
        offer = await read_sdp(request, server.config.max_sdp_bytes)
        config = server.settings(server.config.pipeline, dict(request.query), None)
        sdp.check_publish_offer(offer)
        stream = server.stream(name, create=True)
        assert stream is not None
        if stream.publisher is not None:
            raise HttpError(409, f"stream {name} already has a publisher")
        session, answer = await server.start_session(
            offer, config, kind="publish", stream=stream, client=request.remote or ""
        )
        return created(session, answer, server.config)

    async def play(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        name = request.match_info["stream"]
        server.rate_limit(request.remote or "")
        stream = server.stream(name)
        offer = await read_sdp(request, server.config.max_sdp_bytes)
        sdp.check_play_offer(offer)
        if stream is None or stream.publisher is None:
            raise HttpError(409, f"stream {name} has no publisher yet", {"Retry-After": "2"})
        session, answer = await server.start_session(
            offer, server.config.pipeline, kind="play", stream=stream, client=request.remote or ""
        )
        return created(session, answer, server.config)

    async def session_options(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={"Accept-Patch": TRICKLE})

    async def session_get(self, request: web.Request) -> web.StreamResponse:
        session = self.server.session_of(request)
        return web.Response(status=200, headers={"ETag": session.etag})

    async def session_delete(self, request: web.Request) -> web.StreamResponse:
        session = self.server.session_of(request)
        await session.close("deleted by the client")
        return web.json_response({"ended": session.id})

    async def session_patch(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        session = server.session_of(request)
        if request.content_type.lower() == TRICKLE:
            return await self._trickle(request, session)
        if request.can_read_body and request.content_length:
            raise HttpError(
                415,
                f"PATCH takes {TRICKLE} (trickle ICE) or settings in the query string",
                {"Accept-Patch": TRICKLE},
            )
        if session.kind == "play":
            raise HttpError(409, "a WHEP player has no settings; change its publisher's")
        session.set_config(server.settings(session.config, dict(request.query), session))
        return web.json_response({"settings": server.describe_settings(session.config)})

    async def _trickle(self, request: web.Request, session: Any) -> web.StreamResponse:
        match = request.headers.get("If-Match")
        if match is None:
            raise HttpError(428, "trickle ICE needs If-Match: the session's ETag")
        if match.strip() not in ("*", session.etag):
            raise HttpError(412, "If-Match does not match the session's ETag")
        body = await request.read()
        if len(body) > self.server.config.max_sdp_bytes:
            raise HttpError(413, "fragment too large")
        try:
            fragment = sdp.parse_fragment(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpError(400, "the fragment is not UTF-8 text") from None
        remote = session.pc.remoteDescription
        current = sdp.parse(remote.sdp).ice_ufrag if remote is not None else None
        if fragment.ufrag is not None and current is not None and fragment.ufrag != current:
            # RFC 9725 §4.3.1: a server that supports trickle but not restarts answers 422 and
            # keeps the session as it is.
            raise HttpError(422, "ICE restart is not supported: start a new session")
        await session.add_candidates(fragment)
        return web.Response(status=204)
