"""The WebRTC server: HTTP and WebSocket signalling on one port, one pipeline per session.

aiortc stays here, at the edge: ``engine.pipeline``, ``engine.ops`` and ``engine.effects`` know
frames, not WebRTC. Importing this package imports aiortc.

FFmpeg 8.0's WHIP muxer signs its DTLS handshake with a P-224 key, a group OpenSSL's clients
leave out unless configured; ``openssl.cnf`` adds it. OpenSSL reads ``OPENSSL_CONF`` once, when
it starts, so it is set here, before aiortc (and with it OpenSSL) is imported; a value the user
set is kept. ``rtc.dtls_check`` says whether it took effect.
"""

import os
from pathlib import Path

os.environ.setdefault("OPENSSL_CONF", str(Path(__file__).with_name("openssl.cnf")))
