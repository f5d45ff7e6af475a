"""The planners: one per op or fused pattern (see ``planners.py`` for the patterns).

Each takes the ``Planner`` and the first node of its pattern, looks ahead along tensors that
have one reader, and adds one step (or defers itself into the step that reads it: a Pad into
its conv, a per-channel gate into the conv or Add that reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.inference.net import plan as P
from engine.inference.net.graph import Node
from engine.inference.net.planners import Planner
from engine.inference.net.shapes import pad_amounts, refuse, resize_scales

NO_ACT = (P.A_NONE, 0.0, 0.0)


@dataclass
class Gate:
    """A deferred ``Mul(x, gate)``: x full-size, gate one value per (sample, channel)."""

    x: str
    gate: str
    node: Node


def _gate_of(pl: Planner, node: Node) -> Gate | None:
    """``node`` as a per-channel gate Mul, or None."""
    if node.op != "Mul" or not all(pl.runtime(i) for i in node.inputs[:2]):
        return None
    a, b = node.inputs[:2]
    sa, sb = pl.shapes[a], pl.shapes[b]
    if len(sa) == 4 and len(sb) == 4 and sb == (sa[0], sa[1], 1, 1) and sa != sb:
        return Gate(a, b, node)
    if len(sa) == 4 and len(sb) == 4 and sa == (sb[0], sb[1], 1, 1) and sa != sb:
        return Gate(b, a, node)
    return None


def _is_se_conv(pl: Planner, node: Node) -> bool:
    if node.op != "Conv" or not pl.runtime(node.inputs[0]):
        return False
    w = pl.values[node.inputs[1]]
    x = pl.shapes[node.inputs[0]]
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    return (
        w.shape[2:] == (1, 1)
        and int(node.attrs.get("group", 1)) == 1
        and len(x) == 4
        and x[2:] == (1, 1)
        and not any(pads)
        and node.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "", "VALID")
    )


def _per_channel(c: np.ndarray, channels: int) -> np.ndarray | None:
    """A constant that broadcasts over (N, C, H, W) as one value per channel, as (C,)."""
    c = np.asarray(c, np.float32)
    if c.ndim > 4:
        return None
    dims = [1] * (4 - c.ndim) + list(c.shape)
    c4 = c.reshape(dims)
    if dims[0] != 1 or dims[2:] != [1, 1] or dims[1] not in (1, channels):
        return None
    return np.broadcast_to(c4.reshape(-1), (channels,)).copy()


# -- convolution ---------------------------------------------------------------------------


def plan_conv(pl: Planner, node: Node) -> None:
    if _is_se_conv(pl, node):
        plan_se(pl, node)
        return
    transpose = node.op == "ConvTranspose"
    x, y0 = node.inputs[0], node.outputs[0]
    w = np.asarray(pl.values[node.inputs[1]], np.float32)
    bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
    co = int(pl.shapes[y0][1])
    b = np.zeros(co, np.float32) if not bias_name else np.asarray(pl.values[bias_name], np.float32)
    a = node.attrs
    s = list(a.get("strides", [1, 1]))
    d = list(a.get("dilations", [1, 1]))
    from engine.inference.net.shapes import conv_pads

    xs = pl.shapes[x]
    pads = conv_pads(pl.model, node, (xs[2], xs[3]), (w.shape[2], w.shape[3]), s, d)
    nodes = [node]
    pad_mode = P.P_ZERO
    gate: str | None = None
    pending = pl.deferred.pop(id(node), None)
    for dn in pending or []:
        if dn.op == "Pad":
            pads_p = pad_amounts(pl.model, dn, pl.values)
            mode = dn.attrs.get("mode", "constant")
            pad_mode = {"constant": P.P_ZERO, "edge": P.P_EDGE, "reflect": P.P_REFLECT}[mode]
            pads = [p + q for p, q in zip(pads, pads_p, strict=True)]
            x = dn.inputs[0]
        else:
            g = _gate_of(pl, dn)
            assert g is not None
            x, gate = g.x, g.gate
        nodes.insert(0, dn)
    act1, act2 = NO_ACT, NO_ACT
    residual: str | None = None
    state, cur = "pre", y0
    while True:
        r = pl.only_reader(cur)
        if r is None:
            break
        act = pl.act_of(r)
        other = [i for i in r.inputs[:2] if i != cur]
        if state == "pre" and not transpose and r.op in ("Add", "Mul") and len(other) == 1:
            c = pl.const(other[0])
            pc = _per_channel(c, co) if c is not None else None
            if pc is not None and pl.shapes[r.outputs[0]] == pl.shapes[cur]:
                if r.op == "Add":
                    b = b + pc
                else:
                    w, b = w * pc[:, None, None, None], b * pc
                nodes.append(r)
                cur = r.outputs[0]
                continue
        if act is not None and state in ("pre", "res"):
            if state == "pre":
                act1, state = act, "act1"
            else:
                act2, state = act, "done"
            nodes.append(r)
            cur = r.outputs[0]
            continue
        if r.op == "Add" and state in ("pre", "act1") and len(other) == 1:
            o = other[0]
            if (
                pl.runtime(o)
                and o not in pl.gates
                and pl.shapes[o] == pl.shapes[cur] == pl.shapes[r.outputs[0]]
            ):
                residual, state = o, "res"
                nodes.append(r)
                cur = r.outputs[0]
                continue
        break
    f = pl.io_fields(x, cur)
    group = int(a.get("group", 1))
    f.update(
        kh=int(w.shape[2]), kw=int(w.shape[3]), sh=s[0], sw=s[1], dh=d[0], dw=d[1], group=group
    )
    f.update(pt=pads[0], pl=pads[1], mode=pad_mode, act1=act1, act2=act2)
    f["w_off"] = pl.weights(w, node)
    f["b_off"] = pl.consts(b)
    kind = P.K_CONVT if transpose else P.K_CONV
    n_, _, ho, wo = pl.dims(cur)
    per_out = (w.shape[1] if not transpose else w.shape[0] // group) * w.shape[2] * w.shape[3]
    macs = n_ * co * ho * wo * per_out
    if transpose:
        macs //= s[0] * s[1]
    step = P.Step(kind, f, x, cur, r=residual, s=gate, macs=int(macs))
    pl.add(nodes[-1], step, nodes)


def plan_se(pl: Planner, node: Node) -> None:
    """1×1 convs on a 1×1 input (the pooled values of a squeeze-and-excite block): one step."""
    x = node.inputs[0]
    nodes = [node]

    def layer(n: Node) -> tuple[np.ndarray, np.ndarray]:
        w = np.asarray(pl.values[n.inputs[1]], np.float32)
        w = w.reshape(w.shape[0], w.shape[1])
        b = n.inputs[2] if len(n.inputs) > 2 else ""
        return w, (np.asarray(pl.values[b], np.float32) if b else np.zeros(w.shape[0], np.float32))

    w1, b1 = layer(node)
    cur = node.outputs[0]
    act1 = NO_ACT
    r = pl.only_reader(cur)
    if r is not None and (a := pl.act_of(r)) is not None:
        act1, cur = a, r.outputs[0]
        nodes.append(r)
        r = pl.only_reader(cur)
    if r is not None and _is_se_conv(pl, r) and r.inputs[0] == cur:
        w2, b2 = layer(r)
        nodes.append(r)
        cur = r.outputs[0]
        act2 = NO_ACT
        r = pl.only_reader(cur)
        if r is not None and (a := pl.act_of(r)) is not None:
            act2, cur = a, r.outputs[0]
            nodes.append(r)
        f = pl.io_fields(x, cur)
        f.update(cmid=int(w1.shape[0]), act1=act1, act2=act2)
        f["w_off"] = pl.weights(w1, node)
        f["w2_off"] = pl.weights(w2, nodes[-1])
        f["b_off"] = pl.consts(np.concatenate([b1, b2]))
        macs = w1.size + w2.size
    else:
        f = pl.io_fields(x, cur)
        f.update(cmid=0, act2=act1)
        f["w_off"] = pl.weights(w1, node)
        f["b_off"] = pl.consts(b1)
        macs = w1.size
    pl.add(nodes[-1], P.Step(P.K_SE, f, x, cur, macs=int(macs) * pl.dims(x)[0]), nodes)


# -- elementwise ---------------------------------------------------------------------------

SWAPPED = {P.E_ADD: P.E_ADD, P.E_MUL: P.E_MUL, P.E_SUB: P.E_RSUB, P.E_DIV: P.E_RDIV}
OPS = {"Add": P.E_ADD, "Mul": P.E_MUL, "Sub": P.E_SUB, "Div": P.E_DIV}


def plan_eltwise(pl: Planner, node: Node) -> None:
    gate = _gate_of(pl, node)
    if gate is not None:
        r = pl.only_reader(node.outputs[0])
        if (
            r is not None
            and r.op in ("Conv",)
            and r.inputs[0] == node.outputs[0]
            and not _is_se_conv(pl, r)
        ):
            pl.defer(r, node)
            return
        if r is not None and r.op == "Add":
            other = [i for i in r.inputs[:2] if i != node.outputs[0]]
            if len(other) == 1 and pl.runtime(other[0]):
                pl.gates[node.outputs[0]] = gate
                pl.done.add(id(node))
                return
    a, b = node.inputs[:2]
    op = OPS[node.op]
    y = node.outputs[0]
    nodes = [node]
    scale: str | None = None
    if not pl.runtime(a):
        a, b, op = b, a, SWAPPED[op]
    if b in pl.gates and op == P.E_ADD and a not in pl.gates:
        a, b = b, a
    if a in pl.gates:
        g = pl.gates.pop(a)
        nodes.insert(0, g.node)
        a, scale = g.x, g.gate
    f = pl.io_fields(a, y)
    if pl.shapes.get(a) != pl.shapes[y]:
        if pl.runtime(b) and pl.shapes[b] == pl.shapes[y] and op in SWAPPED:
            a, b, op = b, a, SWAPPED[op]
            f = pl.io_fields(a, y)
        else:
            raise refuse(pl.model, node, f"broadcast of {pl.shapes.get(a)} to {pl.shapes[y]}")
    r_name: str | None = None
    if pl.runtime(b):
        sb, sy = pl.shapes[b], pl.shapes[y]
        if sb == sy:
            f["mode2"], r_name = P.B_FULL, b
        elif len(sb) == 4 and sb == (sy[0], sy[1], 1, 1):
            f["mode2"], r_name = P.B_NC, b
        else:
            raise refuse(pl.model, node, f"an operand of shape {sb} for {sy}")
    else:
        pc = _per_channel(pl.values[b], f["co"])
        if pc is None:
            raise refuse(pl.model, node, f"a constant of shape {pl.values[b].shape}")
        if np.all(pc == pc[0]):
            f["mode2"], f["b_off"] = P.B_CONST_1, pl.consts(pc[:1])
        else:
            f["mode2"], f["b_off"] = P.B_CONST_C, pl.consts(pc)
    f["mode"] = op
    y, act = _fuse_act(pl, y, nodes)
    f["act1"] = act
    pl.add(nodes[-1], P.Step(P.K_ELTWISE, f, a, y, r=r_name, s=scale), nodes)


def _fuse_act(pl: Planner, y: str, nodes: list[Node]) -> tuple[str, tuple[int, float, float]]:
    r = pl.only_reader(y)
    if r is not None and (act := pl.act_of(r)) is not None:
        nodes.append(r)
        return r.outputs[0], act
    return y, NO_ACT


def plan_act(pl: Planner, node: Node) -> None:
    act = pl.act_of(node)
    assert act is not None
    x, y = node.inputs[0], node.outputs[0]
    f = pl.io_fields(x, y)
    f.update(mode2=P.B_NONE, act1=act)
    pl.add(node, P.Step(P.K_ELTWISE, f, x, y), [node])


# -- pooling, resampling, layout -------------------------------------------------------------


def plan_pool(pl: Planner, node: Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    f = pl.io_fields(x, y)
    a = node.attrs
    k = list(a.get("kernel_shape", [f["hi"], f["wi"]]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    is_global = node.op in ("GlobalAveragePool", "ReduceMean") or (
        node.op == "AveragePool" and k == [f["hi"], f["wi"]] and not any(pads)
    )
    if is_global:
        pl.add(node, P.Step(P.K_GAP, f, x, y, macs=f["n"] * f["ci"] * f["hi"] * f["wi"]), [node])
        return
    from engine.inference.net.shapes import conv_pads

    s = list(a.get("strides", [1, 1]))
    pads = conv_pads(pl.model, node, (f["hi"], f["wi"]), (k[0], k[1]), s, [1, 1])
    mode = 0 if node.op == "MaxPool" else (2 if a.get("count_include_pad", 0) else 1)
    f.update(kh=k[0], kw=k[1], sh=s[0], sw=s[1], pt=pads[0], pl=pads[1], mode=mode)
    pl.add(node, P.Step(P.K_POOL, f, x, y), [node])


def plan_resize(pl: Planner, node: Node) -> None:
    from engine.inference.net.plan import COORD_MODES, NEAREST_MODES

    x, y = node.inputs[0], node.outputs[0]
    f = pl.io_fields(x, y)
    a = node.attrs
    _, (fy, fx) = resize_scales(pl.model, node, pl.shapes[x], pl.values)
    nearest = a.get("nearest_mode", "round_prefer_floor")
    if nearest not in NEAREST_MODES:
        raise refuse(pl.model, node, f"nearest_mode {nearest}")
    f.update(
        mode=1 if a.get("mode", "nearest") == "linear" else 0,
        mode2=COORD_MODES[a.get("coordinate_transformation_mode", "half_pixel")],
        mode3=NEAREST_MODES[nearest],
        fy=fy,
        fx=fx,
    )
    pl.add(node, P.Step(P.K_RESIZE, f, x, y), [node])


def plan_d2s(pl: Planner, node: Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    f = pl.io_fields(x, y)
    mode = node.attrs.get("mode", "DCR")
    f.update(kh=int(node.attrs["blocksize"]), mode=0 if mode == "DCR" else 1)
    pl.add(node, P.Step(P.K_D2S, f, x, y), [node])


def plan_pad(pl: Planner, node: Node) -> None:
    pads = pad_amounts(pl.model, node, pl.values)
    mode = node.attrs.get("mode", "constant")
    value = 0.0
    if mode == "constant":
        ins = [*node.inputs, "", ""]
        cv = pl.const(ins[2])
        value = float(np.asarray(cv).ravel()[0]) if cv is not None and cv.size else 0.0
    r = pl.only_reader(node.outputs[0])
    if r is not None and r.op == "Conv" and r.inputs[0] == node.outputs[0] and value == 0.0:
        conv_pads = list(r.attrs.get("pads", [0, 0, 0, 0]))
        auto = r.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "", "VALID")
        if auto and (mode == "constant" or not any(conv_pads)) and not _is_se_conv(pl, r):
            pl.defer(r, node)
            return
    x, y = node.inputs[0], node.outputs[0]
    f = pl.io_fields(x, y)
    modes = {"constant": P.P_ZERO, "edge": P.P_EDGE, "reflect": P.P_REFLECT}
    f.update(pt=pads[0], pl=pads[1], mode=modes[mode], fy=value)
    pl.add(node, P.Step(P.K_PAD, f, x, y), [node])


def plan_concat(pl: Planner, node: Node) -> None:
    y = node.outputs[0]
    first = 0
    for x in node.inputs:
        f = pl.io_fields(x, y)
        f["mode"] = first
        pl.add(node, P.Step(P.K_CONCAT, f, x, y), [node])
        first += f["ci"]


PLANNERS: dict[str, Callable[[Planner, Node], None]] = {
    "Conv": plan_conv,
    "ConvTranspose": plan_conv,
    "Add": plan_eltwise,
    "Mul": plan_eltwise,
    "Sub": plan_eltwise,
    "Div": plan_eltwise,
    "AveragePool": plan_pool,
    "MaxPool": plan_pool,
    "GlobalAveragePool": plan_pool,
    "ReduceMean": plan_pool,
    "Resize": plan_resize,
    "DepthToSpace": plan_d2s,
    "Pad": plan_pad,
    "Concat": plan_concat,
    **dict.fromkeys(
        ["Relu", "Sigmoid", "HardSwish", "Clip", "LeakyRelu", "Tanh", "HardSigmoid"], plan_act
    ),
}
