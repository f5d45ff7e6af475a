"""From a folded graph to steps: one planner per op or fused pattern.

Fused patterns (each one launch):

- convolution: [Pad →] Conv or ConvTranspose + bias [+ constant Add / Mul, folded into the bias
  and weights] [→ activation] [→ Add of a tensor of the same shape] [→ activation]; a
  per-channel gate multiplying the conv's input (``Mul(x, gate)`` read by the conv) is applied
  as the input is read;
- squeeze-and-excite: the pooled values (one global-average step) → 1×1 conv → activation
  [→ 1×1 conv → activation]: any 1×1 convs on a 1×1 input, one step;
- elementwise: ``a [× gate] op b`` (b: same shape, per channel, a constant) → activation.

Everything else is one step per op: pooling, global average, Resize, DepthToSpace, Pad, Concat.
Reshape, Flatten, Squeeze, Unsqueeze and Identity are views (no step). A fused step runs where
its last node was: the tensors inside a pattern have one reader, so nothing else waits on them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.inference.net import plan as P
from engine.inference.net.graph import Folded, Node
from engine.inference.net.shapes import ACTIVATIONS, VIEWS, pad_amounts, refuse, resize_scales

FP16_MAX = 65504.0


class Planner:
    def __init__(self, model: str, g: Folded) -> None:
        self.model, self.g = model, g
        self.shapes, self.values = g.shapes, g.values
        self.readers: dict[str, list[Node]] = defaultdict(list)
        for n in g.nodes:
            for i in n.inputs:
                if i:
                    self.readers[i].append(n)
        self.index = {id(n): k for k, n in enumerate(g.nodes)}
        self.done: set[int] = set()
        self.w16: list[np.ndarray] = []
        self.w_len = 0
        self.f32: list[np.ndarray] = []
        self.f_len = 0
        self.steps: list[tuple[int, P.Step]] = []
        self.views: dict[str, str] = {}
        self.deferred: dict[int, list[Node]] = defaultdict(list)  # reader → Pad / gate Mul
        self.gates: dict[str, Any] = {}  # a gate Mul's output → fused.Gate, for the Add after

    def defer(self, reader: Node, node: Node) -> None:
        """``node`` runs inside ``reader``'s step."""
        self.deferred[id(reader)].append(node)
        self.done.add(id(node))

    # -- helpers -----------------------------------------------------------------------------

    def only_reader(self, tensor: str) -> Node | None:
        """The node that alone reads ``tensor`` (None where several do, or it is an output)."""
        rs = self.readers.get(tensor, [])
        if len(rs) != 1 or tensor in self.g.outputs or id(rs[0]) in self.done:
            return None
        return rs[0]

    def runtime(self, name: str) -> bool:
        return name in self.shapes and name not in self.values

    def const(self, name: str) -> np.ndarray | None:
        return self.values.get(name) if name else None

    def weights(self, w: np.ndarray, node: Node) -> int:
        w = np.asarray(w, np.float32).ravel()
        if w.size and float(np.abs(w).max()) > FP16_MAX:
            raise refuse(self.model, node, "weights beyond fp16's range")
        off = self.w_len
        self.w16.append(w.astype(np.float16))
        self.w_len += w.size
        return off

    def consts(self, v: np.ndarray) -> int:
        v = np.asarray(v, np.float32).ravel()
        off = self.f_len
        self.f32.append(v)
        self.f_len += v.size
        return off

    def act_of(self, node: Node) -> tuple[int, float, float] | None:
        """An activation node as (kind, lo, hi), or None where ``node`` is not one we fuse."""
        op, a = node.op, node.attrs
        if op not in ACTIVATIONS:
            return None
        if op == "Relu":
            return (P.A_RELU, 0.0, 0.0)
        if op == "Sigmoid":
            return (P.A_SIGMOID, 0.0, 0.0)
        if op == "HardSwish":
            return (P.A_HARDSWISH, 0.0, 0.0)
        if op == "Tanh":
            return (P.A_TANH, 0.0, 0.0)
        if op == "LeakyRelu":
            return (P.A_LEAKY, float(a.get("alpha", 0.01)), 0.0)
        if op == "HardSigmoid":
            return (P.A_HARDSIGMOID, float(a.get("alpha", 0.2)), float(a.get("beta", 0.5)))
        lo, hi = float(a.get("min", -np.inf)), float(a.get("max", np.inf))
        ins = [*node.inputs, "", ""]
        if ins[1]:
            lo = float(np.asarray(self.values[ins[1]]).ravel()[0])
        if ins[2]:
            hi = float(np.asarray(self.values[ins[2]]).ravel()[0])
        return (P.A_CLIP, max(lo, -3.0e38), min(hi, 3.0e38))

    def add(self, last: Node, step: P.Step, nodes: list[Node]) -> None:
        for n in nodes:
            self.done.add(id(n))
        step.what = " → ".join(f"{n.op} {n.name}".strip() for n in nodes)
        self.steps.append((self.index[id(last)], step))

    def dims(self, name: str) -> tuple[int, int, int, int]:
        s = self.shapes[name]
        if len(s) != 4:
            raise ModelError(f"{self.model}: tensor {name!r} of shape {s} where NCHW is needed")
        return int(s[0]), int(s[1]), int(s[2]), int(s[3])

    def io_fields(self, x: str, y: str) -> dict[str, Any]:
        n, c, h, w = self.dims(x)
        _, co, ho, wo = self.dims(y)
        return {"n": n, "ci": c, "hi": h, "wi": w, "co": co, "ho": ho, "wo": wo}

    # -- the walk ----------------------------------------------------------------------------

    def run(self) -> P.Plan:
        from engine.inference.net import fused

        for node in self.g.nodes:
            if id(node) in self.done:
                continue
            planner = fused.PLANNERS.get(node.op)
            if node.op in VIEWS:
                self.views[node.outputs[0]] = node.inputs[0]
                self.done.add(id(node))
            elif planner is not None:
                planner(self, node)
            else:
                raise refuse(self.model, node, f"op {node.op}")
        steps = [s for _, s in sorted(self.steps, key=lambda t: t[0])]
        w16 = np.concatenate(self.w16) if self.w16 else np.zeros(1, np.float16)
        f32 = np.concatenate(self.f32) if self.f32 else np.zeros(1, np.float32)
        plan = P.Plan(
            self.model,
            self.g.input,
            self.g.input_shape,
            list(self.g.outputs),
            dict(self.shapes),
            steps,
            w16.view(np.uint16),
            f32,
            self.views,
        )
        for out in plan.outputs:
            if plan.base(out) == plan.input:
                raise ModelError(f"{self.model}: output {out!r} is the input itself")
        plan.assign_buffers()
        return plan


def plan_graph(model: str, g: Folded) -> P.Plan:
    return Planner(model, g).run()


__all__ = ["Planner", "pad_amounts", "plan_graph", "resize_scales"]
