"""SDP handling and the server's settings, without a network: offers' layout, candidates,
trickle fragments, ICE server headers, the server config's refusals, the jitter buffer."""

from __future__ import annotations

import pytest

from engine.config import IceServer, ServerConfig
from engine.errors import ConfigError
from engine.server import rtc, sdp, whip

# An offer as FFmpeg 8.0's WHIP muxer writes it (no candidates, setup passive, audio first).
FFMPEG_OFFER = """v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:46a402fc
a=ice-pwd:d5a7b1739cb4b3f8acc94e19ab993489
a=fingerprint:sha-256 B1:10:B8:9D:4D:D0:1E:5F:7E:52:3C:D5:81:6D:CA:D3:B5:3A:B0:63:52:D7:41:C2
a=setup:passive
a=mid:0
a=sendonly
a=msid:FFmpeg audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ssrc:2027367597 cname:FFmpeg
m=video 9 UDP/TLS/RTP/SAVPF 106 105
c=IN IP4 0.0.0.0
a=ice-ufrag:46a402fc
a=ice-pwd:d5a7b1739cb4b3f8acc94e19ab993489
a=setup:passive
a=mid:1
a=sendonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001e
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=106
""".replace("\n", "\r\n")


def test_a_broadcast_tools_offer_is_read() -> None:
    d = sdp.check_publish_offer(FFMPEG_OFFER)
    assert [m.kind for m in d.media] == ["audio", "video"]
    assert [m.direction for m in d.media] == ["sendonly", "sendonly"]
    assert d.media[1].codecs == ["H264", "rtx"] and d.bundle == ["0", "1"]
    assert d.ice_ufrag == "46a402fc" and d.media[1].candidates == []


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (lambda s: s.replace("a=sendonly", "a=recvonly"), 422, "a publisher sends"),
        (lambda s: s.split("m=video")[0], 422, "no video track"),
        (lambda s: s.replace("H264/90000", "AV1/90000"), 422, "no video codec in common"),
        (lambda s: s.replace("opus/48000/2", "PCMU/8000"), 422, "no audio codec in common"),
        (lambda s: s + s[s.index("m=video") :], 422, "one video track at most"),
        (lambda s: s + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", 422, "only audio"),
        (lambda s: "hello" + s, 400, "must start with v=0"),
        (lambda s: s + "garbage\r\n", 400, "not an SDP line"),
        (lambda s: s.replace("m=video 9", "m=video nine"), 400, "bad port"),
        (lambda s: s.replace("a=fingerprint", "a=fingerprunt"), 400, "no a=fingerprint"),
        (lambda s: s.replace("a=ice-pwd", "a=ice-pw"), 400, "no a=ice-pwd"),
    ],
)
def test_publish_offers_with_layouts_we_do_not_take_are_refused(change, status, message) -> None:
    with pytest.raises(sdp.SdpError, match=message) as info:
        sdp.check_publish_offer(change(FFMPEG_OFFER))
    assert info.value.status == status


def test_play_offers() -> None:
    offer = FFMPEG_OFFER.replace("a=sendonly", "a=recvonly").replace("H264", "VP8")
    assert sdp.check_play_offer(offer).of_kind("video")[0].direction == "recvonly"
    with pytest.raises(sdp.SdpError, match="a player receives"):
        sdp.check_play_offer(FFMPEG_OFFER)


def test_answers_get_rtcp_mux_only_once_per_section() -> None:
    answer = sdp.add_rtcp_mux_only(FFMPEG_OFFER)
    assert answer.count("a=rtcp-mux-only") == 2
    assert sdp.add_rtcp_mux_only(answer).count("a=rtcp-mux-only") == 2
    assert "a=rtcp-mux\r\na=rtcp-mux-only\r\n" in answer


def test_answer_codec_reads_the_first_payload_type() -> None:
    assert sdp.answer_codec(FFMPEG_OFFER, "video") == "H264"
    assert sdp.answer_codec(FFMPEG_OFFER, "audio") == "opus"
    assert sdp.answer_codec(FFMPEG_OFFER.replace("m=video 9", "m=video 0"), "video") is None


def test_a_loopback_server_keeps_only_candidates_on_this_machine() -> None:
    own = {"192.0.2.2", "fd00::2"}
    offer = FFMPEG_OFFER + "".join(
        f"a=candidate:1 1 udp 2130706431 {address} 5000 typ {kind}\r\n"
        for address, kind in [
            ("192.0.2.2", "host"),
            ("127.0.0.1", "host"),
            ("fd00:0:0:0:0:0:0:2", "host"),  # the same address, written out
            ("198.51.100.7", "host"),  # another machine
            ("203.0.113.9", "srflx"),  # beyond the machine
            ("abcd-1234.local", "host"),  # mDNS: would need multicast
        ]
    )
    kept = sdp.filter_candidates(offer, sdp.local_only(own))
    hosts = [line.split()[4] for line in kept.splitlines() if line.startswith("a=candidate")]
    assert hosts == ["192.0.2.2", "127.0.0.1", "fd00:0:0:0:0:0:0:2"]


def test_gather_addresses_follow_the_bind_address(monkeypatch) -> None:
    monkeypatch.setattr(rtc.ice, "_all_host_addresses", lambda: ["fd00::2", "fe80::1", "192.0.2.2"])
    assert rtc.gather_addresses("127.0.0.1") == ["127.0.0.1"]
    assert rtc.gather_addresses("::1") == ["::1"]
    assert rtc.gather_addresses("192.0.2.2") == ["192.0.2.2"]
    assert rtc.gather_addresses("0.0.0.0") == ["192.0.2.2"]
    assert rtc.gather_addresses("::") == ["192.0.2.2", "fd00::2"]  # IPv4 first, no link-local


def test_trickle_fragments() -> None:
    f = sdp.parse_fragment(
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
        "a=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host\r\n"
        "a=end-of-candidates\r\n"
    )
    assert (f.ufrag, f.pwd, f.end_of_candidates) == ("EsAw", "P2uYro0UCOQ4zxjKXaWCBui1", True)
    assert f.candidates == [("0", 0, "1387637174 1 udp 2122260223 192.0.2.1 61764 typ host")]
    with pytest.raises(sdp.SdpError, match="bad candidate"):
        sdp.parse_fragment("a=candidate:1 1 udp\r\n")
    with pytest.raises(sdp.SdpError, match="not an SDP fragment line"):
        sdp.parse_fragment("\x00\x01")


def test_ice_servers_become_link_headers_and_page_config() -> None:
    config = ServerConfig(
        ice_servers=(
            IceServer.parse("stun:stun.example.net:3478"),
            IceServer.parse("turn:turn.example.net?transport=udp,user,secret"),
        )
    )
    assert whip.link_headers(config) == [
        '<stun:stun.example.net:3478>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; '
        'credential="secret"; credential-type="password"',
    ]
    assert whip.ice_servers_json(config)[1] == {
        "urls": "turn:turn.example.net?transport=udp",
        "username": "user",
        "credential": "secret",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": "0.0.0.0"}, "set --token"),
        ({"token": "short"}, "at least 8"),
        ({"token": "has space in it"}, "printable ASCII"),
        ({"cert": "a.pem"}, "give both"),
        ({"allow_origins": ("example.com",)}, "allow_origin"),
        ({"allow_origins": ("https://example.com/path",)}, "allow_origin"),
        ({"max_players": -1}, "max_players"),
    ],
)
def test_server_config_refusals(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig(**kwargs)


def test_a_public_bind_is_allowed_with_a_token_or_no_auth() -> None:
    assert ServerConfig(host="0.0.0.0", token="long-enough-token").token
    assert ServerConfig(host="0.0.0.0", no_auth=True).no_auth
    assert ServerConfig(host="::1").loopback and ServerConfig(host="127.0.0.2").loopback


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://x", "not a stun"),
        ("stun:", "not a stun"),
        ("turn:turn.example.net", "TURN server"),
        ("stun:a b", "spaces"),
        ("turn:t.example,user", "URL or URL,username"),
        ('turn:t.example,us"er,pw', "quotes"),
    ],
)
def test_ice_server_refusals(text, message) -> None:
    with pytest.raises(ConfigError, match=message):
        IceServer.parse(text)


class _Packet:
    def __init__(self, seq: int, ts: int, marker: int = 0) -> None:
        self.sequence_number = seq
        self.timestamp = ts
        self.marker = marker
        self._data = bytes([seq % 256])


def test_audio_packets_go_out_as_they_arrive_and_late_ones_are_dropped() -> None:
    jb = rtc.MarkerJitterBuffer(capacity=16, prefetch=4)  # aiortc's audio settings
    out = [jb.add(_Packet(s, s * 960))[1] for s in (10, 11, 13, 12, 14)]
    assert [f.data[0] if f else None for f in out] == [10, 11, 13, None, 14]


def test_video_frames_go_out_on_the_marker_bit() -> None:
    jb = rtc.MarkerJitterBuffer(capacity=128, is_video=True)
    assert jb.add(_Packet(1, 3000))[1] is None
    frame = jb.add(_Packet(2, 3000, marker=1))[1]
    assert frame is not None and frame.data == bytes([1, 2]) and frame.timestamp == 3000
