"""ICE: which addresses the server gathers on, which client candidates it keeps, STUN/TURN, and
consent freshness for peers that answer no consent checks."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

from engine.config import IceServer

log = logging.getLogger(__name__)


def _all_host_addresses() -> list[str]:
    import aioice.ice

    original = getattr(aioice.ice, "_livefx_original_hosts", aioice.ice.get_host_addresses)
    return list(original(True, True))


def own_addresses() -> set[str]:
    """This machine's interface addresses, loopback included."""
    return {*_all_host_addresses(), "127.0.0.1", "::1"}


def gather_addresses(bind_host: str) -> list[str]:
    """The addresses the server offers as host candidates, IPv4 first.

    Bound to loopback: 127.0.0.1 (or ::1); to one address: that one; to 0.0.0.0: every IPv4
    address; to ``::``: every address. Link-local IPv6 addresses are left out (they need a scope).
    """
    if bind_host in ("localhost", "127.0.0.1") or bind_host.startswith("127."):
        return ["127.0.0.1"]
    if bind_host == "::1":
        return ["::1"]
    everything = _all_host_addresses()
    if bind_host in ("0.0.0.0", ""):
        chosen = [a for a in everything if ":" not in a]
    elif bind_host == "::":
        chosen = everything
    else:
        return [bind_host]

    def usable(address: str) -> bool:
        try:
            return not ipaddress.ip_address(address).is_link_local
        except ValueError:
            return False

    return sorted((a for a in chosen if usable(a)), key=lambda a: ":" in a)


def harden_stun() -> None:
    """Datagrams that broke aioice or aiortc on the media port, made harmless.

    A STUN-looking datagram whose attributes do not parse is not STUN: aioice's parser
    raises ``struct.error`` (and others) for short attribute values where its caller expects
    ``ValueError``, and asyncio logs a traceback per datagram (anyone who reaches the port can
    fill the log; found by tests/fuzz). Every parse failure becomes ``ValueError``: the datagram
    goes on as non-STUN data, which the DTLS transport ignores."""
    import struct

    import aioice.stun

    if getattr(aioice.stun.parse_message, "_livefx", False):
        return
    original = aioice.stun.parse_message

    def parse_message(data: bytes, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(data, *args, **kwargs)
        except ValueError:
            raise
        except (struct.error, IndexError, KeyError, UnicodeDecodeError, TypeError) as exc:
            raise ValueError(f"not a STUN message: {exc}") from None

    parse_message._livefx = True  # type: ignore[attr-defined]
    aioice.stun.parse_message = parse_message

    # An empty datagram is nothing; aiortc's DTLS transport reads its first byte and its receive
    # loop (the session's media) died of the IndexError (found by tests/fuzz).
    import aioice.ice

    received = aioice.ice.StunProtocol.datagram_received

    def datagram_received(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
        if data:
            received(self, data, addr)

    aioice.ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]


def configure_ice(bind_host: str) -> list[str]:
    """Gather host candidates on ``gather_addresses(bind_host)`` in this process."""
    import aioice.ice

    harden_stun()

    if not hasattr(aioice.ice, "_livefx_original_hosts"):
        aioice.ice._livefx_original_hosts = aioice.ice.get_host_addresses  # type: ignore[attr-defined]
    addresses = gather_addresses(bind_host)
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]

    def hosts(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return (v4 if use_ipv4 else []) + (v6 if use_ipv6 else [])

    aioice.ice.get_host_addresses = hosts
    log.info("ICE host candidates on %s", ", ".join(addresses) or "no address")
    return addresses


def use_loopback_ice(enabled: bool = True) -> None:
    """Gather ICE host candidates on 127.0.0.1 only (aioice skips loopback by default).

    For LiveFX's own test and benchmark clients: no packet leaves the machine.
    """
    import aioice.ice

    if not hasattr(aioice.ice, "_livefx_original_hosts"):
        aioice.ice._livefx_original_hosts = aioice.ice.get_host_addresses  # type: ignore[attr-defined]
    if enabled:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    else:
        aioice.ice.get_host_addresses = aioice.ice._livefx_original_hosts  # type: ignore[attr-defined]


def peer_connection(ice_servers: Iterable[IceServer] = ()) -> RTCPeerConnection:
    """A peer connection with the configured STUN/TURN servers only (aiortc would otherwise use
    a public STUN server)."""
    servers = [RTCIceServer(s.url, s.username, s.credential) for s in ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


CONSENT_INTERVAL_S = 2.0  # aioice: 5 s; a vanished peer is found within ~8 s
CONSENT_FAILURES = 4  # aioice: 6


def keep_consent_with_media(pc: RTCPeerConnection, media_seen: Callable[[], float]) -> None:
    """Consent freshness (RFC 7675) that also counts authenticated media from the peer.

    aioice sends a consent check every ~5 s and closes the connection after six unanswered
    ones (~30 s for a peer that vanished). Here a check goes every ~2 s and four misses end it
    (~8 s). FFmpeg 8.0's WHIP muxer answers no STUN request once DTLS is up, so every FFmpeg
    session would end that way: a peer whose SRTP keeps decrypting (``media_seen()``: the
    monotonic time of its last decoded frame) is there and talking to us, and a miss does not
    count while its media arrives; the checks decide alone once it stops.
    """
    for transceiver in pc.getTransceivers():
        connection = getattr(transceiver.receiver.transport.transport, "_connection", None)
        if connection is None or getattr(connection, "_livefx_consent", False):
            continue
        connection._livefx_consent = True
        connection.query_consent = _consent_loop(connection, media_seen)


def _consent_loop(connection: Any, media_seen: Callable[[], float]) -> Callable[[], Any]:
    from aioice import stun

    async def query_consent() -> None:
        failures = 0
        while True:
            await asyncio.sleep(CONSENT_INTERVAL_S * (0.8 + 0.4 * random.random()))
            for pair in list(connection._nominated.values()):
                request = connection.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(
                        request,
                        pair.remote_addr,
                        integrity_key=connection.remote_password.encode("utf8"),
                        retransmissions=0,
                    )
                    failures = 0
                except stun.TransactionError:
                    if time.monotonic() - media_seen() < 2 * CONSENT_INTERVAL_S:
                        failures = 0  # no answer, but its media is arriving
                    else:
                        failures += 1
                if failures >= CONSENT_FAILURES:
                    log.info("ICE consent expired (no answer and no media for %d checks)", failures)
                    connection._query_consent_task = None
                    await connection.close()
                    return

    return query_consent
