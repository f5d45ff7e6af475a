"""aiortc set-up that LiveFX needs, each a documented replacement of one aiortc/aioice attribute:

- ``encoders``: LiveFX's speed settings (aiortc hard-codes slow ones), also used by the shared
  WHEP encoders (``make_video_codec``);
- ``jitter``: a video frame released as soon as its last (marked) packet is in, an audio packet
  as soon as it arrives (aiortc holds four);
- ``ice``: host candidates on the address the server is bound to, loopback clients' own host
  candidates kept, IPv4 first (FFmpeg uses only the first candidate), no STUN unless configured,
  consent kept alive by authenticated media for peers that answer no consent checks (FFmpeg);
- ``dtls``: ECDHE-RSA suites as well as ECDHE-ECDSA (a peer with an RSA certificate acting as the
  DTLS server), and the P-224 group of FFmpeg 8.0's own certificate (see ``dtls_check``);
- ``rtcp``: a sender's PLI/FIR and REMB reported to whoever encodes for it;
- ``hwcodec``: NVENC/NVDEC where PyAV's FFmpeg has them and they open here (``--hw-codecs``),
  used by ``encoders``.

aiortc decides at import which functions to call, so each replacement is a module attribute set
by an ``install_*``/``configure_*`` function here; nothing else in LiveFX patches aiortc.
"""

from engine.server.rtc import hwcodec
from engine.server.rtc.dtls import DTLS_CIPHERS, dtls_check, install_dtls
from engine.server.rtc.encoders import (
    VIDEO_CLOCK,
    EncodeTimes,
    FastH264Encoder,
    FastVp8Encoder,
    encode_times,
    install_encoders,
    livefx_encoder,
    make_video_codec,
)
from engine.server.rtc.ice import (
    CONSENT_FAILURES,
    CONSENT_INTERVAL_S,
    configure_ice,
    gather_addresses,
    keep_consent_with_media,
    own_addresses,
    peer_connection,
    use_loopback_ice,
)
from engine.server.rtc.jitter import MarkerJitterBuffer, install_jitter_buffer
from engine.server.rtc.rtcp import watch_sender

__all__ = [
    "CONSENT_FAILURES",
    "CONSENT_INTERVAL_S",
    "DTLS_CIPHERS",
    "VIDEO_CLOCK",
    "EncodeTimes",
    "FastH264Encoder",
    "FastVp8Encoder",
    "MarkerJitterBuffer",
    "configure_ice",
    "dtls_check",
    "encode_times",
    "gather_addresses",
    "hwcodec",
    "install_dtls",
    "install_encoders",
    "install_jitter_buffer",
    "keep_consent_with_media",
    "livefx_encoder",
    "make_video_codec",
    "own_addresses",
    "peer_connection",
    "use_loopback_ice",
    "watch_sender",
]
