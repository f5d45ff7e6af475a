"""The PyTorch peer of LiveFX's net engine, for the GPU benchmark (``benchmarks/gpu.py``).

``peer(folded, device, dtype, channels_last)`` builds a ``torch.nn.Module`` from the same
folded ONNX graph (``engine.inference.net.graph.Folded``) LiveFX's planner plans from: the
same nodes, the same constants, the same shapes, so the benchmark compares like with like
(no onnx2torch). Each node is one PyTorch call: ``F.conv2d`` / ``F.conv_transpose2d`` (cuDNN
on a GPU), ``F.interpolate`` where it computes exactly what the ONNX ``Resize`` asks for (else
gathers along precomputed source indices), ``F.avg_pool2d`` / ``F.max_pool2d``, ``F.pad``,
``F.pixel_shuffle`` … A node the planner would refuse is refused here too (``ModelError``).

The module's ``forward(x)`` returns the outputs in ``folded.outputs`` order. Its constants are
buffers, so ``.to(device, dtype)`` and ``.to(memory_format=torch.channels_last)`` apply to
them. ``tests/test_torch_peer.py`` holds every shipped model, in fp32 on the CPU, to ONNX
Runtime. PyTorch is a peer in the benchmark, never a LiveFX dependency: only the benchmark and
that test import this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.errors import ModelError
from engine.inference.net.graph import Folded, Node
from engine.inference.net.shapes import (
    ACTIVATIONS,
    ELEMENTWISE,
    VIEWS,
    conv_pads,
    pad_amounts,
    resize_scales,
)

Env = dict[str, Tensor]
Layer = Callable[[Env], Tensor]


def _refuse(node: Node, why: str) -> ModelError:
    return ModelError(f"torch peer: {node.where()}: {why}")


def _symmetric(pads: list[int], k: tuple[int, int] | None = None) -> bool:
    """[top, left, bottom, right] that PyTorch's own ``padding=(top, left)`` expresses."""
    if pads[0] != pads[2] or pads[1] != pads[3]:
        return False
    return k is None or (pads[0] <= k[0] // 2 and pads[1] <= k[1] // 2)


def _torch_pad(pads: list[int]) -> tuple[int, int, int, int]:
    """[top, left, bottom, right] as ``F.pad``'s (left, right, top, bottom)."""
    return (pads[1], pads[3], pads[0], pads[2])


def resize_source(
    out: int, inn: int, scale: float, coord: str, mode: str, nearest: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ONNX ``Resize`` along one axis, as ONNX Runtime computes it (float32 coordinates):
    (first source index, second source index, weight of the second) per output index. Nearest:
    both indices equal and the weight 0."""
    x = np.arange(out, dtype=np.float32)
    s = np.float32(scale)
    if coord == "half_pixel":
        o = (x + np.float32(0.5)) / s - np.float32(0.5)
    elif coord == "pytorch_half_pixel":
        o = (x + np.float32(0.5)) / s - np.float32(0.5) if out > 1 else np.zeros_like(x)
    elif coord == "asymmetric":
        o = x / s
    elif coord == "align_corners":
        o = x * np.float32((inn - 1) / (out - 1)) if out > 1 else np.zeros_like(x)
    else:
        raise ModelError(f"torch peer: Resize coordinate_transformation_mode {coord}")
    if mode == "nearest":
        fl = np.floor(o)
        if nearest == "floor":
            i = fl
        elif nearest == "ceil":
            i = np.ceil(o)
        elif nearest == "round_prefer_floor":
            i = np.where(o - fl == np.float32(0.5), fl, np.floor(o + np.float32(0.5)))
        elif nearest == "round_prefer_ceil":
            i = np.floor(o + np.float32(0.5))
        else:
            raise ModelError(f"torch peer: Resize nearest_mode {nearest}")
        idx = np.clip(i, 0, inn - 1).astype(np.int64)
        return idx, idx, np.zeros(out, np.float32)
    o = np.clip(o, np.float32(0), np.float32(inn - 1))
    i0 = np.floor(o).astype(np.int64)
    i1 = np.minimum(i0 + 1, inn - 1)
    return i0, i1, (o - i0.astype(np.float32)).astype(np.float32)


class PeerNet(nn.Module):
    """A folded ONNX graph as PyTorch calls, one per node, in the graph's order."""

    def __init__(self, folded: Folded, name: str = "model") -> None:
        super().__init__()
        self.name = name
        self.input = folded.input
        self.input_shape = folded.input_shape
        self.outputs = list(folded.outputs)
        self.shapes = folded.shapes
        self._values = folded.values
        self._buffers_of: dict[str, str] = {}
        self.layers: list[tuple[str, Layer]] = []
        for node in folded.nodes:
            self.layers.append((node.outputs[0], self._layer(node)))
        del self._values
        # Each tensor dropped after its last reader, as an executor would (the graph's memory
        # is then what one layer at a time needs, not every activation at once).
        last: dict[str, int] = {}
        for i, node in enumerate(folded.nodes):
            for name in node.inputs:
                if name in self.shapes:
                    last[name] = i
        keep = {self.input, *self.outputs}
        self.free_after: list[list[str]] = [[] for _ in folded.nodes]
        for name, i in last.items():
            if name not in keep:
                self.free_after[i].append(name)

    # -- constants --------------------------------------------------------------------------

    def _const(self, name: str, array: np.ndarray | None = None) -> Callable[[], Tensor]:
        """A float constant as a buffer (moved and cast with the module); returns its getter."""
        key = self._buffers_of.get(name) if array is None else None
        if key is None:
            key = f"c{len(self._buffers_of)}"
            value = self._values[name] if array is None else array
            self.register_buffer(key, torch.from_numpy(np.array(value, np.float32, copy=True)))
            self._buffers_of[name if array is None else f"{name}#{key}"] = key
        return lambda: self.get_buffer(key)

    def _operand(self, name: str) -> Callable[[Env], Tensor]:
        if name in self._values:
            get = self._const(name)
            return lambda env: get()
        return lambda env: env[name]

    def _scalar(self, name: str) -> float:
        return float(np.asarray(self._values[name]).ravel()[0])

    # -- one layer per node -----------------------------------------------------------------

    def _layer(self, node: Node) -> Layer:
        op = node.op
        x = node.inputs[0]
        if op in ("Conv", "ConvTranspose"):
            return self._conv(node)
        if op in ACTIVATIONS:
            return self._activation(node)
        if op in ELEMENTWISE:
            a, b = self._operand(node.inputs[0]), self._operand(node.inputs[1])
            if op == "Add":
                return lambda env: a(env) + b(env)
            if op == "Sub":
                return lambda env: a(env) - b(env)
            if op == "Mul":
                return lambda env: a(env) * b(env)
            return lambda env: a(env) / b(env)
        if op in VIEWS:
            shape = self.shapes[node.outputs[0]]
            return lambda env: env[x].reshape(shape)
        if op in ("AveragePool", "MaxPool"):
            return self._pool(node)
        if op in ("GlobalAveragePool", "ReduceMean"):
            return lambda env: env[x].mean(dim=(2, 3), keepdim=True)
        if op == "Resize":
            return self._resize(node)
        if op == "DepthToSpace":
            return self._d2s(node)
        if op == "Pad":
            return self._pad(node)
        if op == "Concat":
            ins = list(node.inputs)
            if node.attrs.get("axis", 1) % 4 != 1:
                raise _refuse(node, "Concat on channels only")
            return lambda env: torch.cat([env[i] for i in ins], dim=1)
        raise _refuse(node, f"op {op}")

    def _conv(self, node: Node) -> Layer:
        x = node.inputs[0]
        a = node.attrs
        w_np = np.asarray(self._values[node.inputs[1]], np.float32)
        w = self._const(node.inputs[1])
        b_name = node.inputs[2] if len(node.inputs) > 2 else ""
        b = self._const(b_name) if b_name else None
        s = [int(v) for v in a.get("strides", [1, 1])]
        d = [int(v) for v in a.get("dilations", [1, 1])]
        g = int(a.get("group", 1))
        k = (int(w_np.shape[2]), int(w_np.shape[3]))
        xs = self.shapes[x]
        if node.op == "Conv":
            pads = conv_pads(self.name, node, (xs[2], xs[3]), k, s, d)
            if _symmetric(pads):
                padding = (pads[0], pads[1])

                def conv(env: Env) -> Tensor:
                    return F.conv2d(env[x], w(), b() if b else None, s, padding, d, g)

                return conv
            tp = _torch_pad(pads)

            def conv_padded(env: Env) -> Tensor:
                return F.conv2d(F.pad(env[x], tp), w(), b() if b else None, s, 0, d, g)

            return conv_padded
        pads = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        opad = [int(v) for v in a.get("output_padding", [0, 0])]
        if len(pads) != 4 or len(opad) != 2:
            raise _refuse(node, f"pads {pads} / output_padding {opad} (2-D)")
        if _symmetric(pads) and all(p < max(st, dl) for p, st, dl in zip(opad, s, d, strict=True)):
            padding = (pads[0], pads[1])

            def convt(env: Env) -> Tensor:
                return F.conv_transpose2d(env[x], w(), b() if b else None, s, padding, opad, g, d)

            return convt
        # The full output, the output padding's rows and columns (no input reaches them), then
        # the pads cropped from each side and the bias added.
        ho, wo = self.shapes[node.outputs[0]][2:]

        def convt_general(env: Env) -> Tensor:
            y = F.conv_transpose2d(env[x], w(), None, s, 0, 0, g, d)
            if opad[0] or opad[1]:
                y = F.pad(y, (0, opad[1], 0, opad[0]))
            y = y[:, :, pads[0] : pads[0] + ho, pads[1] : pads[1] + wo]
            return y + b().reshape(1, -1, 1, 1) if b else y

        return convt_general

    def _activation(self, node: Node) -> Layer:
        x, op, a = node.inputs[0], node.op, node.attrs
        if op == "Relu":
            return lambda env: F.relu(env[x])
        if op == "Sigmoid":
            return lambda env: torch.sigmoid(env[x])
        if op == "Tanh":
            return lambda env: torch.tanh(env[x])
        if op == "HardSwish":
            return lambda env: F.hardswish(env[x])
        if op == "LeakyRelu":
            alpha = float(a.get("alpha", 0.01))
            return lambda env: F.leaky_relu(env[x], alpha)
        if op == "HardSigmoid":
            al, be = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
            if abs(al - 1 / 6) < 1e-7 and be == 0.5:
                return lambda env: F.hardsigmoid(env[x])
            return lambda env: torch.clamp(env[x] * al + be, 0.0, 1.0)
        # Clip: bounds from the inputs (opset ≥ 11) or the attributes
        ins = [*node.inputs, "", ""]
        lo = self._scalar(ins[1]) if ins[1] else a.get("min")
        hi = self._scalar(ins[2]) if ins[2] else a.get("max")
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
        if lo == 0.0 and hi == 6.0:
            return lambda env: F.relu6(env[x])
        if lo is None and hi is None:
            return lambda env: env[x]
        return lambda env: torch.clamp(env[x], lo, hi)

    def _pool(self, node: Node) -> Layer:
        x, a = node.inputs[0], node.attrs
        xs = self.shapes[x]
        k = tuple(int(v) for v in a.get("kernel_shape", []))
        if len(k) != 2 or a.get("ceil_mode", 0):
            raise _refuse(node, f"kernel_shape {list(k)}, ceil_mode {a.get('ceil_mode', 0)}")
        kk = (k[0], k[1])
        s = [int(v) for v in a.get("strides", [1, 1])]
        pads = conv_pads(self.name, node, (xs[2], xs[3]), kk, s, [1, 1])
        if node.op == "MaxPool":
            if _symmetric(pads, kk):
                padding = (pads[0], pads[1])
                return lambda env: F.max_pool2d(env[x], kk, s, padding)
            tp = _torch_pad(pads)
            return lambda env: F.max_pool2d(F.pad(env[x], tp, value=float("-inf")), kk, s)
        include = bool(a.get("count_include_pad", 0))
        if _symmetric(pads, kk):
            padding = (pads[0], pads[1])
            return lambda env: F.avg_pool2d(env[x], kk, s, padding, False, include)
        tp = _torch_pad(pads)
        if include:
            return lambda env: F.avg_pool2d(F.pad(env[x], tp), kk, s)
        # count_include_pad=0 with pads PyTorch cannot express: the window's mean over the
        # padded input, times (window / elements inside the input) per output position.
        ho, wo = self.shapes[node.outputs[0]][2:]
        inside = np.pad(np.ones(xs[2:], np.float32), ((pads[0], pads[2]), (pads[1], pads[3])))
        counts = np.empty((ho, wo), np.float32)
        for i in range(ho):
            for j in range(wo):
                r, c = i * s[0], j * s[1]
                counts[i, j] = inside[r : r + kk[0], c : c + kk[1]].sum()
        factor = self._const(node.outputs[0], (kk[0] * kk[1] / counts)[None, None])
        return lambda env: F.avg_pool2d(F.pad(env[x], tp), kk, s) * factor()

    def _resize(self, node: Node) -> Layer:
        x, a = node.inputs[0], node.attrs
        xs = self.shapes[x]
        (h, w), (fy, fx) = resize_scales(self.name, node, xs, self._values)
        ins = [*node.inputs, "", "", ""]
        sizes = self._values.get(ins[3]) if ins[3] else None
        from_sizes = sizes is not None and sizes.size > 0
        mode = a.get("mode", "nearest")
        coord = a.get("coordinate_transformation_mode", "half_pixel")
        nearest = a.get("nearest_mode", "round_prefer_floor")
        size_kw: dict[str, Any] = (
            {"size": (h, w)}
            if from_sizes
            else {"scale_factor": (fy, fx), "recompute_scale_factor": False}
        )
        same_size = from_sizes or (
            int(np.floor(xs[2] * fy)) == h and int(np.floor(xs[3] * fx)) == w
        )
        ph = coord == "half_pixel" or (coord == "pytorch_half_pixel" and h > 1 and w > 1)
        exact: dict[str, Any] | None = None
        if mode == "linear" and ph:
            exact = {"mode": "bilinear", "align_corners": False, **size_kw}
        elif mode == "linear" and coord == "align_corners":
            exact = {"mode": "bilinear", "align_corners": True, "size": (h, w)}
        elif mode == "nearest" and coord == "asymmetric" and nearest == "floor":
            exact = {"mode": "nearest", **size_kw}
        elif mode == "nearest" and ph and nearest == "round_prefer_ceil":
            exact = {"mode": "nearest-exact", **size_kw}
        if exact is not None and same_size:
            kw = exact
            return lambda env: F.interpolate(env[x], **kw)
        # Anything else: gather along each axis at the source indices ONNX Runtime computes.
        ry = resize_source(h, xs[2], fy, coord, mode, nearest)
        rx = resize_source(w, xs[3], fx, coord, mode, nearest)
        key = node.outputs[0]
        iy0, iy1 = (self._index(key, "y0", ry[0]), self._index(key, "y1", ry[1]))
        ix0, ix1 = (self._index(key, "x0", rx[0]), self._index(key, "x1", rx[1]))
        if mode == "nearest":
            return lambda env: env[x].index_select(2, iy0()).index_select(3, ix0())
        wy = self._const(key, ry[2].reshape(1, 1, -1, 1))
        wx = self._const(key, rx[2].reshape(1, 1, 1, -1))

        def linear(env: Env) -> Tensor:
            v = env[x]
            a0, a1 = v.index_select(2, iy0()), v.index_select(2, iy1())
            v = a0 + (a1 - a0) * wy()
            b0, b1 = v.index_select(3, ix0()), v.index_select(3, ix1())
            return b0 + (b1 - b0) * wx()

        return linear

    def _index(self, key: str, which: str, idx: np.ndarray) -> Callable[[], Tensor]:
        """An int64 index buffer (moved with the module, never cast to the float type)."""
        name = f"i{len(self._buffers_of)}"
        self.register_buffer(name, torch.from_numpy(idx.astype(np.int64)))
        self._buffers_of[f"{key}#{which}"] = name
        return lambda: self.get_buffer(name)

    def _d2s(self, node: Node) -> Layer:
        x = node.inputs[0]
        b = int(node.attrs["blocksize"])
        if node.attrs.get("mode", "DCR") == "CRD":
            return lambda env: F.pixel_shuffle(env[x], b)
        n, c, h, w = self.shapes[x]
        co = c // (b * b)

        def dcr(env: Env) -> Tensor:
            v = env[x].reshape(n, b, b, co, h, w).permute(0, 3, 4, 1, 5, 2)
            return v.reshape(n, co, h * b, w * b)

        return dcr

    def _pad(self, node: Node) -> Layer:
        x = node.inputs[0]
        pads = pad_amounts(self.name, node, self._values)
        tp = _torch_pad(pads)
        mode = node.attrs.get("mode", "constant")
        if mode == "constant":
            ins = [*node.inputs, "", ""]
            cv = self._values.get(ins[2]) if ins[2] else None
            value = float(np.asarray(cv).ravel()[0]) if cv is not None and cv.size else 0.0
            return lambda env: F.pad(env[x], tp, value=value)
        tmode = {"edge": "replicate", "reflect": "reflect"}[mode]
        return lambda env: F.pad(env[x], tp, mode=tmode)

    # -- running ----------------------------------------------------------------------------

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        env: Env = {self.input: x}
        for (out, layer), done in zip(self.layers, self.free_after, strict=True):
            env[out] = layer(env)
            for name in done:
                del env[name]
        return tuple(env[o] for o in self.outputs)


def peer(
    folded: Folded,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
    name: str = "model",
) -> PeerNet:
    """``folded`` as a PyTorch module on ``device`` in ``dtype`` (eval mode, no gradients); with
    ``channels_last`` its 4-D constants (the conv weights) are NHWC in memory, as cuDNN's fast
    fp16 paths want (feed it a channels-last input too: ``x.to(memory_format=...)``)."""
    net = PeerNet(folded, name)
    net.requires_grad_(False)
    net.eval()
    for k, v in list(net.named_buffers()):
        if not v.is_floating_point():
            setattr(net, k, v.to(device=device))
            continue
        v = v.to(device=device, dtype=dtype)
        if channels_last and v.dim() == 4:
            v = v.contiguous(memory_format=torch.channels_last)
        setattr(net, k, v)
    return net


def fold(model: bytes, name: str, shape: tuple[int, ...]) -> Folded:
    """A model's ONNX bytes folded at ``shape`` (N, C, H, W), as LiveFX's planner folds it."""
    from engine.inference.net.graph import NetGraph

    return NetGraph(model, name).fold(shape)


__all__ = ["PeerNet", "fold", "peer", "resize_source"]
