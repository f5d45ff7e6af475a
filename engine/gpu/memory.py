"""Device memory and CUDA graphs of a chain: the ``Buffers`` arena (allocated once, freed
together), and capturing a list of ops into an instantiated graph, launching it, destroying it.

Imports cuda-python (through ``engine.gpu.driver``): import it only where the GPU path is chosen.
"""

from __future__ import annotations

from typing import Any

from engine.gpu import driver as cd
from engine.gpu.launch import Op

cu = cd.cu


class Buffers:
    """Device buffers of one chain, freed together."""

    def __init__(self) -> None:
        self._all: list[cd.DeviceBuffer] = []

    def alloc(self, nbytes: int) -> int:
        buf = cd.DeviceBuffer(nbytes)
        self._all.append(buf)
        return buf.ptr

    def close(self) -> None:
        for b in self._all:
            b.close()
        self._all.clear()


def record(stream: cd.Stream, ops: list[Op]) -> Any:
    """The ops captured from ``stream`` into a graph (not instantiated: the caller destroys it)."""
    mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
    cd.check(cu.cuStreamBeginCapture(stream.handle, mode), "cuStreamBeginCapture")
    try:
        for op in ops:
            op.run()
    except BaseException:
        status, graph = cu.cuStreamEndCapture(stream.handle)  # leave capture mode
        if status == cu.CUresult.CUDA_SUCCESS:
            cu.cuGraphDestroy(graph)
        raise
    return cd.check(cu.cuStreamEndCapture(stream.handle), "cuStreamEndCapture")


def instantiate(graph: Any) -> Any:
    """``graph`` instantiated; the graph itself is destroyed either way."""
    try:
        return cd.check(cu.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
    finally:
        cd.check(cu.cuGraphDestroy(graph), "cuGraphDestroy")


def capture(stream: cd.Stream, ops: list[Op]) -> Any:
    """The ops as one instantiated CUDA graph (launched with ``cuGraphLaunch``)."""
    return instantiate(record(stream, ops))


def launch_graph(exe: Any, stream: cd.Stream, what: str) -> None:
    cd.check(cu.cuGraphLaunch(exe, stream.handle), f"cuGraphLaunch ({what})")


def destroy_graphs(graphs: dict[Any, Any]) -> None:
    """Destroy every instantiated graph of ``graphs`` and empty it."""
    for exe in graphs.values():
        cu.cuGraphExecDestroy(exe)
    graphs.clear()
