"""SDP as the server reads and amends it: offers' layout, candidates, trickle fragments.

aiortc parses and answers offers; what it does not check (how many tracks a WHIP offer carries,
which way they go) or write (``a=rtcp-mux-only``) is here, on plain text, so that hostile input
meets simple line handling first. Every refusal is an ``SdpError`` with an HTTP status (400 for
text that is not SDP, 422 for SDP whose layout LiveFX does not take) and one line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import InputError

# An algorithm name and hex pairs (RFC 8122 §5: 2UHEX *(":" 2UHEX)), nothing else on the line.
FINGERPRINT = re.compile(r"^[A-Za-z0-9-]{1,16} [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*$")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
VIDEO_CODECS = ("VP8", "H264")  # what aiortc decodes and LiveFX encodes
AUDIO_CODECS = ("opus",)


class SdpError(InputError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class MediaSection:
    kind: str  # audio | video | application | …
    port: int
    direction: str = "sendrecv"
    mid: str | None = None
    codecs: list[str] = field(default_factory=list)  # encoding names in offer order
    candidates: list[str] = field(default_factory=list)  # the a=candidate: values
    # this section's own ICE credentials and DTLS fingerprints (the session level's apply too)
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprints: list[str] = field(default_factory=list)


@dataclass
class Description:
    media: list[MediaSection]
    bundle: list[str]
    ice_ufrag: str | None = None
    ice_pwd: str | None = None
    fingerprint: str | None = None  # the first anywhere

    def of_kind(self, kind: str) -> list[MediaSection]:
        return [m for m in self.media if m.kind == kind and m.port != 0]


def lines(sdp: str) -> list[str]:
    return [line.rstrip("\r") for line in sdp.split("\n") if line.strip()]


def parse(sdp: str) -> Description:
    """The layout of an SDP: its media sections, their direction, codecs and candidates."""
    if not sdp.startswith("v=0"):
        raise SdpError(400, "the body is not an SDP offer (it must start with v=0)")
    session_direction = "sendrecv"
    media: list[MediaSection] = []
    bundle: list[str] = []
    top = MediaSection(kind="session", port=0)  # what comes before the first m= line
    for line in lines(sdp):
        if len(line) < 2 or line[1] != "=":
            raise SdpError(400, f"not an SDP line: {line[:60]!r}")
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 3:
                raise SdpError(400, f"bad media line: {line[:60]!r}")
            try:
                port = int(parts[1].split("/")[0])
            except ValueError:
                raise SdpError(400, f"bad port in media line: {line[:60]!r}") from None
            media.append(MediaSection(kind=parts[0], port=port, direction=session_direction))
            continue
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        current = media[-1] if media else None
        if name in DIRECTIONS:
            if current is None:
                session_direction = name
            else:
                current.direction = name
        elif name == "group" and value.startswith("BUNDLE"):
            bundle = value.split()[1:]
        elif name in ("ice-ufrag", "ice-pwd", "fingerprint"):
            value = value.strip()
            if name == "fingerprint" and not FINGERPRINT.match(value):
                raise SdpError(400, f"bad DTLS fingerprint: {line[:80]!r}")
            target = current if current is not None else top
            if name == "fingerprint":
                target.fingerprints.append(value)
            elif name == "ice-ufrag":
                target.ice_ufrag = target.ice_ufrag or value
            else:
                target.ice_pwd = target.ice_pwd or value
        elif current is None:
            continue
        elif name == "mid":
            current.mid = value.strip()
        elif name == "rtpmap":
            fields = value.split(None, 1)
            encoding = fields[1] if len(fields) > 1 else ""
            current.codecs.append(encoding.split("/")[0])
        elif name == "candidate":
            current.candidates.append(value)
    for m in media:  # a section's own values, else the session level's
        m.ice_ufrag = m.ice_ufrag or top.ice_ufrag
        m.ice_pwd = m.ice_pwd or top.ice_pwd
        m.fingerprints = m.fingerprints or list(top.fingerprints)
    first = [top, *media]
    return Description(
        media=media,
        bundle=bundle,
        ice_ufrag=next((m.ice_ufrag for m in first if m.ice_ufrag), None),
        ice_pwd=next((m.ice_pwd for m in first if m.ice_pwd), None),
        fingerprint=next((m.fingerprints[0] for m in first if m.fingerprints), None),
    )


def _check_transport(d: Description, role: str) -> None:
    """The sections that carry a transport need ICE credentials and a DTLS fingerprint, their
    own or the session level's: the first active one (a BUNDLE group's transport is the first
    section's in aiortc) and any outside the group. aiortc asserts on a fingerprint-less
    transport after it has answered."""
    active = [m for m in d.media if m.port != 0]
    owners = active[:1] + [m for m in active[1:] if m.mid is None or m.mid not in d.bundle]
    for m in owners:
        for what, value in (
            ("a=ice-ufrag", m.ice_ufrag),
            ("a=ice-pwd", m.ice_pwd),
            ("a=fingerprint", m.fingerprints),
        ):
            if not value:
                raise SdpError(
                    400,
                    f"{role}: the offer has no {what} for its {m.kind} section "
                    "(WebRTC needs ICE and DTLS)",
                )


def _one_of_each(d: Description, role: str) -> tuple[MediaSection | None, MediaSection | None]:
    for kind in ("audio", "video"):
        if len(d.of_kind(kind)) > 1:
            raise SdpError(
                422, f"{role}: one {kind} track at most; this offer has {len(d.of_kind(kind))}"
            )
    others = sorted({m.kind for m in d.media if m.port != 0} - {"audio", "video"})
    if others:
        raise SdpError(422, f"{role}: only audio and video are taken; this offer has {others[0]}")
    audio = d.of_kind("audio")
    video = d.of_kind("video")
    return (audio[0] if audio else None), (video[0] if video else None)


# Who sends in each role: (role, the directions its tracks may have, what it does).
PUBLISH = ("WHIP", ("sendonly", "sendrecv"), "a publisher sends (sendonly)")
PLAY = ("WHEP", ("recvonly", "sendrecv"), "a player receives (recvonly)")


def _check_role(sdp: str, role: tuple[str, tuple[str, ...], str]) -> Description:
    name, directions, does = role
    d = parse(sdp)
    audio, video = _one_of_each(d, name)
    if video is None:
        raise SdpError(422, f"{name}: the offer has no video track (LiveFX processes video)")
    for m in (audio, video):
        if m is not None and m.direction not in directions:
            raise SdpError(422, f"{name}: the {m.kind} track is {m.direction}; {does}")
    _check_codecs(video, VIDEO_CODECS)
    _check_transport(d, name)
    return d


def check_publish_offer(sdp: str) -> Description:
    """A WHIP offer: one video track (VP8 or H.264) and at most one (Opus) audio track, sent
    to us."""
    d = _check_role(sdp, PUBLISH)
    audio = d.of_kind("audio")
    if audio:
        _check_codecs(audio[0], AUDIO_CODECS)
    return d


def check_play_offer(sdp: str) -> Description:
    """A WHEP offer: a video track (and at most one audio track) that we send."""
    return _check_role(sdp, PLAY)


def check_sendrecv_offer(sdp: str) -> Description:
    """A browser's or a plain peer's offer on /offer or /ws: one video track, at most one audio."""
    d = parse(sdp)
    _, video = _one_of_each(d, "offer")
    if video is None:
        raise SdpError(400, "cannot use this offer: it has no video track")
    _check_transport(d, "offer")
    return d


def _check_codecs(m: MediaSection, accepted: tuple[str, ...]) -> None:
    names = {c.lower() for c in m.codecs}
    if not names & {a.lower() for a in accepted}:
        offered = ", ".join(dict.fromkeys(m.codecs)) or "none"
        raise SdpError(
            422,
            f"no {m.kind} codec in common: offered {offered}; LiveFX takes {', '.join(accepted)}",
        )


def answer_codec(answer: str, kind: str) -> str | None:
    """The codec the answer chose for the first ``kind`` section (its first payload type)."""
    chosen: str | None = None
    pt: str | None = None
    in_kind = False
    for line in lines(answer):
        if line.startswith("m="):
            if chosen or pt:
                break
            parts = line[2:].split()
            in_kind = parts[0] == kind and len(parts) > 3 and parts[1] != "0"
            pt = parts[3] if in_kind else None
        elif in_kind and pt and line.startswith(f"a=rtpmap:{pt} "):
            chosen = line.split(None, 1)[1].split("/")[0]
            break
    return chosen


def add_rtcp_mux_only(sdp: str) -> str:
    """``a=rtcp-mux-only`` after every ``a=rtcp-mux`` (RFC 8858; RFC 9725 asks for it)."""
    out: list[str] = []
    present = "a=rtcp-mux-only" in sdp
    for line in lines(sdp):
        out.append(line)
        if line == "a=rtcp-mux" and not present:
            out.append("a=rtcp-mux-only")
    return "\r\n".join(out) + "\r\n"


def candidate_address(value: str) -> tuple[str, str] | None:
    """(address, type) of an ``a=candidate:`` value, or None if it is malformed."""
    parts = value.split()
    if len(parts) < 8 or parts[6] != "typ":
        return None
    return parts[4], parts[7]


def filter_candidates(sdp: str, keep: Callable[[str, str], bool]) -> str:
    """Drop the ``a=candidate:`` lines for which ``keep(address, type)`` is false."""
    out = []
    for line in lines(sdp):
        if line.startswith("a=candidate:"):
            parsed = candidate_address(line[len("a=candidate:") :])
            if parsed is None or not keep(*parsed):
                continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def local_only(own: set[str]) -> Callable[[str, str], bool]:
    """A candidate a loopback-bound server can reach without leaving the machine: a host or
    peer-reflexive candidate on a loopback address or one of this machine's own addresses.
    mDNS names are dropped (resolving them means multicast on the LAN)."""
    own_ips = {_normal(a) for a in own}

    def keep(address: str, kind: str) -> bool:
        if kind not in ("host", "prflx"):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return ip.is_loopback or str(ip) in own_ips

    return keep


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


# -- trickle ICE (RFC 8840 fragments) ------------------------------------------------------------


@dataclass
class Fragment:
    ufrag: str | None
    pwd: str | None
    candidates: list[tuple[str | None, int, str]]  # (mid, m-line index, candidate value)
    end_of_candidates: bool


def parse_fragment(text: str) -> Fragment:
    """An ``application/trickle-ice-sdpfrag`` body."""
    ufrag = pwd = None
    candidates: list[tuple[str | None, int, str]] = []
    end = False
    mid: str | None = None
    index = -1
    for line in lines(text):
        if len(line) < 2 or line[1] != "=":
            raise SdpError(400, f"not an SDP fragment line: {line[:60]!r}")
        if line.startswith("m="):
            index += 1
            mid = None
            continue
        name, _, value = line[2:].partition(":")
        if name == "ice-ufrag":
            ufrag = value.strip()
        elif name == "ice-pwd":
            pwd = value.strip()
        elif name == "mid":
            mid = value.strip()
        elif name == "candidate":
            if candidate_address(value) is None:
                raise SdpError(400, f"bad candidate: {value[:60]!r}")
            candidates.append((mid, max(index, 0), value))
        elif name == "end-of-candidates":
            end = True
    return Fragment(ufrag=ufrag, pwd=pwd, candidates=candidates, end_of_candidates=end)
