"""Output shapes of the layers the kernels run, and the attribute checks that go with them.

``infer`` is called by ``NetGraph.fold`` for every node kept to run; an op, attribute or shape
the kernels do not handle raises ``ModelError`` naming the node.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.inference.net.graph import Node

ACTIVATIONS = {"Relu", "Sigmoid", "HardSwish", "Clip", "LeakyRelu", "Tanh", "HardSigmoid"}
ELEMENTWISE = {"Add", "Mul", "Sub", "Div"}
VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
RUNTIME_OPS = (
    ACTIVATIONS
    | ELEMENTWISE
    | VIEWS
    | {
        "Conv",
        "ConvTranspose",
        "AveragePool",
        "MaxPool",
        "GlobalAveragePool",
        "ReduceMean",
        "Resize",
        "DepthToSpace",
        "Pad",
        "Concat",
    }
)


class Unsupported(ModelError):
    pass


def refuse(model: str, node: Node, why: str) -> Unsupported:
    return Unsupported(f"{model}: {node.where()}: {why} (not supported by the kernels runtime)")


def conv_pads(
    model: str, node: Node, size: tuple[int, int], k: tuple[int, int], s: list[int], d: list[int]
) -> list[int]:
    """[top, left, bottom, right] from ``pads`` or ``auto_pad``."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise refuse(model, node, f"pads {pads} (2-D pads only)")
        return pads
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out: list[int] = [0, 0, 0, 0]
        for axis in (0, 1):
            o = -(-size[axis] // s[axis])
            total = max(0, (o - 1) * s[axis] + (k[axis] - 1) * d[axis] + 1 - size[axis])
            small, big = total // 2, total - total // 2
            out[axis], out[axis + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        return out
    raise refuse(model, node, f"auto_pad {auto}")


def _window(
    model: str, node: Node, x: tuple[int, ...], k: tuple[int, int]
) -> tuple[list[int], list[int], list[int]]:
    a = node.attrs
    s = list(a.get("strides", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    if len(s) != 2 or len(d) != 2 or min(s + d) < 1:
        raise refuse(model, node, f"strides {s} / dilations {d} (2-D, positive)")
    return s, d, conv_pads(model, node, (x[2], x[3]), k, s, d)


def _out(size: int, pad: int, k: int, s: int, d: int) -> int:
    return (size + pad - ((k - 1) * d + 1)) // s + 1


def broadcast(model: str, node: Node, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in np.broadcast_shapes(a, b))
    except ValueError as exc:
        raise refuse(model, node, f"shapes {a} and {b} do not broadcast") from exc


def infer(
    model: str, node: Node, shapes: dict[str, tuple[int, ...]], values: dict[str, np.ndarray]
) -> tuple[int, ...]:
    op, a = node.op, node.attrs
    if op not in RUNTIME_OPS:
        raise refuse(model, node, f"op {op}")
    if len(node.outputs) != 1 and op not in ("MaxPool",):
        raise refuse(model, node, f"{len(node.outputs)} outputs")
    if op == "MaxPool" and len([o for o in node.outputs if o]) > 1:
        raise refuse(model, node, "MaxPool's indices output")

    def shape(i: int) -> tuple[int, ...]:
        name = node.inputs[i]
        if name in shapes:
            return shapes[name]
        return tuple(values[name].shape)

    x = shape(0)
    if op in ACTIVATIONS:
        if op == "Clip" and any(i and i not in values for i in node.inputs[1:]):
            raise refuse(model, node, "Clip bounds that are not constants")
        return x
    if op in ELEMENTWISE:
        return broadcast(model, node, x, shape(1))
    if op in VIEWS:
        return _view_shape(model, node, x, values)
    if len(x) != 4:
        raise refuse(model, node, f"input of rank {len(x)} (NCHW only)")
    if op in ("Conv", "ConvTranspose"):
        return _conv_shape(model, node, x, shapes, values)
    if op in ("AveragePool", "MaxPool"):
        k = tuple(a.get("kernel_shape", []))
        if len(k) != 2:
            raise refuse(model, node, f"kernel_shape {list(k)}")
        if a.get("ceil_mode", 0):
            raise refuse(model, node, "ceil_mode=1")
        s, d, p = _window(model, node, x, (k[0], k[1]))
        if d != [1, 1]:
            raise refuse(model, node, f"dilations {d}")
        return (
            x[0],
            x[1],
            _out(x[2], p[0] + p[2], k[0], s[0], 1),
            _out(x[3], p[1] + p[3], k[1], s[1], 1),
        )
    if op == "GlobalAveragePool":
        return (x[0], x[1], 1, 1)
    if op == "ReduceMean":
        axes = list(a.get("axes", []))
        if len(node.inputs) > 1 and node.inputs[1]:
            axes = [int(v) for v in values[node.inputs[1]].ravel()]
        if sorted(ax % 4 for ax in axes) != [2, 3] or not a.get("keepdims", 1):
            raise refuse(model, node, f"axes {axes}, keepdims {a.get('keepdims', 1)} (H, W kept)")
        return (x[0], x[1], 1, 1)
    if op == "Resize":
        return _resize_shape(model, node, x, values)
    if op == "DepthToSpace":
        b = int(a["blocksize"])
        if x[1] % (b * b):
            raise refuse(model, node, f"{x[1]} channels for block {b}")
        return (x[0], x[1] // (b * b), x[2] * b, x[3] * b)
    if op == "Pad":
        p = pad_amounts(model, node, values)
        return (x[0], x[1], x[2] + p[0] + p[2], x[3] + p[1] + p[3])
    if op == "Concat":
        if a.get("axis", 1) % 4 != 1:
            raise refuse(model, node, f"Concat on axis {a.get('axis')} (channels only)")
        parts = [shapes[i] for i in node.inputs if i in shapes]
        if len(parts) != len(node.inputs) or any(p[:1] + p[2:] != x[:1] + x[2:] for p in parts):
            raise refuse(model, node, "Concat of constants or of different sizes")
        return (x[0], sum(p[1] for p in parts), x[2], x[3])
    raise refuse(model, node, f"op {op}")  # pragma: no cover


def _view_shape(
    model: str, node: Node, x: tuple[int, ...], values: dict[str, np.ndarray]
) -> tuple[int, ...]:
    from engine.inference.net.graph import evaluate

    dummy = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), x, [0] * len(x))
    try:
        ins: list[Any] = [dummy] + [values.get(i) for i in node.inputs[1:]]
        return tuple(evaluate(node, ins)[0].shape)
    except Exception as exc:
        raise refuse(model, node, f"a view of {x}: {exc}") from exc


def _conv_shape(
    model: str,
    node: Node,
    x: tuple[int, ...],
    shapes: dict[str, tuple[int, ...]],
    values: dict[str, np.ndarray],
) -> tuple[int, ...]:
    a = node.attrs
    if node.inputs[1] not in values or (
        len(node.inputs) > 2 and node.inputs[2] and node.inputs[2] not in values
    ):
        raise refuse(model, node, "weights that are not constants")
    w = values[node.inputs[1]]
    g = int(a.get("group", 1))
    if w.ndim != 4:
        raise refuse(model, node, f"weights of rank {w.ndim} (2-D convolutions only)")
    k = (int(w.shape[2]), int(w.shape[3]))
    s, d, p = _window(model, node, x, k)
    if node.op == "Conv":
        if x[1] != w.shape[1] * g or w.shape[0] % g:
            raise refuse(model, node, f"weights {w.shape} for {x[1]} channels in {g} groups")
        return (
            x[0],
            int(w.shape[0]),
            _out(x[2], p[0] + p[2], k[0], s[0], d[0]),
            _out(x[3], p[1] + p[3], k[1], s[1], d[1]),
        )
    if "output_shape" in a:
        raise refuse(model, node, "ConvTranspose's output_shape (give pads)")
    if a.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        raise refuse(model, node, f"ConvTranspose's auto_pad {a['auto_pad']}")
    if x[1] != w.shape[0] or x[1] % g:
        raise refuse(model, node, f"weights {w.shape} for {x[1]} channels in {g} groups")
    op_ = list(a.get("output_padding", [0, 0]))
    h = s[0] * (x[2] - 1) + op_[0] + (k[0] - 1) * d[0] + 1 - p[0] - p[2]
    wd = s[1] * (x[3] - 1) + op_[1] + (k[1] - 1) * d[1] + 1 - p[1] - p[3]
    return (x[0], int(w.shape[1]) * g, h, wd)


def resize_scales(
    model: str, node: Node, x: tuple[int, ...], values: dict[str, np.ndarray]
) -> tuple[tuple[int, int], tuple[float, float]]:
    """The output size and the scales (output / input) of H and W."""
    ins = [*node.inputs, "", "", ""]
    scales = values.get(ins[2]) if ins[2] else None
    sizes = values.get(ins[3]) if ins[3] else None
    if (ins[2] and scales is None) or (ins[3] and sizes is None):
        raise refuse(model, node, "scales or sizes that are not constants")
    if sizes is not None and sizes.size:
        sz = [int(v) for v in sizes.ravel()]
        if len(sz) != 4 or sz[:2] != list(x[:2]):
            raise refuse(model, node, f"sizes {sz} (H and W only)")
        return (sz[2], sz[3]), (sz[2] / x[2], sz[3] / x[3])
    if scales is None or not scales.size:
        raise refuse(model, node, "neither scales nor sizes")
    sc = [float(v) for v in scales.ravel()]
    if len(sc) != 4 or sc[:2] != [1.0, 1.0]:
        raise refuse(model, node, f"scales {sc} (H and W only)")
    return (int(np.floor(x[2] * sc[2])), int(np.floor(x[3] * sc[3]))), (sc[2], sc[3])


def _resize_shape(
    model: str, node: Node, x: tuple[int, ...], values: dict[str, np.ndarray]
) -> tuple[int, ...]:
    a = node.attrs
    if a.get("mode", "nearest") not in ("nearest", "linear"):
        raise refuse(model, node, f"mode {a.get('mode')}")
    coord = a.get("coordinate_transformation_mode", "half_pixel")
    if coord not in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"):
        raise refuse(model, node, f"coordinate_transformation_mode {coord}")
    if a.get("antialias", 0) or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise refuse(model, node, "antialias or keep_aspect_ratio_policy")
    if a.get("axes"):
        raise refuse(model, node, "axes")
    (h, w), _ = resize_scales(model, node, x, values)
    return (x[0], x[1], h, w)


def pad_amounts(model: str, node: Node, values: dict[str, np.ndarray]) -> list[int]:
    """[top, left, bottom, right] of a Pad on H and W."""
    if len(node.inputs) > 1 and node.inputs[1]:
        if node.inputs[1] not in values:
            raise refuse(model, node, "pads that are not constants")
        pads = [int(v) for v in values[node.inputs[1]].ravel()]
    else:
        pads = list(node.attrs.get("pads", []))
    if len(node.inputs) > 3 and node.inputs[3]:
        raise refuse(model, node, "Pad's axes input")
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
        raise refuse(model, node, f"pads {pads} (non-negative, H and W only)")
    mode = node.attrs.get("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        raise refuse(model, node, f"mode {mode}")
    return [pads[2], pads[3], pads[6], pads[7]]
