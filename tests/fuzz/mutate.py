"""Seeded mutators for the fuzz families: SDP, JSON messages, HTTP requests, images, datagrams.

Every function takes a ``random.Random`` and returns new bytes or text; nothing here touches the
network. Mutations are the kinds that break parsers: deleted, duplicated and swapped lines,
truncation, flipped and inserted bytes, numbers at their limits, overlong tokens, other line
endings, invalid UTF-8 and NUL, lines spliced from another offer, m-sections reordered.
"""

from __future__ import annotations

import json
import random
import re
import struct
import zlib
from typing import Any

EXTREME_NUMBERS = [
    "0", "-1", "1", "65535", "65536", "2147483647", "2147483648", "4294967295", "4294967296",
    "18446744073709551616", "-9223372036854775809", "1e308", "NaN", "Infinity", "0x10",
    "9" * 400, "00000000000000000001", "1.5", "",
]  # fmt: skip
ODD_STRINGS = [
    "", " ", "\x00", "\t", "%00", "%s%s%s%n", "'; DROP TABLE x; --", "../../../../etc/passwd",
    "\u202e", "\ud83d\ude00", "é", "\xff", "A" * 70_000, "a=" * 1000, "\r\n", "\n\n\n",
    "<script>alert(1)</script>", "${jndi:ldap://127.0.0.1/a}", "null", "true", "[]", "{}",
]  # fmt: skip
SDP_LINES = [
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "m=video 0 RTP/AVP 0",
    "a=rtpmap:96 VP8/90000", "a=rtpmap:96 H264/90000", "a=rtpmap:96 AV1/90000",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "a=fmtp:96 packetization-mode=0",
    "a=fmtp:96 profile-level-id=zzzzzz", "a=ssrc-group:FID 1 2", "a=ssrc:0 cname:x",
    "a=setup:active", "a=setup:passive", "a=setup:holdconn", "a=ice-ufrag:", "a=ice-pwd:x",
    "a=fingerprint:sha-1 00", "a=fingerprint:md5 AA:BB", "a=mid:", "a=mid:0",
    "a=group:BUNDLE 0 0 0", "a=group:BUNDLE 7", "a=extmap:0 urn:x", "a=extmap:16 urn:x",
    "a=extmap:15/sendonly urn:ietf:params:rtp-hdrext:sdes:mid", "a=rtcp:9 IN IP6 ::1",
    "a=candidate:1 1 udp 1 127.0.0.1 9 typ host", "a=candidate:1 1 udp 1 10.0.0.1 1 typ host",
    "a=candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype passive", "a=candidate:x",
    "a=candidate:1 2 udp 1 ::1 65535 typ relay raddr 0.0.0.0 rport 0", "a=end-of-candidates",
    "a=simulcast:send 0;1", "a=rid:0 send", "a=inactive", "a=recvonly", "a=sendonly",
    "a=sendrecv", "a=rtcp-mux-only", "a=rtcp-fb:* nack", "a=max-message-size:0",
    "a=sctp-port:0", "c=IN IP4 999.999.999.999", "c=IN IP6 ::ffff:1.2.3.4", "b=AS:-1",
    "t=0 0", "v=1", "o=- 0 0 IN IP4 0.0.0.0", "s=", "a=ice-options:ice2", "a=ice-lite",
]  # fmt: skip


def _lines(sdp: str) -> list[str]:
    return sdp.replace("\r\n", "\n").split("\n")


def _join(lines: list[str], rng: random.Random) -> str:
    ending = rng.choices(["\r\n", "\n", "\r", "\r\r\n"], [85, 8, 4, 3])[0]
    return ending.join(lines)


def mutate_sdp(rng: random.Random, seed: str, others: list[str]) -> str:
    """One to four mutations of ``seed``."""
    lines = [line for line in _lines(seed) if line]
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(14)
        i = rng.randrange(len(lines)) if lines else 0
        if not lines:
            lines = ["v=0"]
        elif op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3:  # a number at a limit
            lines[i] = re.sub(r"\d+", lambda _: rng.choice(EXTREME_NUMBERS), lines[i], count=1)
        elif op == 4:  # an overlong or odd token
            parts = lines[i].split(" ")
            parts[rng.randrange(len(parts))] = rng.choice(ODD_STRINGS)
            lines[i] = " ".join(parts)
        elif op == 5:
            lines.insert(i, rng.choice(SDP_LINES))
        elif op == 6:  # spliced from another real offer
            other = [line for line in _lines(rng.choice(others)) if line]
            lines.insert(i, rng.choice(other))
        elif op == 7:  # m-sections reordered
            starts = [k for k, line in enumerate(lines) if line.startswith("m=")]
            if len(starts) >= 2:
                head, sections = lines[: starts[0]], []
                for a, b in zip(starts, [*starts[1:], len(lines)], strict=True):
                    sections.append(lines[a:b])
                rng.shuffle(sections)
                lines = head + [line for s in sections for line in s]
        elif op == 8:  # a line cut short
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)]
        elif op == 9:  # key=value broken
            lines[i] = lines[i].replace("=", rng.choice(["", "==", " = ", ":"]), 1)
        elif op == 10:  # a whole attribute kind gone
            prefix = lines[i].split(":", 1)[0]
            lines = [line for line in lines if not line.startswith(prefix)] or ["v=0"]
        elif op == 11:  # many copies (a big offer)
            lines[i:i] = [lines[i]] * rng.choice([50, 500, 3000])
        elif op == 12:  # a byte flipped
            text = lines[i]
            if text:
                k = rng.randrange(len(text))
                lines[i] = text[:k] + chr(rng.randrange(1, 256)) + text[k + 1 :]
        else:  # whitespace games
            lines[i] = rng.choice([" ", "\t", ""]) + lines[i] + rng.choice([" ", "\t", "", "\x00"])
    out = _join(lines, rng)
    if rng.random() < 0.1:
        out = out[: rng.randrange(len(out) + 1)]
    return out


def sdp_bytes(rng: random.Random, text: str) -> bytes:
    """The offer as bytes; sometimes not UTF-8 at all."""
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.05:
        k = rng.randrange(len(data) + 1)
        data = data[:k] + rng.choice([b"\xff\xfe", b"\xc3", b"\x00", b"\xed\xa0\x80"]) + data[k:]
    if rng.random() < 0.02:
        data = "\ufeff".encode() + data
    return data


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**31, 2**63, -(2**64), 10**30, 0.5, 1e308, -1e-308])
    if kind == 3:
        return rng.choice(ODD_STRINGS[:14])
    if kind == 4:
        return rng.choice(["offer", "settings", "ping", "bye", "answer", "OFFER", "hello"])
    if kind == 5:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(40)))
    if kind == 6:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 7:
        return {rng.choice(["type", "sdp", "settings", "id", "x"]): random_json(rng, depth + 1)}
    return {str(random_json(rng, 3))[:20]: random_json(rng, depth + 1) for _ in range(3)}


def setting_value(rng: random.Random, name: str) -> Any:
    """A value for a setting, usually wrong."""
    return rng.choice([
        rng.choice(EXTREME_NUMBERS), rng.uniform(-1e6, 1e6), rng.randint(-5, 5), None, True,
        [], {}, rng.choice(ODD_STRINGS[:14]), rng.choice(["blur", "none", "gan", "replace"]),
        rng.choice(["cartoon", "enhance", "/etc/passwd", "x.onnx", "../../x.onnx"]),
        float("nan"), float("inf"), "#12345", "#gggggg", "red", name,
    ])  # fmt: skip


def ws_message(rng: random.Random, names: list[str], offer: str, others: list[str]) -> str:
    """A signalling message: a mutated valid one or something random."""
    kind = rng.randrange(8)
    if kind == 0:
        return json.dumps(random_json(rng))
    if kind == 1:
        return json.dumps(
            {
                "type": "offer",
                "sdp": mutate_sdp(rng, offer, others),
                "settings": {rng.choice(names): setting_value(rng, "x")},
            }
        )
    if kind in (2, 3):
        settings = {rng.choice([*names, "nope", ""]): setting_value(rng, n) for n in names[:3]}
        return json.dumps({"type": "settings", "settings": settings})
    if kind == 4:
        return json.dumps({"type": "ping", "id": random_json(rng)})
    if kind == 5:  # broken JSON
        text = json.dumps({"type": "settings", "settings": {"effect": "blur"}})
        return text[: rng.randrange(len(text))] + rng.choice(["", "}", "]", ",", "\\", '"'])
    if kind == 6:
        return rng.choice(["", " ", "null", "[]", "1", '"offer"', "{" * 5000, "[" * 100_000])
    return json.dumps(
        {
            "type": rng.choice(["offer", "settings"]),
            "sdp": random_json(rng),
            "settings": random_json(rng),
        }
    )


# -- images ---------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A PNG (8-bit greyscale) whose header says ``width`` × ``height``; the pixels are
    ``idat`` (compressed) or a zero image of that size when it is small."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\x00" * ((width + 1) * height)) if width * height < 10**6 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_header(width: int, height: int) -> bytes:
    """A JPEG that declares ``width`` × ``height`` (SOF0) and has no image data."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


def bomb_png(rng: random.Random) -> bytes:
    """Small on the wire, big once decoded: a zero image under the pixel limit (tens of MB
    once inflated) or one that declares far more than its data."""
    side = rng.choice([4000, 6000, 6300])
    raw = zlib.compressobj(9)
    rows = b"\x00" * (side + 1)
    data = b"".join(raw.compress(rows) for _ in range(side)) + raw.flush()
    return png(side, side, data)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b[rng.randrange(len(b) + 1) : 0] = rng.randbytes(rng.randrange(1, 32))
        elif op == 2 and b:
            k = rng.randrange(len(b))
            del b[k : k + rng.randrange(1, 64)]
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


# -- datagrams ----------------------------------------------------------------------------------


def datagram(rng: random.Random, ssrcs: list[int]) -> bytes:
    """Garbage shaped like what arrives on a media port: RTP, RTCP, STUN, DTLS, or noise."""
    kind = rng.randrange(6)
    size = rng.choice([0, 1, 2, 11, 12, 20, 100, 1200, 1500, rng.randrange(2000)])
    if kind == 0:  # RTP (sometimes with the peer's real SSRC)
        ssrc = rng.choice(ssrcs) if ssrcs and rng.random() < 0.5 else rng.getrandbits(32)
        head = struct.pack(
            ">BBHII",
            0x80 | rng.randrange(32),
            rng.choice([96, 97, 111, 0x80 | 96, rng.randrange(256)]),
            rng.getrandbits(16),
            rng.getrandbits(32),
            ssrc,
        )
        return head + rng.randbytes(max(0, size - 12))
    if kind == 1:  # RTCP: SR, RR, SDES, BYE, APP, RTPFB, PSFB with odd lengths
        head = struct.pack(
            ">BBH",
            0x80 | rng.randrange(32),
            rng.randrange(200, 207),
            rng.choice([0, 1, 0xFFFF, rng.getrandbits(16)]),
        )
        return head + rng.randbytes(max(0, size - 4))
    if kind == 2:  # STUN with random attributes and lengths
        mtype = rng.choice([0x0001, 0x0101, 0x0111, 0x0011, rng.getrandbits(14)])
        attrs = b"".join(
            struct.pack(
                ">HH",
                rng.choice(
                    [0x0006, 0x0008, 0x8028, 0x0024, 0x8029, 0x802A, 0x0025, rng.getrandbits(16)]
                ),
                rng.choice([0, 4, 8, 20, 0xFFFF]),
            )
            + rng.randbytes(rng.choice([0, 4, 8, 20]))
            for _ in range(rng.randrange(6))
        )
        return struct.pack(">HHI", mtype, rng.choice([len(attrs), 0, 0xFFFF]), 0x2112A442) + (
            rng.randbytes(12) + attrs
        )
    if kind == 3:  # DTLS records: any content type, epoch and length
        body = rng.randbytes(max(0, size - 13))
        return (
            struct.pack(
                ">BHHHIH",
                rng.choice([20, 21, 22, 23, 24, rng.randrange(20, 64)]),
                rng.choice([0xFEFD, 0xFEFF, 0x0303]),
                rng.getrandbits(16),
                rng.getrandbits(16),
                rng.getrandbits(32),
                rng.choice([len(body), 0, 0xFFFF]),
            )
            + body
        )
    if kind == 4:  # first byte in the gaps of RFC 7983's demultiplexing ranges
        return bytes([rng.choice([4, 19, 64, 79, 80, 127, 192, 255])]) + rng.randbytes(size)
    return rng.randbytes(size)
