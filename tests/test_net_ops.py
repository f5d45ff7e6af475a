"""Each op and attribute the net engine plans, in small ONNX graphs built here with random
weights, through the kernels' host build against ONNX Runtime; and what it refuses, refused by
name at load. A user's own generator runs on these kernels only where every layer is one of
these; otherwise the cuda backend says why (the cpu backend still runs it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.errors import ModelError
from engine.inference.net import load_net
from engine.inference.net.host import HostNet, library

RNG = np.random.default_rng(7)


class G:
    """A tiny ONNX graph builder: image input x (N, C, H, W) → nodes → outputs."""

    def __init__(self, c: int = 4, h: int = 13, w: int = 17, n: int = 1) -> None:
        self.shape = (n, c, h, w)
        self.nodes: list = []
        self.inits: list = []
        self.k = 0

    def name(self, stem: str) -> str:
        self.k += 1
        return f"{stem}{self.k}"

    def const(self, v: np.ndarray) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(v), name))
        return name

    def op(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int = 3,
        group: int = 1,
        bias: bool = True,
        **attrs: Any,
    ) -> str:
        w = RNG.normal(0, 0.4, (cout, cin // group, k, k)).astype(np.float32)
        ins = [x, self.const(w)] + (
            [self.const(RNG.normal(0, 0.2, cout).astype(np.float32))] if bias else []
        )
        return self.op("Conv", ins, group=group, kernel_shape=[k, k], **attrs)

    def model(self, outputs: list[str]) -> bytes:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(self.shape))
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "g", [x], outs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        return m.SerializeToString()


def check(lib, g: G, outputs: list[str], tol: float = 1e-2) -> None:
    model = g.model(outputs)
    x = RNG.uniform(0, 1, g.shape).astype(np.float32)
    plan = load_net(model, "t").plan(g.shape)
    got = HostNet(plan, lib).run(x, poison=np.nan)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, ref in zip(outputs, want, strict=True):
        out = got[name]
        assert out.shape == ref.shape, name
        assert np.isfinite(out).all(), f"{name}: an element no step wrote"
        scale = max(1.0, float(np.abs(ref).max()))
        err = float(np.abs(out - ref).max())
        assert err <= tol * scale, (
            f"{name}: max |kernels - onnxruntime| {err:.3g} (scale {scale:.3g})"
        )


def case_convolutions() -> tuple[G, list[str], float]:
    g = G()
    a = g.op("Relu", [g.conv("x", 4, 8, pads=[1, 1, 1, 1])])
    b = g.op("HardSwish", [g.conv(a, 8, 8, strides=[2, 2], pads=[0, 0, 1, 1])])
    c = g.op("LeakyRelu", [g.conv(a, 8, 6, k=5, dilations=[2, 2], pads=[4, 4, 4, 4])], alpha=0.1)
    d = g.op("Tanh", [g.conv(a, 8, 8, group=2, auto_pad="SAME_UPPER", strides=[2, 2])])
    e = g.conv(a, 8, 8, group=8, bias=False, pads=[1, 2, 0, 1])  # depthwise, asymmetric pads
    # a constant scale and shift (an unfolded batch norm), then Relu6, folded into the conv
    f = g.op(
        "Mul",
        [
            g.conv(a, 8, 8, pads=[1, 1, 1, 1]),
            g.const(RNG.uniform(0.5, 2, (8, 1, 1)).astype(np.float32)),
        ],
    )
    f = g.op(
        "Clip",
        [
            g.op("Add", [f, g.const(RNG.normal(0, 1, (1, 8, 1, 1)).astype(np.float32))]),
            g.const(np.float32(0)),
            g.const(np.float32(6)),
        ],
    )
    h = g.op(
        "HardSigmoid", [g.op("Add", [g.conv(f, 8, 8, pads=[1, 1, 1, 1]), a])], alpha=0.3, beta=0.4
    )
    return g, [b, c, d, e, h], 1e-2


def test_convolutions(net_lib) -> None:
    check(net_lib, *case_convolutions())


def case_transposed_convolutions() -> tuple[G, list[str], float]:
    g = G(c=4, h=7, w=9)
    outs = []
    for k, s, pads, opad, group in [
        (2, 2, [0, 0, 0, 0], [0, 0], 1),
        (3, 2, [1, 1, 1, 1], [1, 1], 2),
        (4, 2, [1, 1, 1, 1], [0, 0], 1),
    ]:
        w = RNG.normal(0, 0.4, (4, 6 // group, k, k)).astype(np.float32)
        y = g.op(
            "ConvTranspose",
            ["x", g.const(w), g.const(RNG.normal(0, 0.1, 6).astype(np.float32))],
            kernel_shape=[k, k],
            strides=[s, s],
            pads=pads,
            output_padding=opad,
            group=group,
        )
        outs.append(g.op("Sigmoid", [y]))
    return g, outs, 1e-2


def test_transposed_convolutions(net_lib) -> None:
    check(net_lib, *case_transposed_convolutions())


def case_pooling() -> tuple[G, list[str], float]:
    g = G()
    outs = [
        g.op("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        g.op("AveragePool", ["x"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
        g.op(
            "AveragePool",
            ["x"],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            count_include_pad=1,
        ),
        g.op("GlobalAveragePool", ["x"]),
        g.op("ReduceMean", ["x"], axes=[2, 3], keepdims=1),
        g.op("AveragePool", ["x"], kernel_shape=[13, 17]),
    ]
    return g, outs, 1e-5


def test_pooling(net_lib) -> None:
    check(net_lib, *case_pooling())


def resize_graph(coord: str) -> tuple[G, list[str]]:
    """Resize in every mode (linear; nearest with each rounding), by scales up and down and by
    sizes, with the coordinate mode ``coord`` (also the PyTorch peer's test)."""
    g = G(c=2, h=7, w=9)
    outs = []
    for mode, nearest in [
        ("linear", "floor"),
        ("nearest", "floor"),
        ("nearest", "round_prefer_floor"),
        ("nearest", "ceil"),
        ("nearest", "round_prefer_ceil"),
    ]:
        for scales, sizes in [
            ([1, 1, 2, 2], None),
            ([1, 1, 0.5, 0.75], None),
            (None, [1, 2, 10, 13]),
        ]:
            ins = ["x", "", g.const(np.array(scales, np.float32)) if scales else ""]
            if sizes:
                ins.append(g.const(np.array(sizes, np.int64)))
            outs.append(
                g.op(
                    "Resize",
                    ins,
                    mode=mode,
                    coordinate_transformation_mode=coord,
                    nearest_mode=nearest,
                )
            )
    return g, outs


@pytest.mark.parametrize(
    "coord", ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
)
def test_resize(net_lib, coord: str) -> None:
    g, outs = resize_graph(coord)
    check(net_lib, g, outs, tol=1e-5)


def case_layout_ops() -> tuple[G, list[str], float]:
    g = G(c=8, h=6, w=7)
    outs = [
        g.op("DepthToSpace", ["x"], blocksize=2, mode="DCR"),
        g.op("DepthToSpace", ["x"], blocksize=2, mode="CRD"),
        g.op("Pad", ["x", g.const(np.array([0, 0, 1, 2, 0, 0, 3, 1], np.int64))], mode="reflect"),
        g.op(
            "Pad",
            ["x", g.const(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64)), g.const(np.float32(0.5))],
            mode="constant",
        ),
        # edge padding read by a conv: one step, the conv reads clamped indices
        g.conv(
            g.op("Pad", ["x", g.const(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64))], mode="edge"),
            8,
            4,
            k=5,
        ),
        g.op("Concat", [g.conv("x", 8, 3, pads=[1, 1, 1, 1]), "x", g.conv("x", 8, 2, k=1)], axis=1),
        g.op("Flatten", [g.op("GlobalAveragePool", ["x"])]),
    ]
    return g, outs, 1e-2


def test_layout_ops(net_lib) -> None:
    check(net_lib, *case_layout_ops())


def case_elementwise_and_gates() -> tuple[G, list[str], float]:
    g = G(c=4, h=9, w=11)
    a = g.conv("x", 4, 4, pads=[1, 1, 1, 1])
    gate = g.op("Sigmoid", [g.conv(g.op("GlobalAveragePool", [a]), 4, 4, k=1)])
    into_conv = g.conv(g.op("Mul", [a, gate]), 4, 4, k=1)  # gate applied as the conv reads
    into_add = g.op("Add", [g.op("Mul", [gate, a]), "x"])  # gate, then the residual
    outs = [
        into_conv,
        into_add,
        g.op("Mul", [a, gate]),
        g.op("Sub", [g.const(np.float32(1)), "x"]),
        g.op("Div", ["x", g.const(np.array([1, 2, 3, 4], np.float32).reshape(4, 1, 1))]),
        g.op("Div", [g.const(np.float32(2)), g.op("Add", ["x", g.const(np.float32(1))])]),
        g.op("Relu", [g.op("Sub", [a, "x"])]),
        g.op("Add", [gate, a]),
    ]
    return g, outs, 1e-2


def test_elementwise_and_gates(net_lib) -> None:
    check(net_lib, *case_elementwise_and_gates())


CASES = {
    "convolutions": case_convolutions,
    "transposed_convolutions": case_transposed_convolutions,
    "pooling": case_pooling,
    "layout_ops": case_layout_ops,
    "elementwise_and_gates": case_elementwise_and_gates,
}


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda g: g.op("Softmax", ["x"], axis=1), "Softmax"),
        (
            lambda g: g.op(
                "Resize", ["x", "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="cubic"
            ),
            "mode cubic",
        ),
        (lambda g: g.op("MaxPool", ["x"], kernel_shape=[2, 2], ceil_mode=1), "ceil_mode"),
        (
            lambda g: g.op("Conv", ["x", g.op("Relu", ["x"])], kernel_shape=[1, 1]),
            "weights that are not constants",
        ),
        (lambda g: g.op("Concat", ["x", "x"], axis=2), "channels only"),
        (
            lambda g: g.op(
                "Add", ["x", g.const(RNG.normal(size=(1, 4, 13, 17)).astype(np.float32))]
            ),
            "a constant of shape",
        ),
    ],
)
def test_unsupported_is_refused_by_name_at_load(build, named: str) -> None:
    g = G()
    out = build(g)
    with pytest.raises(ModelError, match=named):
        load_net(g.model([out]), "mine.onnx")


def test_unreadable_and_wrong_models_are_refused() -> None:
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        load_net(b"\x08\x07garbage", "junk.onnx")
    g = G()
    g.shape = (1, 3, 8)  # type: ignore[assignment]
    with pytest.raises(ModelError, match="NCHW"):
        load_net(g.model([g.op("Relu", ["x"])]), "rank3.onnx")


def test_struct_mirror_matches_the_kernels(net_lib) -> None:
    assert library() is not None  # raises where plan.py's structs and net.cuh's differ
