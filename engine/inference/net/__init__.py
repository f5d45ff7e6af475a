"""LiveFX's own inference engine for its ONNX models, on its own kernels.

``load_net(model)`` reads an ONNX model once (``graph.NetGraph``); ``net.plan(shape)`` folds it
for one input shape and plans fused steps (``planners``, ``fused``) into a ``plan.Plan``: the
steps' structs, the fp16 weights and fp32 constants, and every tensor's place in one arena. The
GPU runs a plan with the kernels of kernels/net_kernels.cuh (``engine.gpu.net``), captured in
the frame's CUDA graph; the host build of the same per-element math (kernels/net_host.cpp,
``host.HostNet``) runs it on the CPU, which is how CI proves every shipped model equal to ONNX
Runtime without a GPU. Nothing here imports CUDA.
"""

from __future__ import annotations

from engine.inference.net.graph import NetGraph
from engine.inference.net.plan import Plan


class Net:
    """One model, planned per input shape (cached)."""

    def __init__(self, model: bytes, name: str = "model") -> None:
        self.graph = NetGraph(model, name)
        self.name = name
        self._plans: dict[tuple[int, ...], Plan] = {}

    def plan(self, shape: tuple[int, ...]) -> Plan:
        plan = self._plans.get(shape)
        if plan is None:
            from engine.inference.net.planners import plan_graph

            plan = self._plans[shape] = plan_graph(self.name, self.graph.fold(shape))
        return plan

    def check(self, batch: int = 1, size: tuple[int, int] = (64, 64)) -> Plan:
        """Plan once at a probe shape (the model's own size where fixed): an op, attribute or
        shape the kernels do not run raises ``ModelError`` naming it, at load."""
        return self.plan(self.graph.shape_for(batch, *size))


def load_net(model: bytes, name: str = "model") -> Net:
    net = Net(model, name)
    net.check()
    return net


__all__ = ["Net", "NetGraph", "Plan", "load_net"]
