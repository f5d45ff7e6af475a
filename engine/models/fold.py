"""The shipped segmenters' CPU graphs: the same network, folded for ONNX Runtime's NCHWc layout.

On x86, ONNX Runtime's CPU provider runs convolutions in a blocked channel layout (NCHWc, 16
channels per block with AVX-512, 8 with AVX2) and converts tensors in and out of it around every
operator it cannot run in that layout. In the MediaPipe selfie segmenters two such operators sit
in every squeeze-and-excite block: ``ReduceMean`` over H and W, and the ``Mul`` that scales an
N×C×H×W tensor by an N×C×1×1 gate (NCHWc runs a ``Mul`` only on inputs of one shape). Each block
then costs two layout conversions of its full tensor, 49 conversions per landscape frame.

Two rewrites, each exact up to the order of a float sum, and the batch fixed at 1:

- ``ReduceMean`` over axes (2, 3) with ``keepdims`` → ``GlobalAveragePool``;
- ``Mul(x, gate)`` with ``gate`` N×C×1×1 and ``x`` N×C×H×W (H, W static) → ``Mul(x, Resize(gate))``:
  a nearest-neighbour ``Resize`` by (1, 1, H, W), which NCHWc runs as its ``Upsample``.

ONNX Runtime then keeps the whole network in NCHWc but for a 24-channel pool and the last
transposed convolution (4 conversions left, landscape). Measured on one thread here, interleaved
with the converted graph: 0.84× its time for both models (0.84–0.89× over several runs), the
masks within 4e-4 of it (IoU 1.0 at 0.5 on 84 held-out frames per model).

The folded graphs are committed next to the converted ones (``*_cpu.onnx``, sha256 in the
registry) and ``OnnxRuntimeBackend`` runs them in place of the converted bytes; the CUDA engine
and TensorRT keep the converted graphs. ``python -m engine.models.fold`` makes them again and
``--check`` compares them, byte for byte, with the committed files. Needs ``onnx`` (the dev
extra): a build step, nothing here runs when LiveFX serves or processes.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ModelError
from engine.models.registry import SEGMENTERS, load_model


def _shapes(model: Any) -> dict[str, list[int]]:
    """Static dimensions (0 where unknown) of every value that ONNX shape inference can tell."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    out = {}
    for v in [*graph.input, *graph.value_info, *graph.output]:
        dims = v.type.tensor_type.shape.dim
        out[v.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
    return out


def _axes(node: Any, initialisers: dict[str, Any]) -> list[int] | None:
    from onnx import helper, numpy_helper

    for a in node.attribute:
        if a.name == "axes":
            return [int(x) for x in helper.get_attribute_value(a)]
    if len(node.input) > 1 and node.input[1] in initialisers:
        return [int(x) for x in numpy_helper.to_array(initialisers[node.input[1]])]
    return None


def fold_for_cpu(model: bytes) -> bytes:
    """``model`` with its spatial means as ``GlobalAveragePool`` and its channel-gate multiplies
    on gates brought to the full size (see the module's docstring). Deterministic."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load_from_string(model)
    # Batch 1, what the CPU backend binds: with a free batch dimension ONNX Runtime cannot prove
    # the wide gate and the tensor of one shape, and keeps its layout conversions around the Mul.
    for v in (*m.graph.input, *m.graph.output):
        dims = v.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    shapes = _shapes(m)
    initialisers = {t.name: t for t in m.graph.initializer}
    nodes = []
    for n in m.graph.node:
        if n.op_type == "ReduceMean" and n.domain in ("", "ai.onnx"):
            keepdims = next((a.i for a in n.attribute if a.name == "keepdims"), 1)
            rank = len(shapes.get(n.input[0], []))
            if rank == 4 and keepdims == 1 and sorted(_axes(n, initialisers) or []) == [2, 3]:
                nodes.append(
                    helper.make_node("GlobalAveragePool", [n.input[0]], list(n.output), n.name)
                )
                continue
        if n.op_type == "Mul" and n.domain in ("", "ai.onnx") and len(n.input) == 2:
            a, b = (shapes.get(i, []) for i in n.input)
            gate = None
            if len(a) == 4 and len(b) == 4 and a[1] == b[1] > 0:
                if b[2:] == [1, 1] and min(a[2:]) > 0 and a[2:] != [1, 1]:
                    gate, full = 1, a
                elif a[2:] == [1, 1] and min(b[2:]) > 0 and b[2:] != [1, 1]:
                    gate, full = 0, b
            if gate is not None:
                scales = f"{n.name}_gate_scales"
                m.graph.initializer.append(
                    numpy_helper.from_array(np.array([1, 1, *full[2:]], np.float32), scales)
                )
                wide = f"{n.input[gate]}_{n.name}_wide"
                nodes.append(
                    helper.make_node(
                        "Resize",
                        [n.input[gate], "", scales],
                        [wide],
                        f"{n.name}_gate",
                        mode="nearest",
                        coordinate_transformation_mode="asymmetric",
                        nearest_mode="floor",
                    )
                )
                inputs = list(n.input)
                inputs[gate] = wide
                nodes.append(helper.make_node("Mul", inputs, list(n.output), n.name))
                continue
        nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    for p in list(m.metadata_props):
        if p.key == "folded_from_sha256":
            m.metadata_props.remove(p)
    m.metadata_props.add(key="folded_from_sha256", value=hashlib.sha256(model).hexdigest())
    onnx.checker.check_model(m)
    return bytes(m.SerializeToString())


def build(out_dir: Path, check: bool) -> list[str]:
    """Fold every shipped segmenter; write into ``out_dir``, or compare with the committed files."""
    lines = []
    for spec in SEGMENTERS.values():
        folded = fold_for_cpu(load_model(spec.name))
        digest = hashlib.sha256(folded).hexdigest()
        target = out_dir / spec.cpu_filename
        if check:
            if digest != spec.cpu_sha256:
                raise ModelError(
                    f"{spec.cpu_filename}: folding gives sha256 {digest}, the registry records "
                    f"{spec.cpu_sha256}"
                )
            lines.append(f"{spec.cpu_filename}: same bytes as committed ({digest[:12]}…)")
        else:
            target.write_bytes(folded)
            lines.append(f"{target}: {len(folded)} bytes, sha256 {digest}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args(argv)
    for line in build(args.out, args.check):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
