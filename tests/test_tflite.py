"""The TFLite reader and the converter's handling of bad files."""

from __future__ import annotations

import struct

import pytest

from engine.errors import ModelError
from engine.models.convert import convert_tflite
from engine.models.tflite import Table, _Buf, read_tflite
from tests.conftest import TFLITE


@pytest.fixture(scope="module")
def general_bytes() -> bytes:
    return TFLITE["general"].read_bytes()


@pytest.mark.parametrize(
    ("name", "in_shape", "out_shape", "pool_op"),
    [
        ("general", (1, 256, 256, 3), (1, 256, 256, 1), "AVERAGE_POOL_2D"),
        ("landscape", (1, 144, 256, 3), (1, 144, 256, 1), "MEAN"),
    ],
)
def test_reads_the_mediapipe_models(name: str, in_shape, out_shape, pool_op) -> None:
    m = read_tflite(TFLITE[name].read_bytes())
    assert m.tensors[m.inputs[0]].shape == in_shape
    assert m.tensors[m.outputs[0]].shape == out_shape
    ops = {op.opcode for op in m.operators}
    assert ops == {
        "DEQUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MUL", "RELU", "HARD_SWISH",
        "LOGISTIC", pool_op, "RESIZE_BILINEAR", "Convolution2DTransposeBias",
    }  # fmt: skip
    transpose = next(op for op in m.operators if op.opcode == "Convolution2DTransposeBias")
    assert struct.unpack("<iii", transpose.custom_options) == (1, 2, 2)  # SAME, stride 2×2


def test_not_a_tflite_file_names_the_offset() -> None:
    with pytest.raises(ModelError, match="offset 4"):
        read_tflite(b"\x00" * 64)


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.9999])
def test_truncated_file_is_an_error_naming_an_offset(general_bytes: bytes, fraction: float) -> None:
    # MediaPipe appends a zip of metadata (labels.txt) after the flatbuffer; cut the model itself.
    model_end = general_bytes.index(b"PK\x03\x04")
    cut = general_bytes[: int(model_end * fraction)]
    with pytest.raises(ModelError, match=r"offset|only \d+ bytes"):
        convert_tflite(cut, graph_name="truncated")


def _opcode_field_positions(data: bytes, opcode_name: str) -> list[tuple[int, str]]:
    """Byte positions of the builtin-code fields of the OperatorCode entry for ``opcode_name``."""
    buf = _Buf(data)
    root = Table(buf, buf.unpack("I", 0, "root"), "Model")
    m = read_tflite(data)
    index = m.opcodes.index(opcode_name)
    oc = root.tables(1, "OperatorCode")[index]
    out = []
    for field, fmt in ((0, "b"), (3, "i")):
        pos = oc._field_pos(field)
        if pos is not None:
            out.append((pos, fmt))
    return out


def test_unknown_op_is_an_error_that_names_it(general_bytes: bytes) -> None:
    data = bytearray(general_bytes)
    for pos, fmt in _opcode_field_positions(general_bytes, "HARD_SWISH"):
        struct.pack_into("<" + fmt, data, pos, 25)  # SOFTMAX: real, but not converted
    with pytest.raises(ModelError, match=r"unsupported TFLite op SOFTMAX \(operator \d+\)"):
        convert_tflite(bytes(data), graph_name="patched")


def test_bad_custom_options_are_an_error(general_bytes: bytes) -> None:
    m = read_tflite(general_bytes)
    op = next(op for op in m.operators if op.opcode == "Convolution2DTransposeBias")
    start = general_bytes.index(op.custom_options)
    data = bytearray(general_bytes)
    struct.pack_into("<i", data, start, 7)  # padding enum out of range
    with pytest.raises(ModelError, match=r"Convolution2DTransposeBias .*bad options"):
        convert_tflite(bytes(data), graph_name="patched")


def test_tensor_index_out_of_range_is_an_error(general_bytes: bytes) -> None:
    m = read_tflite(general_bytes)
    # Point the first operator's first input at a tensor that does not exist.
    buf = _Buf(general_bytes)
    root = Table(buf, buf.unpack("I", 0, "root"), "Model")
    op = root.tables(2, "SubGraph")[0].tables(3, "Operator")[0]
    vec = op._indirect(1)
    assert vec is not None
    data = bytearray(general_bytes)
    struct.pack_into("<i", data, vec + 4, len(m.tensors) + 5)
    with pytest.raises(ModelError, match=r"operator 0 names tensor \d+ of \d+"):
        read_tflite(bytes(data))
