"""An ONNX graph read for the net engine, and folded for one input shape.

``NetGraph`` reads the model once: its initializers and ``Constant`` nodes become NumPy arrays
(fp16 weights included), its nodes a plain list. ``fold(shape)`` then takes a concrete input
shape (batch, channels, height, width) and walks the nodes in order: a node whose inputs are all
known values is evaluated here with NumPy (the shape-only subgraphs: ``Shape``, ``Gather``,
``Concat``, ``Reshape``, ``Slice``, ``Cast`` …, which ``enhance.onnx``'s padding is), and every
other node is kept, with the shape of each tensor it makes. What remains are the layers the
kernels run. An op, attribute or shape the kernels do not handle is a ``ModelError`` naming
it, here or in the planner, never a wrong result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import ModelError

# Ops evaluated here when all their inputs are known values.
FOLDABLE = {
    "Add",
    "Cast",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Div",
    "Flatten",
    "Gather",
    "Identity",
    "Mul",
    "Neg",
    "Range",
    "Reshape",
    "Shape",
    "Slice",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
}


@dataclass
class Node:
    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def where(self) -> str:
        return f"{self.op} node {self.name!r}" if self.name else f"{self.op} node"


@dataclass
class Folded:
    """What runs: ``nodes`` in order, ``shapes`` of every runtime tensor, ``values`` of every
    known one (weights, folded constants)."""

    input: str
    input_shape: tuple[int, ...]
    outputs: list[str]
    nodes: list[Node]
    shapes: dict[str, tuple[int, ...]]
    values: dict[str, np.ndarray]


def _attr(a: Any) -> Any:
    from onnx import helper, numpy_helper

    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode()
    if hasattr(v, "dims") and hasattr(v, "data_type"):  # a TensorProto
        return numpy_helper.to_array(v)
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode() for x in v]
    return v


class NetGraph:
    """One ONNX model (bytes), read once; ``fold`` per input shape."""

    def __init__(self, model: bytes, name: str = "model") -> None:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError as exc:  # pragma: no cover - the gpu extra brings it
            raise ModelError(
                f"{name}: the kernels runtime reads ONNX with the onnx package: {exc}"
            ) from exc
        self.name = name
        try:
            proto = onnx.load_from_string(model)
        except Exception as exc:
            raise ModelError(f"{name}: not a readable ONNX model: {exc}") from exc
        g = proto.graph
        self.values: dict[str, np.ndarray] = {}
        for t in g.initializer:
            self.values[t.name] = numpy_helper.to_array(t)
        self.nodes = [
            Node(
                n.op_type,
                n.name,
                list(n.input),
                list(n.output),
                {a.name: _attr(a) for a in n.attribute},
            )
            for n in g.node
        ]
        for n in self.nodes:
            if n.op == "Constant" and "value" not in n.attrs:
                raise ModelError(f"{name}: {n.where()}: only a tensor 'value' is supported")
        inputs = [i for i in g.input if i.name not in self.values]
        if len(inputs) != 1:
            raise ModelError(
                f"{name}: the kernels runtime takes one image input, not {len(inputs)}"
            )
        dims = inputs[0].type.tensor_type.shape.dim
        if len(dims) != 4:
            raise ModelError(f"{name}: the input must be NCHW (rank 4), not rank {len(dims)}")
        self.input = inputs[0].name
        self.input_dims: list[int | None] = [d.dim_value if d.dim_value > 0 else None for d in dims]
        self.outputs = [o.name for o in g.output]

    def shape_for(self, batch: int, height: int | None, width: int | None) -> tuple[int, ...]:
        """The input shape at this batch size (and size, where the model's is free)."""
        c, h, w = self.input_dims[1:]
        if c is None:
            raise ModelError(f"{self.name}: the input's channel count must be fixed")
        h = h if h is not None else height
        w = w if w is not None else width
        if h is None or w is None:
            raise ModelError(f"{self.name}: the input's size is free: give one")
        return (batch, c, h, w)

    def fold(self, shape: tuple[int, ...]) -> Folded:
        fixed = self.input_dims
        for axis, (want, got) in enumerate(zip(fixed, shape, strict=True)):
            if axis and want is not None and want != got:
                raise ModelError(f"{self.name}: input dimension {axis} is {want}, not {got}")
        values = dict(self.values)
        shapes: dict[str, tuple[int, ...]] = {self.input: tuple(shape)}
        kept: list[Node] = []
        from engine.inference.net import shapes as shape_rules

        for node in self.nodes:
            ins = [i for i in node.inputs if i]
            if node.op == "Constant":
                values[node.outputs[0]] = np.asarray(node.attrs["value"])
                continue
            if node.op == "Shape" and ins[0] in shapes:
                values[node.outputs[0]] = np.asarray(shapes[ins[0]], np.int64)
                continue
            if node.op in FOLDABLE and all(i in values for i in ins):
                try:
                    outs = evaluate(node, [values[i] if i else None for i in node.inputs])
                except ModelError:
                    raise
                except Exception as exc:
                    raise ModelError(f"{self.name}: {node.where()}: cannot fold: {exc}") from exc
                for name, v in zip(node.outputs, outs, strict=False):
                    values[name] = v
                continue
            missing = [i for i in ins if i not in values and i not in shapes]
            if missing:
                raise ModelError(f"{self.name}: {node.where()} reads {missing[0]!r}, made nowhere")
            out_shape = shape_rules.infer(self.name, node, shapes, values)
            for name in node.outputs[:1]:
                shapes[name] = out_shape
            kept.append(node)
        for out in self.outputs:
            if out not in shapes:
                raise ModelError(f"{self.name}: output {out!r} is a constant; nothing to run")
        return Folded(self.input, tuple(shape), self.outputs, kept, shapes, values)


def _ints(v: np.ndarray | None) -> list[int]:
    return [] if v is None else [int(x) for x in np.asarray(v).ravel()]


def evaluate(node: Node, xs: list[Any]) -> list[np.ndarray]:
    """One foldable node on known values (NumPy, ONNX semantics for the cases models use)."""
    op, a = node.op, node.attrs
    x = xs[0]
    assert x is not None or op == "Range"
    if op == "Identity":
        return [x]
    if op == "Cast":
        from onnx import helper

        return [x.astype(helper.tensor_dtype_to_np_dtype(a["to"]))]
    if op in ("Add", "Sub", "Mul", "Div"):
        y = xs[1]
        fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply}.get(op)
        if fn is not None:
            return [fn(x, y).astype(np.result_type(x, y))]
        if np.issubdtype(x.dtype, np.integer):
            return [np.floor_divide(x, y)]  # ONNX integer Div truncates; shapes are positive
        return [np.divide(x, y)]
    if op == "Neg":
        return [-x]
    if op == "Concat":
        return [np.concatenate([v for v in xs if v is not None], axis=a.get("axis", 0))]
    if op == "ConstantOfShape":
        fill = a.get("value", np.zeros(1, np.float32))
        return [np.full(_ints(x), np.asarray(fill).ravel()[0], dtype=np.asarray(fill).dtype)]
    if op == "Gather":
        return [np.take(x, xs[1], axis=a.get("axis", 0))]
    if op == "Reshape":
        shape = _ints(xs[1])
        if not a.get("allowzero", 0):
            shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x.reshape(shape)]
    if op == "Flatten":
        axis = a.get("axis", 1)
        return [x.reshape(int(np.prod(x.shape[:axis])), -1)]
    if op == "Transpose":
        return [np.transpose(x, a.get("perm"))]
    if op in ("Squeeze", "Unsqueeze"):
        axes = _ints(xs[1]) if len(xs) > 1 and xs[1] is not None else list(a.get("axes", []))
        if op == "Squeeze":
            return [np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)]
        out = x
        for ax in sorted(ax % (x.ndim + len(axes)) for ax in axes):
            out = np.expand_dims(out, ax)
        return [out]
    if op == "Slice":
        starts, ends = _ints(xs[1]), _ints(xs[2])
        axes = _ints(xs[3]) if len(xs) > 3 and xs[3] is not None else list(range(len(starts)))
        steps = _ints(xs[4]) if len(xs) > 4 and xs[4] is not None else [1] * len(starts)
        index = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
            n = x.shape[ax]
            e = max(min(e, n), -n - 1) if st < 0 else e
            index[ax] = slice(s, e if abs(e) < 2**62 else None, st)
        return [x[tuple(index)]]
    if op == "Range":
        start, limit, delta = (np.asarray(v).item() for v in xs[:3])
        return [np.arange(start, limit, delta).astype(np.asarray(xs[0]).dtype)]
    raise ModelError(f"{node.where()}: cannot fold {op}")
