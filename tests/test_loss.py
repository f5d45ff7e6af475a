"""Loss recovery in LiveFX's receivers: a frame is released only whole, a hole is waited for
(retransmission) until its deadline, then the receiver asks for a keyframe and skips to it;
missing packets are asked for again. Packets are built by hand; time is a fake clock."""

from __future__ import annotations

import pytest

from engine.server.rtc import jitter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(jitter.time, "monotonic", c)
    return c


class Packet:
    """A VP8 RTP packet: ``first`` starts a frame (S=1, PID=0); ``key`` makes it a keyframe."""

    def __init__(self, seq: int, ts: int, first: bool, last: bool, key: bool = False) -> None:
        self.sequence_number = seq
        self.timestamp = ts
        self.marker = 1 if last else 0
        vp8 = bytes([0x00 if key else 0x01]) if first else b"\x9d"
        self.payload = bytes([0x10 if first else 0x00]) + vp8 + b"\x00" * 10
        self._data = bytes([seq % 256])


def frames(start_seq: int, start_frame: int, count: int, per: int = 3, key_at=()):
    """``count`` frames of ``per`` packets each."""
    out = []
    seq = start_seq
    for f in range(start_frame, start_frame + count):
        for k in range(per):
            out.append(Packet(seq, f * 3000, k == 0, k == per - 1, key=f in key_at))
            seq += 1
    return out


def feed(jb, packets, clock=None, step=0.0):
    released, plis = [], 0
    for p in packets:
        if clock is not None:
            clock.now += step
        pli, frame = jb.add(p)
        plis += pli
        if frame is not None:
            released.append(frame.timestamp // 3000)
    return released, plis


def test_keyframe_starts_are_recognised() -> None:
    assert jitter.keyframe_start(Packet(1, 0, first=True, last=False, key=True))
    assert not jitter.keyframe_start(Packet(1, 0, first=True, last=False, key=False))
    assert not jitter.keyframe_start(Packet(1, 0, first=False, last=True, key=True))

    class H264:
        payload = b"\x65"
        _data = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x00\x01\x65\x88"

    assert jitter.keyframe_start(H264())
    H264._data = b"\x00\x00\x00\x01\x41\x9a"  # a P slice
    assert not jitter.keyframe_start(H264())


def test_a_hole_filled_in_time_loses_nothing(clock) -> None:
    jb = jitter.MarkerJitterBuffer(capacity=128, is_video=True)
    packets = frames(1000, 0, 6, key_at=(0,))
    lost = packets.pop(4)  # frame 1's middle packet
    released, _ = feed(jb, packets[:9], clock, step=0.005)
    assert released == [0]  # frame 1 (and those behind it) wait for the hole
    clock.now += 0.01
    released2, _ = feed(jb, [lost, *packets[9:]])  # the retransmission, then the rest
    assert released + released2 == [0, 1, 2, 3, 4, 5]
    assert jb.gaps_filled == 1 and jb.gaps_given_up == 0


def test_a_hole_past_its_deadline_asks_for_a_keyframe_and_skips_to_it(clock) -> None:
    jb = jitter.MarkerJitterBuffer(capacity=128, is_video=True)
    packets = frames(2000, 0, 12, key_at=(0, 8))
    del packets[4]  # frame 1 never completes
    released, plis = feed(jb, packets, clock, step=0.011)  # ~33 ms per frame
    # Frame 1 is gone, and the frames after it up to the keyframe (they need it): frame 8
    # starts over. No incomplete frame was released, none out of order.
    assert 1 not in released and released[0] == 0
    assert released[1:] == list(range(8, 12))
    assert plis >= 1
    assert jb.gaps_given_up == 1


def test_waiting_for_a_keyframe_asks_again_and_drops_the_rest(clock) -> None:
    jb = jitter.MarkerJitterBuffer(capacity=128, is_video=True)
    packets = frames(3000, 0, 30, key_at=(0, 25))  # the keyframe comes ~0.8 s later
    del packets[4]
    released, plis = feed(jb, packets, clock, step=0.011)
    assert released[0] == 0 and released[1:] == list(range(25, 30))
    assert plis >= 3  # the first ask, then every PLI_INTERVAL_S while no keyframe came


def test_a_sender_that_sends_no_keyframe_is_decoded_again_after_a_second(clock) -> None:
    jb = jitter.MarkerJitterBuffer(capacity=512, is_video=True)
    packets = frames(6000, 0, 60, key_at=(0,))  # no keyframe after the first (PLI ignored)
    del packets[4]
    early, _ = feed(jb, packets[:90], clock, step=0.011)  # ~1 s: the hole, then waiting
    assert early == [0]
    later, _ = feed(jb, packets[90:], clock, step=0.011)
    # Decoding resumes with the frame after the lost one, and all that followed, in order.
    assert later == list(range(2, 2 + len(later))) and later[-1] >= 50
    assert jb.resumed_without_keyframe == 1


def test_the_deadline_follows_how_long_holes_take_to_fill(clock) -> None:
    jb = jitter.MarkerJitterBuffer(capacity=128, is_video=True)
    assert jb.deadline_s() == jitter.GAP_MIN_S
    jb._fills.extend([0.1] * 10)
    assert jb.deadline_s() == pytest.approx(0.22)
    jb._fills.extend([1.0] * 30)
    assert jb.deadline_s() == jitter.GAP_MAX_S


def test_missing_packets_are_asked_for_again(clock) -> None:
    nack = jitter.PersistentNackGenerator()
    p = frames(500, 0, 4)
    assert nack.add(p[0]) is False
    assert nack.add(p[2]) is True and nack.missing == {501}  # new: asked at once
    clock.now += 0.01
    assert nack.add(p[3]) is False  # asked 10 ms ago: not yet again
    clock.now += jitter.RENACK_S
    assert nack.add(p[4]) is True and nack.missing == {501}  # still missing: again
    for _ in range(jitter.NACK_TRIES):
        clock.now += jitter.RENACK_S
        nack.add(p[5])
    assert nack.missing == set()  # given up after NACK_TRIES
    assert nack.add(p[6]) is False


def test_a_keyframe_whose_first_packet_comes_late_is_still_found_whole(clock) -> None:
    jb = jitter.MarkerJitterBuffer(capacity=128, is_video=True)
    packets = frames(4000, 0, 12, key_at=(0, 6))
    del packets[4]  # frame 1 never completes: wait for a keyframe
    key_first = packets.pop(17)  # frame 6 (the keyframe) loses its first packet for a while
    released, plis = feed(jb, packets, clock, step=0.011)
    assert released == [0] and plis >= 1  # nothing after the hole: the keyframe is not whole
    late, _ = feed(jb, [key_first])  # its retransmission
    assert late == [6]
    released2, _ = feed(jb, frames(4000 + 35, 12, 4))
    assert released2 == list(range(7, 7 + len(released2)))  # the frames it was holding, in order
    assert len(released2) >= 8
