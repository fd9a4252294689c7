"""Stage 6, analyse: shapes, parameters, buffers, MACs and receptive fields, without torch.

Every node's ``meta`` gets ``shape`` (without the batch dimension), ``params``, ``buffers``,
``macs``, ``rf`` (receptive field height, width, and the jumps) and ``tensors`` (its parameters
and buffers: name, shape, whether a buffer) through the op catalog. Totals are kept per part: the
main network and each aux head. Conventions (also printed by the report):

* MACs: multiply-adds of conv and linear layers at batch 1 in eval mode, bias not counted
  (torchvision's ``_ops``, fvcore's conv+linear count). FLOPs = 2 x MACs.
* params: learnable elements; buffers: BatchNorm running mean/var and num_batches_tracked.
* depth: layers with weights (conv, linear) on the longest path of the main network, as the
  GoogLeNet paper counts its 22 layers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ShapeError, raise_all
from .graph import Graph, Node, topological_order
from .ops import OPS, OpShapeError, pair
from .text import dims


@dataclass
class Totals:
    params: int
    params_eval: int
    params_by_part: dict
    buffers: int
    buffers_eval: int
    macs: int
    macs_by_part: dict
    depth: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Analysis:
    graph: Graph
    totals: Totals
    modules: dict = field(default_factory=dict)  # path -> {type, output_shape, params, buffers, macs, part}

    @property
    def output(self) -> tuple:
        return self.graph.output.meta["shape"]


def _merge_error(node: Node, shapes: list) -> ShapeError:
    where = node.path or "the model"
    labels = node.labels or [f"branch {i + 1}" for i in range(len(shapes))]
    if node.op == "concat":
        if any(len(s) != len(shapes[0]) for s in shapes):
            detail = ", ".join(f"{l} gives {dims(s)}" for l, s in zip(labels, shapes))
            return ShapeError(f"concat in {where}: branches have different ranks: {detail}", node.loc, node.name)
        first = shapes[0]
        for label, s in zip(labels[1:], shapes[1:]):
            if s[1:] != first[1:]:
                return ShapeError(f"concat in {where}: {labels[0]} gives {dims(first[1:])}, {label} gives {dims(s[1:])}",
                                  node.loc, node.name)
    first = shapes[0]
    if node.op == "mul":
        detail = ", ".join(f"{l} gives {dims(s)}" for l, s in zip(labels, shapes))
        return ShapeError(f"mul in {where}: the branches do not broadcast ({detail}; each dimension must be equal "
                          "or 1, the ranks equal)", node.loc, node.name)
    for label, s in zip(labels[1:], shapes[1:]):
        if s != first:
            what = "channels" if len(s) == len(first) and s[1:] == first[1:] else "shapes"
            a, b = (first[0], s[0]) if what == "channels" else (dims(first), dims(s))
            return ShapeError(f"add in {where}: {labels[0]} gives {a} {what}, {label} gives {b}", node.loc, node.name)
    return ShapeError(f"{node.op} in {where}: inputs disagree", node.loc, node.name)


def _receptive(op, attrs, in_rf, in_shape, out_shape, input_hw):
    """Receptive field (rh, rw) and jump (jh, jw) of one output position."""
    rh, rw, jh, jw = in_rf
    if op.spatial is not None:
        k, s, d = op.spatial(attrs)
        return (rh + d[0] * (k[0] - 1) * jh, rw + d[1] * (k[1] - 1) * jw, jh * s[0], jw * s[1])
    if op.name.startswith("adaptive"):
        oh, ow = pair(attrs["output_size"])
        h, w = in_shape[1], in_shape[2]
        kh, kw = -(-h // oh) + (1 if h % oh else 0), -(-w // ow) + (1 if w % ow else 0)
        return (rh + (min(kh, h) - 1) * jh, rw + (min(kw, w) - 1) * jw, jh * max(h // oh, 1), jw * max(w // ow, 1))
    if len(out_shape) != 3:  # flatten / linear: every output sees the whole input
        return (max(rh, input_hw[0]), max(rw, input_hw[1]), jh, jw)
    return in_rf


def analyse(graph: Graph) -> Analysis:
    """Annotate every node and total the network; shape errors name the module and the spec line."""
    errors = []
    input_hw = tuple(graph.input_shape[1:])
    order = topological_order(graph)  # insertion order for every graph lower builds (archspec/graph.py)
    # Totals per part and per module path, and the depth, are computed in the same pass (one visit
    # of each node matters for large networks, whose nodes no longer fit in the CPU caches).
    parts: dict = {part: [0, 0, 0] for part in ("main", *graph.aux)}
    own: dict = {}  # module path -> [params, buffers, macs] of its own nodes
    depth: dict = {}  # node -> layers with weights on the longest path from the input to it
    maps: set = set()  # nodes whose output is a channels-first C x H x W map
    for node in order:
        op = OPS[node.op]
        if not _measure(node, op, errors, maps):
            continue
        meta = node.meta
        sums = (parts[node.part], own.setdefault(node.path, [0, 0, 0]))
        for total in sums:
            total[0] += meta["params"]
            total[1] += meta["buffers"]
            total[2] += meta["macs"]
        # Node-weighted longest path: aux-head nodes weigh nothing, so the maximum over the whole
        # graph is the main network's (nothing in the main network reads an aux head).
        depth[node] = (1 if op.weight_layer and node.part == "main" else 0) + max(
            (depth[i] for i in node.inputs), default=0)
        meta["rf"] = _node_receptive(node, op, input_hw)
    raise_all(errors)
    return Analysis(graph, _totals(parts, max(depth.values(), default=0)), _modules(graph, own))


def _measure(node: Node, op, errors: list, maps: set) -> bool:
    """Fill node.meta: shape, tensors, params, buffers, MACs. False (shape None) when its inputs or
    its own shape rule fail; the rule's error goes to ``errors``. ``maps`` collects the nodes whose
    output is a channels-first feature map (an op with ``on_map`` refuses one)."""
    meta = node.meta
    ins = [i.meta.get("shape") for i in node.inputs]
    meta["shape"] = None
    if any(s is None for s in ins):  # an upstream error was already reported
        return False
    on_map = bool(node.inputs) and node.inputs[0] in maps and len(ins[0]) == 3
    try:
        shape = _shape(node, op, ins, on_map)
    except OpShapeError as exc:
        if op.merge:
            errors.append(_merge_error(node, ins))
        else:
            where = node.path if node.is_module else f"{node.path or 'the model'} ({node.op})"
            errors.append(ShapeError(f"{where}: {exc}", node.loc, node.name))
        return False
    meta["shape"] = shape
    if len(shape) == 3 and op.layout in ("map", "same" if on_map else "map"):
        maps.add(node)
    first = ins[0] if ins else None
    tensors = op.tensors(first, node.attrs) if first is not None else ()
    meta["tensors"] = tensors
    params = buffers = 0
    for _, tshape, is_buffer in tensors:
        if is_buffer:
            buffers += math.prod(tshape)
        else:
            params += math.prod(tshape)
    meta["params"], meta["buffers"] = params, buffers
    meta["macs"] = op.macs(first, shape, node.attrs) if first is not None else 0
    return True


def _shape(node: Node, op, ins: list, on_map: bool) -> tuple:
    """The op's shape rule; an op that reads the last dimension refuses a channels-first map."""
    if op.on_map and on_map:
        raise OpShapeError(op.on_map.format(shape=dims(ins[0], " x ")))
    return tuple(op.shape(ins, node.attrs))


def _node_receptive(node: Node, op, input_hw: tuple) -> tuple:
    """The node's receptive field and jumps, from its inputs'."""
    if node.op == "input":
        return (1, 1, 1, 1)
    if op.merge:
        rfs = [i.meta["rf"] for i in node.inputs]
        return tuple(max(r[k] for r in rfs) for k in range(4))
    first = node.inputs[0].meta
    return _receptive(op, node.attrs, first["rf"], first["shape"], node.meta["shape"], input_hw)


def _totals(parts: dict, depth: int) -> Totals:
    by_part = {part: sums[0] for part, sums in parts.items()}
    buf_part = {part: sums[1] for part, sums in parts.items()}
    macs_part = {part: sums[2] for part, sums in parts.items()}
    return Totals(
        params=sum(by_part.values()), params_eval=by_part["main"], params_by_part=by_part,
        buffers=sum(buf_part.values()), buffers_eval=buf_part["main"], macs=macs_part["main"],
        macs_by_part=macs_part, depth=depth,
    )


def _modules(graph: Graph, own: dict) -> dict:
    """Per module path: output shape and the totals of everything inside it."""
    out = {}
    for path, span in graph.modules.items():
        m = span.module
        out[path] = {"type": m.type, "kind": m.kind, "part": m.part,
                     "output_shape": span.output.meta.get("shape") if span.output else None,
                     "input_shape": span.input.meta.get("shape"),
                     "params": 0, "buffers": 0, "macs": 0}
    # Each path's own sums go to the path and to every enclosing path.
    for path, (params, buffers, macs) in own.items():
        key = path
        while True:
            m = out.get(key)
            if m is not None:
                m["params"] += params
                m["buffers"] += buffers
                m["macs"] += macs
            if not key:
                break
            key = key[:key.rfind(".")] if "." in key else ""
    return out


def state_dict_shapes(graph: Graph, aux: bool = True) -> list:
    """The (key, shape) pairs the generated module's state_dict will hold, in order.

    Module ops are visited in registration order (the order of ``graph.modules``), which is the
    order PyTorch's ``state_dict`` uses, except that a module's own parameters (``parameter`` ops,
    whose key is their path) come before its submodules' tensors, as PyTorch saves them.
    """
    out = []
    own: dict = {}  # owner path -> its parameter ops' (key, shape)
    for path, span in graph.modules.items():
        if span.module.kind == "op" and OPS[span.module.type].parameter:
            owner = path.rpartition(".")[0]
            own.setdefault(owner, []).extend((path, tuple(shape)) for _, shape, _ in span.output.meta.get("tensors", ()))
    for path, span in graph.modules.items():
        if not aux and span.module.part != "main":
            continue
        out.extend(own.get(path, ()))
        if span.module.kind != "op" or OPS[span.module.type].parameter:
            continue
        for name, shape, _ in span.output.meta.get("tensors", ()):
            out.append((f"{path}.{name}", tuple(shape)))
    return out
