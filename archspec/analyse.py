"""Stage 6, analyse: shapes, parameters, buffers, MACs and receptive fields, without torch.

Every node gets ``shape`` (without the batch dimension), ``params``, ``buffers``, ``macs`` and
``rf`` (receptive field height, width) through the op catalog. Totals are kept per part: the
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
from .graph import Graph, topological_order
from .ops import OPS, OpShapeError, pair


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
        return self.graph.nodes[self.graph.graph["output"]]["shape"]


def dims(shape) -> str:
    """A shape as people write it: 64x56x56 ("?" when unknown)."""
    if shape is None:
        return "?"
    return "x".join(str(d) for d in shape)


def _merge_error(g, node, data, shapes) -> ShapeError:
    where = data["path"] or "the model"
    labels = data.get("labels") or [f"branch {i + 1}" for i in range(len(shapes))]
    if data["op"] == "concat":
        if any(len(s) != len(shapes[0]) for s in shapes):
            detail = ", ".join(f"{l} gives {dims(s)}" for l, s in zip(labels, shapes))
            return ShapeError(f"concat in {where}: branches have different ranks: {detail}", data["loc"], node)
        first = shapes[0]
        for label, s in zip(labels[1:], shapes[1:]):
            if s[1:] != first[1:]:
                return ShapeError(f"concat in {where}: {labels[0]} gives {dims(first[1:])}, {label} gives {dims(s[1:])}",
                                  data["loc"], node)
    first = shapes[0]
    for label, s in zip(labels[1:], shapes[1:]):
        if s != first:
            what = "channels" if len(s) == len(first) and s[1:] == first[1:] else "shapes"
            a, b = (first[0], s[0]) if what == "channels" else (dims(first), dims(s))
            return ShapeError(f"add in {where}: {labels[0]} gives {a} {what}, {label} gives {b}", data["loc"], node)
    return ShapeError(f"{data['op']} in {where}: inputs disagree", data["loc"], node)


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


def analyse(g: Graph) -> Analysis:
    """Annotate every node and total the network; shape errors name the module and the spec line."""
    errors = []
    input_hw = tuple(g.graph["input"][1:])
    order = topological_order(g)  # insertion order for every graph lower builds (archspec/graph.py)
    nodes = g.nodes
    # Totals per part and per module path, and the depth, are computed in the same pass (one visit
    # of each node matters for large networks, whose nodes no longer fit in the CPU caches).
    parts: dict = {part: [0, 0, 0] for part in ("main", *g.graph["aux"])}
    own: dict = {}  # module path -> [params, buffers, macs] of its own nodes
    depth: dict = {}  # node -> layers with weights on the longest path from the input to it
    for node in order:
        data = nodes[node]
        op = OPS[data["op"]]
        ins = [nodes[i].get("shape") for i in data["inputs"]]
        if any(s is None for s in ins):  # an upstream error was already reported
            data["shape"] = None
            continue
        try:
            shape = tuple(op.shape(ins, data["attrs"]))
        except OpShapeError as exc:
            if op.merge:
                errors.append(_merge_error(g, node, data, ins))
            else:
                where = data["path"] if data["module"] else f"{data['path'] or 'the model'} ({data['op']})"
                errors.append(ShapeError(f"{where}: {exc}", data["loc"], node))
            data["shape"] = None
            continue
        data["shape"] = shape
        first = ins[0] if ins else None
        tensors = op.tensors(first, data["attrs"]) if first is not None else ()
        data["tensors"] = tensors
        params = buffers = 0
        for _, tshape, is_buffer in tensors:
            if is_buffer:
                buffers += math.prod(tshape)
            else:
                params += math.prod(tshape)
        macs = op.macs(first, shape, data["attrs"]) if first is not None else 0
        data["params"], data["buffers"], data["macs"] = params, buffers, macs
        sums = parts[data["part"]]
        sums[0] += params
        sums[1] += buffers
        sums[2] += macs
        sums = own.get(data["path"])
        if sums is None:
            own[data["path"]] = [params, buffers, macs]
        else:
            sums[0] += params
            sums[1] += buffers
            sums[2] += macs
        # Node-weighted longest path: aux-head nodes weigh nothing, so the maximum over the whole
        # graph is the main network's (nothing in the main network reads an aux head).
        depth[node] = (1 if op.weight_layer and data["part"] == "main" else 0) + max(
            (depth[i] for i in data["inputs"]), default=0)
        if data["op"] == "input":
            data["rf"] = (1, 1, 1, 1)
        elif op.merge:
            rfs = [nodes[i]["rf"] for i in data["inputs"]]
            data["rf"] = tuple(max(r[k] for r in rfs) for k in range(4))
        else:
            data["rf"] = _receptive(op, data["attrs"], nodes[data["inputs"][0]]["rf"], first, shape, input_hw)
    raise_all(errors)
    return Analysis(g, _totals(parts, max(depth.values(), default=0)), _modules(g, own))


def _totals(parts: dict, depth: int) -> Totals:
    by_part = {part: sums[0] for part, sums in parts.items()}
    buf_part = {part: sums[1] for part, sums in parts.items()}
    macs_part = {part: sums[2] for part, sums in parts.items()}
    return Totals(
        params=sum(by_part.values()), params_eval=by_part["main"], params_by_part=by_part,
        buffers=sum(buf_part.values()), buffers_eval=buf_part["main"], macs=macs_part["main"],
        macs_by_part=macs_part, depth=depth,
    )


def _modules(g: Graph, own: dict) -> dict:
    """Per module path: output shape and the totals of everything inside it."""
    out = {}
    nodes = g.nodes
    for path, entry in g.graph["modules"].items():
        out[path] = {"type": entry["type"], "kind": entry["kind"], "part": entry["part"],
                     "output_shape": nodes[entry["output"]].get("shape") if entry["output"] else None,
                     "input_shape": nodes[entry["input"]].get("shape"),
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


def state_dict_shapes(g: Graph, aux: bool = True) -> list:
    """The (key, shape) pairs the generated module's state_dict will hold, in order.

    Module ops are visited in registration order (the order of ``graph.graph["modules"]``), which is
    the order PyTorch's ``state_dict`` uses.
    """
    out = []
    for path, entry in g.graph["modules"].items():
        if entry["kind"] != "op" or (not aux and entry["part"] != "main"):
            continue
        for name, shape, _ in g.nodes[path].get("tensors", ()):
            out.append((f"{path}.{name}", tuple(shape)))
    return out
