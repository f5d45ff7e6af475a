"""RTCP hooks: a sender's keyframe requests and bitrate estimates reported to its encoder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


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
