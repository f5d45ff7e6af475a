"""DTLS: the suites and groups LiveFX's handshakes offer, and a check of which peer
certificates complete."""

from __future__ import annotations

import contextlib
from typing import Any

DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)


def install_dtls() -> None:
    """Offer ECDHE-RSA as well as ECDHE-ECDSA suites in every DTLS handshake.

    aiortc offers ECDSA suites only. When the peer is the DTLS server (``a=setup:passive``, as
    FFmpeg's WHIP muxer always is) and its certificate is RSA, no suite is shared.
    """
    from aiortc.rtcdtlstransport import RTCCertificate

    if getattr(RTCCertificate._create_ssl_context, "_livefx", False):
        return
    original = RTCCertificate._create_ssl_context

    def create_ssl_context(self: Any, srtp_profiles: Any) -> Any:
        ctx = original(self, srtp_profiles=srtp_profiles)
        ctx.set_cipher_list(DTLS_CIPHERS)
        return ctx

    create_ssl_context._livefx = True  # type: ignore[attr-defined]
    RTCCertificate._create_ssl_context = create_ssl_context  # type: ignore[method-assign]
    harden_srtp()
    harden_connect()


def harden_connect() -> None:
    """A peer connection closed while aiortc's connect task is between two transports (a
    client that DELETEs its session right after the answer) raised ``InvalidStateError`` in
    that task, logged as "Task exception was never retrieved" (found by tests/fuzz). Once the
    connection is closed, that is simply the end of the task."""
    from aiortc import RTCPeerConnection
    from aiortc.exceptions import InvalidStateError

    if getattr(RTCPeerConnection, "_livefx_connect", False):
        return
    original = RTCPeerConnection._RTCPeerConnection__connect  # type: ignore[attr-defined]

    async def connect(self: Any) -> None:
        try:
            await original(self)
        except (InvalidStateError, ConnectionError):
            if self.connectionState != "closed" and not self._RTCPeerConnection__isClosed:
                raise

    setattr(RTCPeerConnection, "_RTCPeerConnection__connect", connect)  # noqa: B010
    setattr(RTCPeerConnection, "_livefx_connect", True)  # noqa: B010


def harden_srtp() -> None:
    """A datagram that pylibsrtp refuses with anything but its own ``Error`` (one longer than
    its buffer: ``ValueError("packet is too long")``) is dropped like any packet that fails
    authentication. aiortc catches ``pylibsrtp.Error`` only: before this, one oversized datagram
    in the SRTP range, from anyone who can send to the media port from the peer's address,
    ended the DTLS transport's receive loop and with it the session (found by tests/fuzz)."""
    import pylibsrtp

    session = pylibsrtp.Session
    if getattr(session, "_livefx_hardened", False):
        return
    for name in ("unprotect", "unprotect_rtcp"):
        original = getattr(session, name)

        def guarded(self: Any, packet: bytes, _original: Any = original) -> bytes:
            try:
                result: bytes = _original(self, packet)
            except (ValueError, TypeError) as exc:
                raise pylibsrtp.Error(str(exc)) from None
            return result

        setattr(session, name, guarded)
    setattr(session, "_livefx_hardened", True)  # noqa: B010


def dtls_check() -> list[str]:
    """Which peer certificates this process's DTLS completes with, by in-memory handshakes:
    RSA and ECDSA P-256 peers as the DTLS server (``a=setup:passive``) and as the client, and
    FFmpeg 8.0's own certificate (P-224, always the server).

    OpenSSL accepts P-224 only when it is among its groups, which ``engine/server/openssl.cnf``
    adds (set as ``OPENSSL_CONF`` before OpenSSL starts: ``engine.server``'s import); OpenSSL 4
    has no P-224 group at all. Returns the cases that failed (empty: all fine).
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from OpenSSL import SSL

    from engine.server.certs import self_signed

    install_dtls()
    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate

    def peer_context(key: Any) -> SSL.Context:
        cert = self_signed(key, "peer", days=1)
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_verify(SSL.VERIFY_PEER, lambda *args: True)
        ctx.use_certificate(cert)
        ctx.use_privatekey(key)
        ctx.set_cipher_list(b"ALL")
        ctx.set_tlsext_use_srtp(b"SRTP_AES128_CM_SHA1_80")
        return ctx

    ours = RTCCertificate.generateCertificate()._create_ssl_context(
        srtp_profiles=[SRTP_AES128_CM_SHA1_80]
    )
    rsa_key = rsa.generate_private_key(65537, 2048)
    p256 = ec.generate_private_key(ec.SECP256R1())
    failed = []
    for kind, key, peer_serves in (
        ("RSA peer as DTLS server", rsa_key, True),
        ("RSA peer as DTLS client", rsa_key, False),
        ("ECDSA P-256 peer as DTLS server", p256, True),
        ("ECDSA P-256 peer as DTLS client", p256, False),
        ("FFmpeg 8.0's own ECDSA P-224", ec.generate_private_key(ec.SECP224R1()), True),
    ):
        peer = SSL.Connection(peer_context(key), None)
        local = SSL.Connection(ours, None)
        server, client = (peer, local) if peer_serves else (local, peer)
        server.set_accept_state()
        client.set_connect_state()
        if not _handshake(client, server):
            failed.append(kind)
    return failed


def _handshake(client: Any, server: Any) -> bool:
    from OpenSSL import SSL

    for _ in range(12):
        for a, b in ((client, server), (server, client)):
            try:
                a.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error:
                return False
            with contextlib.suppress(SSL.WantReadError):
                b.bio_write(a.bio_read(65536))
    try:
        client.do_handshake()
        server.do_handshake()
    except SSL.Error:
        return False
    return True
