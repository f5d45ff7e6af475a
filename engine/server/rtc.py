"""aiortc set-up that LiveFX needs, each a documented replacement of one aiortc/aioice attribute:

- encoders: LiveFX's speed settings (aiortc hard-codes slow ones), also used by the shared WHEP
  encoders (``make_video_codec``);
- jitter buffers: a video frame released as soon as its last (marked) packet is in, an audio
  packet as soon as it is next in sequence (aiortc holds four);
- ICE: host candidates on the address the server is bound to, loopback clients' own host
  candidates kept, IPv4 first (FFmpeg uses only the first candidate), no STUN unless configured,
  consent kept alive by authenticated media for peers that answer no consent checks (FFmpeg);
- DTLS: ECDHE-RSA suites as well as ECDHE-ECDSA (a client with an RSA certificate acting as the
  DTLS server), and the P-224 group of FFmpeg 8.0's own certificate (see ``dtls_check``);
- RTCP hooks: a sender's PLI/FIR and REMB reported to whoever encodes for it.

aiortc decides at import which functions to call, so each replacement is a module attribute set
here (``install_*``); nothing else in LiveFX patches aiortc.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fractions
import ipaddress
import logging
import multiprocessing
import random
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, jitterbuffer
from aiortc.codecs import h264, vpx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from engine.config import EncoderConfig, IceServer

log = logging.getLogger(__name__)

_settings = EncoderConfig()
_original_get_encoder: Any = None
VIDEO_CLOCK = fractions.Fraction(1, 90_000)

# -- encoders -----------------------------------------------------------------------------------


def make_video_codec(
    mime: str, width: int, height: int, bitrate: int, settings: EncoderConfig | None = None
) -> Any:
    """A libvpx (VP8) or libx264 (H.264 constrained baseline) encoder for real-time WebRTC."""
    s = settings or _settings
    mime = mime.lower()
    if mime == "video/vp8":
        codec = av.CodecContext.create("libvpx", "w")
        codec.width, codec.height = width, height
        codec.bit_rate = bitrate
        codec.pix_fmt = "yuv420p"
        codec.gop_size = s.keyframe_interval
        codec.qmin, codec.qmax = 2, 56
        codec.options = {
            "bufsize": str(bitrate),
            "cpu-used": str(s.vp8_cpu_used),
            "deadline": "realtime",
            "lag-in-frames": "0",
            "minrate": str(bitrate),
            "maxrate": str(bitrate),
            "noise-sensitivity": "0",
            "overshoot-pct": "15",
            "partitions": "0",
            "static-thresh": "1",
            "undershoot-pct": "100",
        }
        codec.thread_count = vpx.number_of_threads(width * height, multiprocessing.cpu_count())
        return codec
    if mime == "video/h264":
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.bit_rate = bitrate
        codec.pix_fmt = "yuv420p"
        codec.framerate = fractions.Fraction(h264.MAX_FRAME_RATE, 1)
        codec.time_base = fractions.Fraction(1, h264.MAX_FRAME_RATE)
        codec.gop_size = s.keyframe_interval
        codec.options = {"level": "31", "tune": "zerolatency", "preset": s.x264_preset}
        codec.profile = "Baseline"
        return codec
    raise ValueError(f"no LiveFX encoder for {mime}")


class EncodeTimes:
    """Recent video encode durations (for the audio delay that keeps A/V in sync)."""

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=60)

    def add(self, seconds: float) -> None:
        self._recent.append(seconds)

    def median_s(self) -> float:
        return statistics.median(self._recent) if self._recent else 0.0


encode_times = EncodeTimes()


def _stale(codec: Any, frame: av.VideoFrame, bitrate: int) -> bool:
    return bool(
        codec is None
        or frame.width != codec.width
        or frame.height != codec.height
        or abs(bitrate - codec.bit_rate) / codec.bit_rate > 0.1
    )


class FastVp8Encoder(vpx.Vp8Encoder):
    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if _stale(self.codec, frame, self.target_bitrate):
            self.codec = make_video_codec(
                "video/vp8", frame.width, frame.height, self.target_bitrate
            )
        start = time.perf_counter()
        result: tuple[list[bytes], int] = super().encode(frame, force_keyframe)
        encode_times.add(time.perf_counter() - start)
        return result


class FastH264Encoder(h264.H264Encoder):
    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Any:
        if _stale(self.codec, frame, self.target_bitrate):
            self.buffer_data = b""
            self.buffer_pts = None
            self.codec = make_video_codec(
                "video/h264", frame.width, frame.height, self.target_bitrate
            )
        return super()._encode_frame(frame, force_keyframe)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        start = time.perf_counter()
        result: tuple[list[bytes], int] = super().encode(frame, force_keyframe)
        encode_times.add(time.perf_counter() - start)
        return result


def _get_encoder(codec: RTCRtpCodecParameters) -> Any:
    mime = codec.mimeType.lower()
    if mime == "video/vp8":
        return FastVp8Encoder()
    if mime == "video/h264":
        return FastH264Encoder()
    return _original_get_encoder(codec)


def install_encoders(settings: EncoderConfig | None) -> None:
    """Use LiveFX's encoder settings for every sender in this process (None: aiortc's own)."""
    import aiortc.rtcrtpsender as sender

    global _settings, _original_get_encoder
    if _original_get_encoder is None:
        _original_get_encoder = sender.get_encoder
    if settings is None:
        sender.get_encoder = _original_get_encoder
        return
    _settings = settings
    sender.get_encoder = _get_encoder
    log.info("encoders: %s", settings)


# -- jitter buffers -----------------------------------------------------------------------------


class MarkerJitterBuffer(jitterbuffer.JitterBuffer):
    """aiortc's jitter buffer, releasing each frame as soon as it is whole.

    Video: aiortc releases a frame only when a packet of the *next* frame arrives (one frame
    interval, 33 ms at 30 fps, on every hop). RTP video senders set the marker bit on a frame's
    last packet; when the packets from the buffer's start up to a marked one are all present and
    share a timestamp, the frame goes out at once. Anything else (loss, reordering) falls back
    to aiortc's rule.

    Audio: every RTP packet is a whole frame; aiortc still waits for four more (80 ms of Opus).
    Here each packet goes out as it arrives if it is newer than the last one released; a packet
    that arrives after a newer one counts as lost (the decoder conceals the 20 ms gap).
    """

    def _remove_frame(self, sequence_number: int) -> jitterbuffer.JitterFrame | None:
        if self._origin is None:
            return None
        if not self._is_video:
            return self._next_audio()
        packets: list[Any] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                break
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return jitterbuffer.JitterFrame(
                    data=b"".join(p._data for p in packets), timestamp=packets[0].timestamp
                )
        return super()._remove_frame(sequence_number)

    def _next_audio(self) -> jitterbuffer.JitterFrame | None:
        assert self._origin is not None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is not None:
                self.remove(count + 1)
                data = packet._data  # type: ignore[attr-defined]  # set by aiortc's receiver
                return jitterbuffer.JitterFrame(data=data, timestamp=packet.timestamp)
        return None


def install_jitter_buffer(low_latency: bool) -> None:
    """Receivers in this process release frames as soon as they are whole (or aiortc's way)."""
    import aiortc.rtcrtpreceiver as receiver

    receiver.JitterBuffer = MarkerJitterBuffer if low_latency else jitterbuffer.JitterBuffer  # type: ignore[misc]


# -- ICE ----------------------------------------------------------------------------------------


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


def configure_ice(bind_host: str) -> list[str]:
    """Gather host candidates on ``gather_addresses(bind_host)`` in this process."""
    import aioice.ice

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


CONSENT_INTERVAL_S = 5.0
CONSENT_FAILURES = 6


def keep_consent_with_media(pc: RTCPeerConnection, media_seen: Callable[[], float]) -> None:
    """Consent freshness (RFC 7675) that also counts authenticated media from the peer.

    aioice sends a consent check every ~5 s and closes the connection after six unanswered
    ones. FFmpeg 8.0's WHIP muxer answers no STUN request once DTLS is up, so every FFmpeg
    session would end after ~30 s. A peer whose SRTP keeps decrypting (``media_seen()``: the
    monotonic time of its last decoded frame) is there and talking to us; the checks still run
    and decide alone when its media stops.
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


# -- DTLS ---------------------------------------------------------------------------------------

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


def dtls_check() -> list[str]:
    """Which client certificates this process's DTLS completes with, by an in-memory handshake.

    FFmpeg 8.0's WHIP muxer makes its own certificate on a P-224 key; OpenSSL accepts that only
    when P-224 is among its groups, which ``engine/server/openssl.cnf`` adds (set as
    ``OPENSSL_CONF`` before OpenSSL starts: ``engine.server``'s import). OpenSSL 4 has no P-224
    group at all. Returns the kinds that failed (empty: all fine).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID
    from OpenSSL import SSL

    install_dtls()
    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate

    def peer_context(key: Any) -> SSL.Context:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
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
    failed = []
    for kind, key in (
        ("RSA", rsa.generate_private_key(65537, 2048)),
        ("ECDSA P-256", ec.generate_private_key(ec.SECP256R1())),
        ("ECDSA P-224 (FFmpeg 8.0's own)", ec.generate_private_key(ec.SECP224R1())),
    ):
        server = SSL.Connection(peer_context(key), None)
        server.set_accept_state()
        client = SSL.Connection(ours, None)
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


# -- RTCP hooks ---------------------------------------------------------------------------------


def watch_sender(
    sender: Any,
    on_keyframe: Callable[[], None] | None = None,
    on_bitrate: Callable[[int], None] | None = None,
) -> None:
    """Call ``on_keyframe`` on the peer's PLI/FIR and ``on_bitrate`` on its REMB, after aiortc's
    own handling. A sender fed with encoded packets (WHEP) has no encoder of its own for aiortc
    to ask; these callbacks reach the shared one."""
    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RTCP_PSFB_FIR,
        RTCP_PSFB_PLI,
        RtcpPsfbPacket,
        unpack_remb_fci,
    )

    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        await original(packet)
        if not isinstance(packet, RtcpPsfbPacket):
            return
        if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR) and on_keyframe is not None:
            on_keyframe()
        elif packet.fmt == RTCP_PSFB_APP and on_bitrate is not None:
            with contextlib.suppress(ValueError):
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                if sender._ssrc in ssrcs:
                    on_bitrate(int(bitrate))

    sender._handle_rtcp_packet = handle
