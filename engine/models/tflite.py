"""A small, strict reader for TFLite flatbuffer files.

Only the parts of the TFLite schema (tensorflow/lite/schema/schema.fbs) that a converter needs are
read: operator codes, the first subgraph's tensors and operators, buffers, and the builtin options
of the ops LiveFX converts. Every read is bounds-checked, so a truncated or corrupted file raises
``ModelError`` naming the byte offset instead of yielding a wrong model.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import ModelError

# BuiltinOperator enum values (schema.fbs).
BUILTIN_OPS: dict[int, str] = {
    0: "ADD",
    1: "AVERAGE_POOL_2D",
    2: "CONCATENATION",
    3: "CONV_2D",
    4: "DEPTHWISE_CONV_2D",
    5: "DEPTH_TO_SPACE",
    6: "DEQUANTIZE",
    9: "FULLY_CONNECTED",
    14: "LOGISTIC",
    17: "MAX_POOL_2D",
    18: "MUL",
    19: "RELU",
    21: "RELU6",
    22: "RESHAPE",
    23: "RESIZE_BILINEAR",
    25: "SOFTMAX",
    28: "TANH",
    32: "CUSTOM",
    34: "PAD",
    39: "TRANSPOSE",
    40: "MEAN",
    41: "SUB",
    67: "TRANSPOSE_CONV",
    97: "RESIZE_NEAREST_NEIGHBOR",
    117: "HARD_SWISH",
}

# TensorType enum -> NumPy dtype.
TENSOR_TYPES: dict[int, np.dtype[Any]] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f2"),
    2: np.dtype("<i4"),
    3: np.dtype("u1"),
    4: np.dtype("<i8"),
    6: np.dtype("?"),
    7: np.dtype("<i2"),
    9: np.dtype("i1"),
    10: np.dtype("<f8"),
}

FILE_IDENTIFIER = b"TFL3"


class _Buf:
    """Bounds-checked little-endian access to the file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _check(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or pos + size > len(self.data):
            raise ModelError(
                f"malformed TFLite file: {what} at offset {pos} runs past the end "
                f"of the file ({len(self.data)} bytes)"
            )

    def unpack(self, fmt: str, pos: int, what: str) -> Any:
        size = struct.calcsize(fmt)
        self._check(pos, size, what)
        return struct.unpack_from("<" + fmt, self.data, pos)[0]

    def raw(self, pos: int, size: int, what: str) -> bytes:
        self._check(pos, size, what)
        return self.data[pos : pos + size]


class Table:
    """One flatbuffer table: fields are looked up through its vtable."""

    def __init__(self, buf: _Buf, pos: int, kind: str) -> None:
        self.buf = buf
        self.pos = pos
        self.kind = kind
        vtable = pos - buf.unpack("i", pos, f"{kind} vtable offset")
        self.vtable = vtable
        self.vtable_size = buf.unpack("H", vtable, f"{kind} vtable size")
        if self.vtable_size < 4 or self.vtable_size % 2:
            raise ModelError(
                f"malformed TFLite file: {kind} vtable at offset {vtable} has size "
                f"{self.vtable_size}"
            )
        buf._check(vtable, self.vtable_size, f"{kind} vtable")

    def _field_pos(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot >= self.vtable_size:
            return None
        off = self.buf.unpack("H", self.vtable + slot, f"{self.kind} field {index}")
        return None if off == 0 else self.pos + off

    def scalar(self, index: int, fmt: str, default: Any) -> Any:
        p = self._field_pos(index)
        if p is None:
            return default
        return self.buf.unpack(fmt, p, f"{self.kind} field {index}")

    def _indirect(self, index: int) -> int | None:
        p = self._field_pos(index)
        if p is None:
            return None
        return p + self.buf.unpack("I", p, f"{self.kind} field {index} offset")

    def table(self, index: int, kind: str) -> Table | None:
        p = self._indirect(index)
        return None if p is None else Table(self.buf, p, kind)

    def string(self, index: int) -> str | None:
        p = self._indirect(index)
        if p is None:
            return None
        n = self.buf.unpack("I", p, f"{self.kind} string length")
        raw = self.buf.raw(p + 4, n, f"{self.kind} string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelError(f"malformed TFLite file: string at offset {p} is not UTF-8") from exc

    def vector(self, index: int, fmt: str) -> list[Any]:
        p = self._indirect(index)
        if p is None:
            return []
        n = self.buf.unpack("I", p, f"{self.kind} vector length")
        size = struct.calcsize(fmt)
        raw = self.buf.raw(p + 4, n * size, f"{self.kind} vector")
        return list(struct.unpack_from(f"<{n}{fmt}", raw, 0))

    def bytes_vector(self, index: int) -> bytes:
        p = self._indirect(index)
        if p is None:
            return b""
        n = self.buf.unpack("I", p, f"{self.kind} vector length")
        return self.buf.raw(p + 4, n, f"{self.kind} byte vector")

    def tables(self, index: int, kind: str) -> list[Table]:
        p = self._indirect(index)
        if p is None:
            return []
        n = self.buf.unpack("I", p, f"{self.kind} vector length")
        out = []
        for i in range(n):
            elem = p + 4 + 4 * i
            out.append(Table(self.buf, elem + self.buf.unpack("I", elem, kind), kind))
        return out


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    data: np.ndarray | None  # constant contents, or None for activations

    @property
    def is_constant(self) -> bool:
        return self.data is not None


@dataclass
class Operator:
    index: int
    opcode: str  # builtin name, or the custom code for CUSTOM ops
    inputs: list[int]
    outputs: list[int]
    options: Table | None
    custom_options: bytes = b""


@dataclass
class TFLiteModel:
    version: int
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    description: str = ""
    opcodes: list[str] = field(default_factory=list)


def read_tflite(data: bytes) -> TFLiteModel:
    """Parse the first subgraph of a TFLite model."""
    if len(data) < 8:
        raise ModelError(f"malformed TFLite file: only {len(data)} bytes")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelError(
            f"not a TFLite file: expected identifier {FILE_IDENTIFIER!r} at offset 4, "
            f"found {bytes(data[4:8])!r}"
        )
    buf = _Buf(data)
    root = Table(buf, buf.unpack("I", 0, "root offset"), "Model")
    version = root.scalar(0, "I", 0)

    opcodes = []
    for oc in root.tables(1, "OperatorCode"):
        deprecated = oc.scalar(0, "b", 0)
        builtin = max(int(deprecated), int(oc.scalar(3, "i", 0)))
        if builtin == 32:
            opcodes.append(oc.string(1) or "CUSTOM")
        else:
            opcodes.append(BUILTIN_OPS.get(builtin, f"BUILTIN_{builtin}"))

    buffers = [b.bytes_vector(0) for b in root.tables(4, "Buffer")]

    subgraphs = root.tables(2, "SubGraph")
    if not subgraphs:
        raise ModelError("malformed TFLite file: the model has no subgraph")
    sg = subgraphs[0]

    tensors = []
    for i, t in enumerate(sg.tables(0, "Tensor")):
        shape = tuple(int(s) for s in t.vector(0, "i"))
        type_code = t.scalar(1, "b", 0)
        if type_code not in TENSOR_TYPES:
            raise ModelError(f"tensor {i} has unsupported TFLite type {type_code}")
        dtype = TENSOR_TYPES[type_code]
        buffer_index = t.scalar(2, "I", 0)
        if buffer_index >= max(len(buffers), 1):
            raise ModelError(
                f"malformed TFLite file: tensor {i} names buffer {buffer_index} of {len(buffers)}"
            )
        raw = buffers[buffer_index] if buffers else b""
        array = None
        if raw:
            count = int(np.prod(shape)) if shape else 1
            if len(raw) != count * dtype.itemsize:
                raise ModelError(
                    f"malformed TFLite file: tensor {i} ({t.string(3)}) has shape {shape} "
                    f"but its buffer holds {len(raw)} bytes"
                )
            array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        tensors.append(Tensor(i, t.string(3) or f"t{i}", shape, dtype, array))

    operators = []
    for i, op in enumerate(sg.tables(3, "Operator")):
        code_index = op.scalar(0, "I", 0)
        if code_index >= len(opcodes):
            raise ModelError(
                f"malformed TFLite file: operator {i} names opcode {code_index} of {len(opcodes)}"
            )
        inputs = [int(x) for x in op.vector(1, "i")]
        outputs = [int(x) for x in op.vector(2, "i")]
        for x in inputs + outputs:
            if x >= len(tensors):
                raise ModelError(
                    f"malformed TFLite file: operator {i} names tensor {x} of {len(tensors)}"
                )
        operators.append(
            Operator(
                index=i,
                opcode=opcodes[code_index],
                inputs=inputs,
                outputs=outputs,
                options=op.table(4, "BuiltinOptions"),
                custom_options=op.bytes_vector(5),
            )
        )

    return TFLiteModel(
        version=version,
        tensors=tensors,
        operators=operators,
        inputs=[int(x) for x in sg.vector(1, "i")],
        outputs=[int(x) for x in sg.vector(2, "i")],
        description=root.string(3) or "",
        opcodes=opcodes,
    )
