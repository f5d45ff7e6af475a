"""Several sessions' pipelines run side by side, each over its own clip on its own thread: what
the shared inference worker's tests compare against each session run alone (test_scaling.py on
the cpu pipeline, test_cuda.py on a GPU, gpu_standin.py on the stand-in driver). No pytest and
no conftest here: the stand-in and the lent GPU machine import it too."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any


def frame_bytes(frame: Any) -> bytes:
    """An output frame's Y, U and V planes, one after another (for bit-for-bit comparison)."""
    return frame.y.tobytes() + frame.u.tobytes() + frame.v.tobytes()


def run_sessions(
    pipes: Sequence[Any], clips: Sequence[Sequence[Any]], *, lockstep: bool, join_s: float
) -> list[list[bytes]]:
    """Each pipeline over its clip on a thread of its own; every output frame's bytes, per
    pipeline. ``lockstep``: the threads meet at a barrier before each frame, so the sessions'
    inputs reach a shared worker together (a batch)."""
    outs: list[list[bytes]] = [[] for _ in pipes]
    go = threading.Barrier(len(pipes)) if lockstep else None

    def one(i: int) -> None:
        for f in clips[i]:
            if go is not None:
                go.wait()
            outs[i].append(frame_bytes(pipes[i].process(f)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(pipes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_s)
    return outs
