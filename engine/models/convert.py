"""TFLite → ONNX converter for the MediaPipe models LiveFX ships (selfie segmenters, BlazePose).

One small function per TFLite op, registered by the op's name (as torch2trt and onnx's own
converters do); ``convert_tflite`` walks the graph in order and asks the registry. An op with no
converter is an error that names it.

Layout: TFLite activations are NHWC; the ONNX graph is NCHW throughout (what ONNX Runtime's and
TensorRT's convolutions want, and what the preprocess stage writes). Weights are transposed once, at
conversion time; every activation tensor must be rank 4, except a graph output made by RESHAPE (the
pose model's landmark vectors). fp16 weights behind DEQUANTIZE are folded to fp32 initialisers; a
zero PAD feeding only a VALID convolution is folded into that convolution's pads. A model with
several outputs is converted with the ones asked for, named; ops that only feed the others are
pruned. Spatial sizes are static (they are in the TFLite file); the batch dimension
is dynamic so that frames of several sessions can share one launch.

``onnx`` is imported here and only here: it is a build-time dependency (``make models``), not a
run-time one.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.models.tflite import Operator, Tensor, TFLiteModel, read_tflite

OPSET = 17
IR_VERSION = 8  # ONNX IR for opset 17; fixed so the bytes do not depend on the onnx package
PRODUCER = "livefx-tflite2onnx"
PRODUCER_VERSION = "1"

# TFLite Padding enum (builtin options) and TfLitePadding (C API, used by custom options).
PADDING_SAME, PADDING_VALID = 0, 1
C_PADDING = {1: PADDING_SAME, 2: PADDING_VALID}

# ActivationFunctionType enum.
ACT_NONE, ACT_RELU, ACT_RELU_N1_TO_1, ACT_RELU6 = 0, 1, 2, 3
ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}

# NHWC axis -> NCHW axis.
NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass
class Context:
    """What the op converters share: the TFLite model and the ONNX graph being built."""

    model: TFLiteModel
    input_name: str
    output_names: dict[int, str]  # TFLite graph output tensor -> ONNX name
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    constants: dict[int, np.ndarray] = field(default_factory=dict)  # folded TFLite tensors
    names: dict[int, str] = field(default_factory=dict)  # TFLite tensor -> ONNX name
    fp16_weights: bool = False  # store fp16-exact weights as fp16 behind a Cast (half the file)
    # PAD outputs not emitted yet: tensor -> (the PAD, its input tensor, pads [t, l, b, r]).
    pending_pads: dict[int, tuple[Operator, int, list[int]]] = field(default_factory=dict)

    def tensor(self, index: int) -> Tensor:
        return self.model.tensors[index]

    def const(self, index: int, op: Operator, what: str) -> np.ndarray:
        """The value of a constant input, or an error naming the op."""
        if index in self.constants:
            return self.constants[index]
        t = self.tensor(index)
        if t.data is not None:
            return t.data
        raise ModelError(f"{op.opcode} (operator {op.index}): {what} must be a constant tensor")

    def activation(self, index: int, op: Operator) -> str:
        """The ONNX name of an activation input (NCHW)."""
        if index in self.pending_pads:
            self._emit_pad(index)
        if index in self.names:
            if len(self.tensor(index).shape) != 4:
                raise ModelError(
                    f"{op.opcode} (operator {op.index}): input {self.tensor(index).name} has shape "
                    f"{self.tensor(index).shape}; only rank-4 NHWC activations are supported"
                )
            return self.names[index]
        t = self.tensor(index)
        raise ModelError(
            f"{op.opcode} (operator {op.index}): input tensor {index} ({t.name}) "
            "is neither a graph input nor produced by an earlier op"
        )

    def padded(self, index: int, op: Operator) -> tuple[int, list[int]]:
        """The tensor a conv really reads and the zero padding of a folded PAD ([t, l, b, r])."""
        if index in self.pending_pads:
            _, src, pads = self.pending_pads[index]
            return src, pads
        return index, [0, 0, 0, 0]

    def _emit_pad(self, index: int) -> None:
        op, src, pads = self.pending_pads.pop(index)
        x = self.activation(src, op)
        t, left, b, r = pads
        onnx_pads = self.initializer(
            f"pad_{op.index}_pads", np.array([0, 0, t, left, 0, 0, b, r], np.int64)
        )
        self.node("Pad", [x, onnx_pads], [self.output(op)], f"pad_{op.index}", mode="constant")

    def output(self, op: Operator, k: int = 0, *, any_rank: bool = False) -> str:
        index = op.outputs[k]
        t = self.tensor(index)
        if len(t.shape) != 4 and not (any_rank and index in self.output_names):
            raise ModelError(
                f"{op.opcode} (operator {op.index}): output {t.name} has shape {t.shape}; "
                "only rank-4 NHWC activations are supported"
            )
        name = self.output_names.get(index, f"t{index}")
        self.names[index] = name
        return name

    def initializer(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, value: np.ndarray) -> str:
        """A weight or bias initialiser; fp16 in the file when asked and exact (lossless)."""
        value = np.ascontiguousarray(value, np.float32)
        if not self.fp16_weights:
            return self.initializer(name, value)
        half = value.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), value):
            return self.initializer(name, value)
        from onnx import TensorProto

        self.initializer(f"{name}_fp16", half)
        self.node("Cast", [f"{name}_fp16"], [name], f"{name}_cast", to=TensorProto.FLOAT)
        return name

    def node(
        self, op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any
    ) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))

    def fused(
        self, op: Operator, act: int, op_type: str, inputs: list[str], name: str, **attrs: Any
    ) -> None:
        """Emit the op's main node, then its fused activation (if any) into the op's output."""
        out = self.output(op)
        if act == ACT_NONE:
            self.node(op_type, inputs, [out], name, **attrs)
            return
        pre = f"{out}_preact"
        if act == ACT_RELU:
            self.node(op_type, inputs, [pre], name, **attrs)
            self.node("Relu", [pre], [out], f"{name}_relu")
        elif act in (ACT_RELU6, ACT_RELU_N1_TO_1):
            bounds = (0.0, 6.0) if act == ACT_RELU6 else (-1.0, 1.0)
            lo = self.initializer(f"{name}_clip_min", np.array(bounds[0], np.float32))
            hi = self.initializer(f"{name}_clip_max", np.array(bounds[1], np.float32))
            self.node(op_type, inputs, [pre], name, **attrs)
            self.node("Clip", [pre, lo, hi], [out], f"{name}_clip")
        else:
            raise ModelError(
                f"{op.opcode} (operator {op.index}): fused activation "
                f"{ACT_NAMES.get(act, act)} is not supported"
            )


Converter = Callable[[Context, Operator], None]
CONVERTERS: dict[str, Converter] = {}


def converts(*opcodes: str) -> Callable[[Converter], Converter]:
    def register(fn: Converter) -> Converter:
        for code in opcodes:
            CONVERTERS[code] = fn
        return fn

    return register


def _options(op: Operator) -> Any:
    if op.options is None:
        raise ModelError(f"{op.opcode} (operator {op.index}) has no options table")
    return op.options


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: the extra pixel, if any, goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_pads(
    op: Operator,
    padding: int,
    in_hw: tuple[int, int],
    k_hw: tuple[int, int],
    s_hw: tuple[int, int],
    d_hw: tuple[int, int] = (1, 1),
) -> list[int]:
    if padding == PADDING_VALID:
        return [0, 0, 0, 0]
    if padding != PADDING_SAME:
        raise ModelError(f"{op.opcode} (operator {op.index}): unknown padding {padding}")
    (top, bottom) = _same_pads(in_hw[0], k_hw[0], s_hw[0], d_hw[0])
    (left, right) = _same_pads(in_hw[1], k_hw[1], s_hw[1], d_hw[1])
    return [top, left, bottom, right]


def _check_out_hw(op: Operator, ctx: Context, got: tuple[int, int]) -> None:
    want = ctx.tensor(op.outputs[0]).shape[1:3]
    if tuple(want) != tuple(got):
        raise ModelError(
            f"{op.opcode} (operator {op.index}): computed output size {got} "
            f"but the file says {tuple(want)}"
        )


def _bias(ctx: Context, op: Operator, k: int, channels: int, name: str) -> list[str]:
    if len(op.inputs) <= k or op.inputs[k] < 0:
        return []
    b = ctx.const(op.inputs[k], op, "bias").astype(np.float32).reshape(-1)
    if b.size != channels:
        raise ModelError(
            f"{op.opcode} (operator {op.index}): bias has {b.size} values for {channels} channels"
        )
    return [ctx.weight(name, b)]


@converts("DEQUANTIZE")
def dequantize(ctx: Context, op: Operator) -> None:
    src = ctx.tensor(op.inputs[0])
    if src.data is None:
        raise ModelError(f"DEQUANTIZE (operator {op.index}) of a non-constant tensor {src.name}")
    if src.dtype != np.float16:
        raise ModelError(
            f"DEQUANTIZE (operator {op.index}) of {src.dtype} tensor {src.name}: "
            "only fp16 weights are supported"
        )
    ctx.constants[op.outputs[0]] = src.data.astype(np.float32)


def _conv(ctx: Context, op: Operator, depthwise: bool) -> None:
    opts = _options(op)
    padding = opts.scalar(0, "b", PADDING_SAME)
    src, folded = ctx.padded(op.inputs[0], op)
    if any(folded) and padding != PADDING_VALID:
        src, folded = op.inputs[0], [0, 0, 0, 0]  # SAME on top of a PAD: keep the Pad node
    x = ctx.activation(src, op)
    in_shape = ctx.tensor(src).shape
    w = ctx.const(op.inputs[1], op, "weights").astype(np.float32)
    stride = (opts.scalar(2, "i", 1), opts.scalar(1, "i", 1))
    if depthwise:
        act = opts.scalar(4, "b", ACT_NONE)
        dilation = (opts.scalar(6, "i", 1), opts.scalar(5, "i", 1))
        # [1, kh, kw, C*M] -> [C*M, 1, kh, kw], one group per input channel.
        weight = w.transpose(3, 0, 1, 2)
        group = in_shape[3]
        if weight.shape[0] % group:
            raise ModelError(
                f"DEPTHWISE_CONV_2D (operator {op.index}): {weight.shape[0]} output channels "
                f"for {group} input channels"
            )
    else:
        act = opts.scalar(3, "b", ACT_NONE)
        dilation = (opts.scalar(5, "i", 1), opts.scalar(4, "i", 1))
        weight = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
        group = 1
        if weight.shape[1] != in_shape[3]:
            raise ModelError(
                f"CONV_2D (operator {op.index}): weights expect {weight.shape[1]} input channels, "
                f"the input has {in_shape[3]}"
            )
    kernel = (weight.shape[2], weight.shape[3])
    pads = [
        p + f
        for p, f in zip(
            _spatial_pads(op, padding, (in_shape[1], in_shape[2]), kernel, stride, dilation),
            folded,
            strict=True,
        )
    ]
    out_hw = tuple(
        (in_shape[1 + i] + pads[i] + pads[2 + i] - ((kernel[i] - 1) * dilation[i] + 1)) // stride[i]
        + 1
        for i in range(2)
    )
    _check_out_hw(op, ctx, (out_hw[0], out_hw[1]))
    base = f"{op.opcode.lower()}_{op.index}"
    inputs = [x, ctx.weight(f"{base}_w", weight)]
    inputs += _bias(ctx, op, 2, weight.shape[0], f"{base}_b")
    ctx.fused(
        op,
        act,
        "Conv",
        inputs,
        base,
        kernel_shape=list(kernel),
        strides=list(stride),
        dilations=list(dilation),
        pads=pads,
        group=group,
    )


@converts("CONV_2D")
def conv_2d(ctx: Context, op: Operator) -> None:
    _conv(ctx, op, depthwise=False)


@converts("DEPTHWISE_CONV_2D")
def depthwise_conv_2d(ctx: Context, op: Operator) -> None:
    _conv(ctx, op, depthwise=True)


@converts("Convolution2DTransposeBias")
def transpose_conv_bias(ctx: Context, op: Operator) -> None:
    """MediaPipe's custom op; its options are a raw TfLiteTransposeConvParams struct."""
    raw = op.custom_options
    if len(raw) < 12:
        raise ModelError(
            f"Convolution2DTransposeBias (operator {op.index}): custom options are {len(raw)} "
            "bytes, expected 12 (padding, stride_w, stride_h)"
        )
    c_padding, stride_w, stride_h = struct.unpack_from("<iii", raw, 0)
    if c_padding not in C_PADDING or stride_w < 1 or stride_h < 1:
        raise ModelError(
            f"Convolution2DTransposeBias (operator {op.index}): bad options "
            f"padding={c_padding} stride=({stride_h}, {stride_w})"
        )
    x = ctx.activation(op.inputs[0], op)
    in_shape = ctx.tensor(op.inputs[0]).shape
    out_shape = ctx.tensor(op.outputs[0]).shape
    w = ctx.const(op.inputs[1], op, "weights").astype(np.float32)  # [O, kh, kw, I]
    weight = w.transpose(3, 0, 1, 2)  # -> [I, O, kh, kw]
    kernel = (weight.shape[2], weight.shape[3])
    stride = (stride_h, stride_w)
    pads = [0, 0, 0, 0]
    if C_PADDING[c_padding] == PADDING_SAME:
        # As TFLite's transpose conv: the padding of the forward conv from the output size.
        for i in range(2):
            total = max((in_shape[1 + i] - 1) * stride[i] + kernel[i] - out_shape[1 + i], 0)
            pads[i], pads[2 + i] = total // 2, total - total // 2
    full = [(in_shape[1 + i] - 1) * stride[i] + kernel[i] - pads[i] - pads[2 + i] for i in range(2)]
    output_padding = [out_shape[1 + i] - full[i] for i in range(2)]
    if min(output_padding) < 0 or any(p >= s for p, s in zip(output_padding, stride, strict=True)):
        raise ModelError(
            f"Convolution2DTransposeBias (operator {op.index}): cannot produce {out_shape[1:3]} "
            f"from {in_shape[1:3]} with kernel {kernel} and stride {stride}"
        )
    base = f"transpose_conv_{op.index}"
    inputs = [x, ctx.weight(f"{base}_w", weight)]
    inputs += _bias(ctx, op, 2, weight.shape[1], f"{base}_b")
    attrs: dict[str, Any] = {"kernel_shape": list(kernel), "strides": list(stride), "pads": pads}
    if any(output_padding):
        attrs["output_padding"] = output_padding
    ctx.node("ConvTranspose", inputs, [ctx.output(op)], base, **attrs)


def _binary_operand(ctx: Context, op: Operator, index: int, k: int) -> str:
    if index in ctx.names:
        return ctx.names[index]
    value = ctx.const(index, op, f"input {k}").astype(np.float32)
    if value.ndim > 4:
        raise ModelError(f"{op.opcode} (operator {op.index}): constant of rank {value.ndim}")
    value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(0, 3, 1, 2)
    return ctx.initializer(f"{op.opcode.lower()}_{op.index}_c{k}", value)


@converts("ADD", "MUL")
def add_mul(ctx: Context, op: Operator) -> None:
    act = op.options.scalar(0, "b", ACT_NONE) if op.options is not None else ACT_NONE
    a = _binary_operand(ctx, op, op.inputs[0], 0)
    b = _binary_operand(ctx, op, op.inputs[1], 1)
    op_type = "Add" if op.opcode == "ADD" else "Mul"
    ctx.fused(op, act, op_type, [a, b], f"{op.opcode.lower()}_{op.index}")


_UNARY = {"RELU": "Relu", "LOGISTIC": "Sigmoid", "HARD_SWISH": "HardSwish", "TANH": "Tanh"}


@converts(*_UNARY)
def unary(ctx: Context, op: Operator) -> None:
    x = ctx.activation(op.inputs[0], op)
    ctx.node(_UNARY[op.opcode], [x], [ctx.output(op)], f"{op.opcode.lower()}_{op.index}")


@converts("AVERAGE_POOL_2D", "MAX_POOL_2D")
def pool_2d(ctx: Context, op: Operator) -> None:
    opts = _options(op)
    padding = opts.scalar(0, "b", PADDING_SAME)
    stride = (opts.scalar(2, "i", 1), opts.scalar(1, "i", 1))
    kernel = (opts.scalar(4, "i", 1), opts.scalar(3, "i", 1))
    act = opts.scalar(5, "b", ACT_NONE)
    in_shape = ctx.tensor(op.inputs[0]).shape
    pads = _spatial_pads(op, padding, (in_shape[1], in_shape[2]), kernel, stride)
    out_hw = tuple(
        (in_shape[1 + i] + pads[i] + pads[2 + i] - kernel[i]) // stride[i] + 1 for i in range(2)
    )
    _check_out_hw(op, ctx, (out_hw[0], out_hw[1]))
    x = ctx.activation(op.inputs[0], op)
    attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": pads}
    if op.opcode == "AVERAGE_POOL_2D":
        # TFLite averages over the pixels inside the image only: count_include_pad=0.
        ctx.fused(
            op, act, "AveragePool", [x], f"average_pool_{op.index}", count_include_pad=0, **attrs
        )
    else:
        # ONNX MaxPool ignores padded positions, as TFLite's SAME max pool does.
        ctx.fused(op, act, "MaxPool", [x], f"max_pool_{op.index}", **attrs)


@converts("MEAN")
def mean(ctx: Context, op: Operator) -> None:
    keep_dims = bool(op.options.scalar(0, "b", 0)) if op.options is not None else False
    if not keep_dims:
        raise ModelError(f"MEAN (operator {op.index}) without keep_dims is not supported")
    axes = ctx.const(op.inputs[1], op, "axes").astype(np.int64).reshape(-1)
    onnx_axes = sorted(NHWC_TO_NCHW_AXIS[int(a) % 4] for a in axes)
    x = ctx.activation(op.inputs[0], op)
    ctx.node("ReduceMean", [x], [ctx.output(op)], f"mean_{op.index}", axes=onnx_axes, keepdims=1)


@converts("RESIZE_BILINEAR")
def resize_bilinear(ctx: Context, op: Operator) -> None:
    opts = _options(op)
    align_corners = bool(opts.scalar(2, "b", 0))
    half_pixel = bool(opts.scalar(3, "b", 0))
    size = ctx.const(op.inputs[1], op, "size").astype(np.int64).reshape(-1)
    in_shape = ctx.tensor(op.inputs[0]).shape
    out_hw = (int(size[0]), int(size[1]))
    _check_out_hw(op, ctx, out_hw)
    scales = np.array(
        [1.0, 1.0, out_hw[0] / in_shape[1], out_hw[1] / in_shape[2]], dtype=np.float32
    )
    for i in range(2):
        if int(np.floor(in_shape[1 + i] * float(scales[2 + i]))) != out_hw[i]:
            raise ModelError(
                f"RESIZE_BILINEAR (operator {op.index}): {in_shape[1:3]} -> {out_hw} "
                "is not an exact float32 scale"
            )
    if align_corners:
        mode = "align_corners"
    elif half_pixel:
        mode = "half_pixel"
    else:
        mode = "asymmetric"
    x = ctx.activation(op.inputs[0], op)
    base = f"resize_{op.index}"
    roi = ctx.initializer(f"{base}_roi", np.zeros(0, np.float32))
    sc = ctx.initializer(f"{base}_scales", scales)
    ctx.node(
        "Resize",
        [x, roi, sc],
        [ctx.output(op)],
        base,
        mode="linear",
        coordinate_transformation_mode=mode,
    )


@converts("PAD")
def pad(ctx: Context, op: Operator) -> None:
    """Zero padding of H and W; kept pending so that a VALID convolution can absorb it."""
    paddings = ctx.const(op.inputs[1], op, "paddings").astype(np.int64)
    in_shape = ctx.tensor(op.inputs[0]).shape
    if paddings.shape != (4, 2) or len(in_shape) != 4:
        raise ModelError(
            f"PAD (operator {op.index}): paddings of shape {paddings.shape} for an input of "
            f"shape {in_shape}; only rank-4 NHWC is supported"
        )
    if paddings[0].any() or paddings[3].any() or (paddings < 0).any():
        raise ModelError(
            f"PAD (operator {op.index}): paddings {paddings.tolist()}; only non-negative "
            "padding of height and width is supported"
        )
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = ctx.const(op.inputs[2], op, "constant value")
        if np.any(value != 0):
            raise ModelError(f"PAD (operator {op.index}): a non-zero constant value")
    ctx.activation(op.inputs[0], op)  # checks the input exists and is rank 4
    pads = [int(paddings[1, 0]), int(paddings[2, 0]), int(paddings[1, 1]), int(paddings[2, 1])]
    want = ctx.tensor(op.outputs[0]).shape
    got = (in_shape[1] + pads[0] + pads[2], in_shape[2] + pads[1] + pads[3])
    _check_out_hw(op, ctx, got)
    if tuple(want[::3]) != tuple(in_shape[::3]):
        raise ModelError(f"PAD (operator {op.index}): output shape {want} from {in_shape}")
    ctx.pending_pads[op.outputs[0]] = (op, op.inputs[0], pads)


@converts("RESHAPE")
def reshape(ctx: Context, op: Operator) -> None:
    """A reshape to a flat [batch, K] graph output (the pose model's landmark vectors).

    The NCHW activation is put back in NHWC order first, so the flat vector is TFLite's.
    """
    x = ctx.activation(op.inputs[0], op)
    in_shape = ctx.tensor(op.inputs[0]).shape
    out_shape = ctx.tensor(op.outputs[0]).shape
    if op.outputs[0] not in ctx.output_names or len(out_shape) != 2:
        raise ModelError(
            f"RESHAPE (operator {op.index}): {in_shape} -> {out_shape}; only a reshape to a "
            "rank-2 graph output is supported"
        )
    if out_shape[0] != in_shape[0] or out_shape[1] != int(np.prod(in_shape[1:])):
        raise ModelError(f"RESHAPE (operator {op.index}): {in_shape} -> {out_shape} keeps no batch")
    base = f"reshape_{op.index}"
    if in_shape[1] * in_shape[2] > 1:
        nhwc = f"{base}_nhwc"
        ctx.node("Transpose", [x], [nhwc], f"{base}_transpose", perm=[0, 2, 3, 1])
        x = nhwc
    shape = ctx.initializer(f"{base}_shape", np.array([-1, out_shape[1]], np.int64))
    ctx.node("Reshape", [x, shape], [ctx.output(op, any_rank=True)], base)


def _needed(model: TFLiteModel, outputs: set[int]) -> list[Operator]:
    """The operators the given output tensors depend on, in the file's order."""
    producer = {t: op for op in model.operators for t in op.outputs}
    need: set[int] = set()
    stack = list(outputs)
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        op = producer[t]
        need.add(op.index)
        stack.extend(i for i in op.inputs if i >= 0)
    return [op for op in model.operators if op.index in need]


def convert_tflite(
    data: bytes,
    *,
    graph_name: str,
    input_name: str = "image",
    output_name: str = "mask",
    outputs: dict[str, str] | None = None,
    fp16_weights: bool = False,
    doc: str = "",
) -> bytes:
    """Convert a TFLite model's bytes to a serialised ONNX model (NCHW, dynamic batch).

    A model with one output gets ``output_name``. ``outputs`` (TFLite output tensor name → ONNX
    name) picks and names the outputs of a model with several; the others are dropped with every
    op that only they need. ``fp16_weights`` keeps the weights that are exact in fp16 (all of
    them, when the file's weights are fp16 behind DEQUANTIZE) as fp16 initialisers, each cast to
    fp32 by a Cast node that runtimes fold at load: the same numbers in half the bytes.
    """
    from onnx import TensorProto, checker, helper

    model = read_tflite(data)
    if len(model.inputs) != 1:
        raise ModelError(f"expected one input, the model has {len(model.inputs)}")
    by_name = {model.tensors[i].name: i for i in model.outputs}
    if outputs is None:
        if len(model.outputs) != 1:
            raise ModelError(
                f"the model has {len(model.outputs)} outputs ({', '.join(by_name)}); "
                "say which to convert"
            )
        output_names = {model.outputs[0]: output_name}
    else:
        missing = sorted(set(outputs) - set(by_name))
        if missing or not outputs:
            raise ModelError(
                f"the model has no output {', '.join(missing) or '(none asked for)'}; "
                f"its outputs: {', '.join(by_name)}"
            )
        output_names = {by_name[k]: v for k, v in outputs.items()}
    operators = _needed(model, set(output_names))
    unknown = sorted({op.opcode for op in operators} - set(CONVERTERS))
    if unknown:
        first = next(op for op in operators if op.opcode in unknown)
        raise ModelError(
            f"unsupported TFLite op {first.opcode} (operator {first.index}); "
            f"all unsupported ops: {', '.join(unknown)}"
        )
    ctx = Context(model, input_name, output_names, fp16_weights=fp16_weights)
    in_t = model.tensors[model.inputs[0]]
    if len(in_t.shape) != 4 or in_t.dtype != np.float32:
        raise ModelError(
            f"graph tensor {in_t.name} is {in_t.dtype} {in_t.shape}, expected float32 NHWC"
        )
    out_ts = [model.tensors[i] for i in output_names]
    for t in out_ts:
        if len(t.shape) not in (2, 4) or t.dtype != np.float32:
            raise ModelError(
                f"graph tensor {t.name} is {t.dtype} {t.shape}, expected float32 NHWC or [N, K]"
            )
    ctx.names[in_t.index] = input_name
    for op in operators:
        CONVERTERS[op.opcode](ctx, op)
    for t in out_ts:
        if t.index in ctx.pending_pads:
            ctx._emit_pad(t.index)
        if t.index not in ctx.names:
            raise ModelError(f"no op produces the graph output {t.name}")

    def value_info(name: str, shape: tuple[int, ...]) -> Any:
        dims: list[Any] = (
            ["N", shape[3], shape[1], shape[2]] if len(shape) == 4 else ["N", shape[1]]
        )
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)

    graph = helper.make_graph(
        ctx.nodes,
        graph_name,
        [value_info(input_name, in_t.shape)],
        [value_info(output_names[t.index], t.shape) for t in out_ts],
        ctx.initializers,
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        doc_string=doc,
    )
    onnx_model.ir_version = IR_VERSION
    onnx_model.metadata_props.add(key="source_sha256", value=hashlib.sha256(data).hexdigest())
    onnx_model.metadata_props.add(key="layout", value="NCHW float32 RGB in [0, 1]")
    try:
        checker.check_model(onnx_model, full_check=True)
    except Exception as exc:  # the checker raises its own types; report them as ours
        raise ModelError(f"converted model fails the ONNX checker: {exc}") from exc
    blob: bytes = onnx_model.SerializeToString(deterministic=True)
    return blob
