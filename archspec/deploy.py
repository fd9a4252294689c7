"""The deploy build: a compiled spec -> the source of an inference-only PyTorch module (text only).

``archspec build --deploy`` writes ``generated/<name>_deploy.py``. It computes what the training
module computes in eval mode, with the rewrites inference compilers make:

* BatchNorm is folded into the convolution before it (and a constant ``scale`` after it, as in
  Inception-ResNet's residual branches): ``w' = w * g / sqrt(var + eps)``,
  ``b' = (b - mean) * g / sqrt(var + eps) + beta``; the ReLU after it runs in place on the
  convolution's fresh output;
* aux heads, dropout and identities are removed; stateless modules become functional calls;
* sibling convolutions that read the same tensor with the same kernel, stride, padding and
  dilation (the 1x1 reductions at the head of every Inception branch) become one convolution
  whose output is split along channels: one larger matrix product instead of several;
* activations and weights use the channels_last memory format (on by default when the network
  has convolutions; ``channels_last=False`` turns it off). On CPU this is most of the speed-up:
  oneDNN's convolutions and PyTorch's pooling kernels are fastest on NHWC data.

The module is generated from the analysed graph, so its numbers are concrete (one class, no block
classes) and every statement is commented with its output shape. ``from_trained(model)`` builds
it from a trained training module (the generated class, or any module with the same module paths,
such as torchvision's): the table ``_FOLDS`` lists, for each deploy layer, the training modules it
is made from. Decisions are made here; ``templates/deploy.py.j2`` only lays the text out.

>>> from archspec.pipeline import compile_spec                           # doctest: +SKIP
>>> text = generate_deploy(compile_spec("specs/googlenet.yaml"))          # doctest: +SKIP
>>> "class GoogLeNetDeploy(nn.Module):" in text                           # doctest: +SKIP
True
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from .emit import (DEPLOY_IMPORTS, Namespace, attribute_names, class_name_of, doc_lines, escape, file_names, is_name,
                   new_class, overwritable, py_str, rebuild_command, render, spec_label, stamp, wrap_lines)
from .errors import GenerateError
from .graph import Node
from .ops import OPS
from .text import dims, shape_comment

# Ops that compute nothing in eval: their output is their input.
TRANSPARENT = {name for name, op in OPS.items() if op.eval_identity}


@dataclass
class Layer:
    """A module attribute of the deploy class."""

    attr: str
    ctor: str
    comment: str
    params: int
    folds: list | None = None  # [(conv or linear path, batch norm path or None, scale)]
    copy: str | None = None  # training module whose state is copied as it is (an unfolded BatchNorm)
    parameter: str | None = None  # a training module's parameter tensor, copied (layer scale)


@dataclass
class Stmt:
    """One statement of ``forward``: values in, values out, and how to write it."""

    inputs: list  # values read (the nodes that hold them)
    outputs: list  # values written
    kind: str  # layer | fused | call | relu | concat | add | scale | flatten
    layer: Layer | None = None
    call: str = ""  # for kind == "call": a format string with {x}
    relu: list = field(default_factory=list)  # fused: which pieces get a ReLU; layer: [bool]
    sizes: list = field(default_factory=list)  # fused: channels of each piece
    shape: tuple | None = None
    factor: float = 1.0
    call_in_place: str = ""  # kind call: the same call writing over its input (relu6, silu, hardswish ...)


class _Deploy:
    def __init__(self, compiled):
        self.c = compiled
        self.g = compiled.graph
        # One namespace a scope (emit.Namespace): the file, the class's attributes, forward's locals.
        self.files = file_names(DEPLOY_IMPORTS)
        self.model_class = new_class(self.files, class_name_of(compiled.resolved.spec) + "Deploy", "the deploy class")
        self.main = [n for n in self.g if n.part == "main"]  # insertion order: forward order
        self.input = self.main[0]
        self.layers: list = []
        self.attrs = attribute_names({"channels_last": "the deploy module's own channels_last switch",
                                      "from_trained": "the deploy class's own from_trained"})
        self.alias: dict = {}  # node -> the node holding its value (a transparent node's value is its input's)
        for n in self.main:
            self.alias[n] = self.alias[n.inputs[0]] if n.op in TRANSPARENT else n
        self.readers: dict = {n: [] for n in self.main}  # value -> statements' nodes that read it
        for n in self.main:
            if n.op not in TRANSPARENT:
                for i in n.inputs:
                    self.readers[self.alias[i]].append(n)

    # -- helpers --
    @staticmethod
    def shape(node: Node) -> tuple:
        return node.meta["shape"]

    @staticmethod
    def in_shape(node: Node) -> tuple:
        return node.inputs[0].meta["shape"]

    def only_reader(self, value: Node, op: str):
        readers = self.readers[value]
        if len(readers) == 1 and readers[0].op == op and value is not self.g.output:
            return readers[0]
        return None

    def attr_name(self, path: str) -> str:
        """The deploy layer's attribute, from its training module's path (Mixed_5b.branch1x1.conv ->
        Mixed_5b_branch1x1); not a state_dict key of the training module, so renamed where it must be."""
        parts = path.split(".")
        if len(parts) > 1 and parts[-1] == "conv":
            parts = parts[:-1]
        base = re.sub(r"\W", "_", "_".join(parts)) or "layer"  # a named entry's '-' (block1-0 -> block1_0)
        if base[0].isdigit():
            base = f"layer_{base}"
        return self.attrs.fresh(base, f"the deploy layer of {path}")

    # -- 1. conv units: conv -> [batchnorm] -> [scale] -> [relu] --
    def conv_unit(self, conv: Node):
        cur, bn, scale, relu = conv, None, 1.0, False
        nxt = self.only_reader(cur, "batchnorm2d")
        if nxt is not None and nxt.attrs["track_running_stats"]:
            bn, cur = nxt, nxt
        nxt = self.only_reader(cur, "scale")
        if nxt is not None:
            scale, cur = float(nxt.attrs["factor"]), nxt
        nxt = self.only_reader(cur, "relu")
        if nxt is not None:
            relu, cur = True, nxt
        return {"conv": conv, "bn": bn, "scale": scale, "relu": relu, "out": cur,
                "absorbed": [n for n in (bn, cur) if n is not None and n is not conv]}

    def plan(self) -> list:
        units, absorbed = {}, {}
        for n in self.main:
            if n.op == "conv2d" and n not in absorbed:
                u = self.conv_unit(n)
                units[n] = u
                for a in self._chain(u):
                    absorbed[a] = n
        # 2. sibling convolutions with the same geometry reading the same value are fused
        groups: dict = {}
        for n, u in units.items():
            a = n.attrs
            if a["groups"] != 1:
                continue
            key = (self.alias[n.inputs[0]], a["kernel_size"], a["stride"], a["padding"], a["dilation"])
            groups.setdefault(key, []).append(n)
        fused_with = {}
        for members in groups.values():
            if len(members) > 1:
                for m in members:
                    fused_with[m] = members
        stmts = []
        for n in self.main:
            if n.op == "input" or n.op in TRANSPARENT or n in absorbed:
                continue
            if n in units:
                members = fused_with.get(n)
                if members is None:
                    stmts.append(self.layer_stmt(units[n]))
                elif members[0] is n:
                    stmts.append(self.fused_stmt([units[m] for m in members]))
                continue
            stmts.append(self.op_stmt(n))
        return stmts

    def _chain(self, u) -> list:
        out, cur = [], u["conv"]
        while cur is not u["out"]:
            (cur,) = self.readers[cur]
            out.append(cur)
        return out

    # -- statements --
    def conv_ctor(self, convs: list, bias: bool) -> tuple:
        a = convs[0].attrs
        cin = self.in_shape(convs[0])[0]
        cout = sum(c.attrs["out_channels"] for c in convs)
        args = [str(cin), str(cout), f"kernel_size={a['kernel_size']!r}"]
        for key, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
            if a[key] != default and a[key] != (default, default):
                args.append(f"{key}={a[key]!r}")
        if not bias:
            args.append("bias=False")
        k = a["kernel_size"] if isinstance(a["kernel_size"], tuple) else (a["kernel_size"],) * 2
        params = cout * (cin // a["groups"]) * k[0] * k[1] + (cout if bias else 0)
        return f"nn.Conv2d({', '.join(args)})", params

    def fold_entry(self, u) -> tuple:
        return (u["conv"].path, u["bn"].path if u["bn"] else None, u["scale"])

    def layer_stmt(self, u) -> Stmt:
        conv = u["conv"]
        bias = bool(u["bn"]) or conv.attrs["bias"]
        ctor, params = self.conv_ctor([conv], bias)
        path = conv.path
        folded = [w for w, on in (("BatchNorm", u["bn"]), (f"x {u['scale']:g}", u["scale"] != 1.0)) if on]
        comment = f"{path}" + (f" + {' + '.join(folded)} folded" if folded else "")
        layer = Layer(self.attr_name(path), ctor, comment, params, folds=[self.fold_entry(u)])
        self.layers.append(layer)
        return Stmt([self.alias[conv.inputs[0]]], [u["out"]], "layer", layer,
                    relu=[u["relu"]], shape=self.shape(u["out"]))

    def fused_stmt(self, units: list) -> Stmt:
        convs = [u["conv"] for u in units]
        bias = any(u["bn"] or u["conv"].attrs["bias"] for u in units)
        ctor, params = self.conv_ctor(convs, bias)
        paths = [c.path for c in convs]
        parent = _common_parent(paths)
        rel = [p[len(parent) + 1:] if parent else p for p in paths]
        rel = [r[:-len(".conv")] if r.endswith(".conv") else r for r in rel]
        if not parent:  # flat layouts (BN-Inception): inception_3a_1x1, inception_3a_3x3_reduce -> inception_3a
            parent = _common_prefix(paths).rstrip("_.")
        layer = Layer(self.attr_name(f"{parent}.fused" if parent else "fused"), ctor,
                      f"{' | '.join(rel)}, fused", params, folds=[self.fold_entry(u) for u in units])
        self.layers.append(layer)
        sizes = [c.attrs["out_channels"] for c in convs]
        out_shape = (sum(sizes), *self.shape(convs[0])[1:])
        return Stmt([self.alias[convs[0].inputs[0]]], [u["out"] for u in units], "fused", layer,
                    relu=[u["relu"] for u in units], sizes=sizes, shape=out_shape)

    def op_stmt(self, n: Node) -> Stmt:
        op = OPS[n.op]
        ins = [self.alias[i] for i in n.inputs]
        shape = self.shape(n)
        if op.merge:
            return Stmt(ins, [n], n.op, shape=shape)
        if n.op == "split":
            sizes = [s.meta["shape"][0] for s in self.g.successors(n.inputs[0]) if s.op == "split"]
            start = sum(sizes[:n.attrs["index"]])
            return Stmt(ins, [n], "call", call=f"{{x}}[:, {start}:{start + shape[0]}]", shape=shape)
        if op.parameter:
            return self.parameter_stmt(n, ins)
        if n.op == "relu":
            return Stmt(ins, [n], "relu", shape=shape)
        if n.op == "scale":
            return Stmt(ins, [n], "scale", shape=shape, factor=float(n.attrs["factor"]))
        if n.op == "flatten":
            return Stmt(ins, [n], "flatten", shape=shape)
        if op.stateful:  # linear, or a BatchNorm that could not be folded
            return self.module_stmt(n, ins)
        if op.function is None:
            raise GenerateError(f"the deploy build cannot write op '{n.op}' of {n.path or 'the model'}", n.loc)
        exprs = _attr_exprs(op, n.attrs)
        return Stmt(ins, [n], "call", call=op.function("{x}", exprs, op, inplace=False), shape=shape,
                    call_in_place=op.function("{x}", exprs, op, inplace=True) if op.in_place else "")

    def parameter_stmt(self, n: Node, ins: list) -> Stmt:
        """A learnable tensor of the training module (layer scale), copied and applied to the input."""
        op = OPS[n.op]
        exprs = _attr_exprs(op, n.attrs, every=True)
        layer = Layer(self.attr_name(n.path), op.module("", exprs, op), n.path, n.meta["params"], parameter=n.path)
        self.layers.append(layer)
        call = op.applied("{x}", f"self.{layer.attr}", exprs)
        return Stmt(ins, [n], "call", call=call, shape=self.shape(n))

    def module_stmt(self, n: Node, ins: list) -> Stmt:
        op = OPS[n.op]
        exprs = _attr_exprs(op, n.attrs)
        in_dim = self.in_shape(n)[op.inferred_dim]
        if n.op == "linear" and _uses_num_classes(n):
            exprs["out_features"] = "num_classes"
        ctor = op.module(str(in_dim), exprs, op)
        params = n.meta["params"]
        if n.op == "linear":
            layer = Layer(self.attr_name(n.path), ctor, n.path, params, folds=[(n.path, None, 1.0)])
        elif n.op == "batchnorm2d":
            layer = Layer(self.attr_name(n.path), ctor, f"{n.path} (not folded: no convolution of its own before it)",
                          params, copy=n.path)
        elif op.inferred is not None:  # a norm with its own statistics (layernorm, groupnorm): kept as it is
            layer = Layer(self.attr_name(n.path), ctor, n.path, params, copy=n.path)
        else:
            raise GenerateError(f"the deploy build cannot convert module {n.path} ({n.op})", n.loc)
        self.layers.append(layer)
        return Stmt(ins, [n], "layer", layer, relu=[False], shape=self.shape(n))


def _attr_exprs(op, attrs: dict, every: bool = False) -> dict:
    """Source for each attribute that differs from its default (required ones always; ``every``: all)."""
    out = {}
    for a in op.attrs:
        if a.name not in attrs:
            continue
        value = attrs[a.name]
        if every or a.default is not value and a.default != value or _required(a):
            out[a.name] = repr(value)
    return out


def _required(attr) -> bool:
    from .ops import REQUIRED

    return attr.default is REQUIRED


def _uses_num_classes(node: Node) -> bool:
    """Whether the spec writes this linear layer's size as the model's ``num_classes``."""
    call = node.owner.call if node.is_module else None
    if call is None or call.name != "linear":
        return False
    expr = call.args[0] if call.args else dict(call.kwargs).get("out_features")
    return isinstance(expr, ast.Name) and expr.id == "num_classes"


def _common_parent(paths: list) -> str:
    split = [p.split(".") for p in paths]
    common = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    if common and all(len(s) == len(common) for s in split):
        common = common[:-1]
    return ".".join(common)


# --- names and text ----------------------------------------------------------------------------

def _stem(path: str) -> str:
    """A local variable name from a module path: its branch (Mixed_5b.branch5x5_1.conv -> branch5x5)."""
    parts = path.split(".") if path else []
    if len(parts) > 1 and parts[-1] == "conv":
        parts = parts[:-1]
    while parts and parts[-1].isdigit():
        parts = parts[:-1]
    if len(parts) < 2:
        return "x"
    # torchvision's style: the steps branch5x5_1, branch5x5_2 of a branch share the name branch5x5
    name = re.sub(r"_\d+$", "", re.sub(r"\W", "_", parts[-1])) or parts[-1]
    return name if is_name(name) else "t"


class _Forward:
    """The lines of forward: names chosen, dead values' names reused, in-place ops where safe."""

    def __init__(self, dep: _Deploy, stmts: list):
        self.dep, self.stmts = dep, stmts
        g = dep.g
        self.output = dep.alias[g.output]
        self.last: dict = {dep.input: -1}  # value -> the last statement that reads it
        for i, st in enumerate(stmts):
            for v in st.inputs:
                self.last[v] = i
        self.last[self.output] = len(stmts)
        self.top_outputs = {dep.alias[s.output] for p, s in g.modules.items()
                            if p and "." not in p and s.module.part == "main" and s.output in dep.alias}
        self.readers: dict = {}
        for st in stmts:
            for v in st.inputs:
                self.readers.setdefault(v, []).append(st)
        # the pieces of a fused convolution's output: views that split() returns, which autograd
        # forbids writing in place
        self.pieces = {v for st in stmts if st.kind == "fused" for v in st.outputs}
        self.names = Namespace({"self": "forward's self"}, outer=dep.files)
        self.value_name = {dep.input: self.names.fresh("x")}

    def lines(self) -> list:
        lines = []
        for i, st in enumerate(self.stmts):
            ins = [self.value_name[v] for v in st.inputs]
            dying = {v for v in st.inputs if self.last[v] == i}
            in_place = (st.kind == "relu" or bool(st.call_in_place)) and self.may_overwrite(st.inputs[0])
            for v in dying:  # a dead value's name is free for the statement's outputs
                self.names.release(self.value_name[v])
            outs = []
            for k, v in enumerate(st.outputs):
                outs.append(self.names.fresh(self.preferred(st, k, ins, dying), "a local of forward"))
                self.value_name[v] = outs[-1]
            for v in dying:
                del self.value_name[v]
            lines.extend(_statement(st, ins, outs, in_place))
        lines.append(f"return {self.value_name[self.output]}")
        return lines

    def may_overwrite(self, v) -> bool:
        """Whether a relu statement may write over the value ``v`` it reads: the rule of the training
        module (emit.overwritable) on the deploy graph, where dropout and identity are gone, and
        not a piece of a fused convolution's output."""
        return overwritable(v, self.dep.readers[v], {self.dep.input, self.output}) and v not in self.pieces

    def preferred(self, st: Stmt, k: int, in_names: list, dying: set) -> str:
        """The name the k-th output of a statement would like, as torchvision names its locals."""
        v = st.outputs[k]
        if v in self.top_outputs or v is self.output:
            return "x"
        if st.kind == "add":  # a residual sum: x stays x, anything else is torchvision's `out`
            return "x" if in_names[0] == "x" and st.inputs[0] in dying else "out"
        if st.kind in ("layer", "fused"):
            stem = _stem(_source(st.layer, k))
            if stem != "x":
                return stem
            flat = _source(st.layer, k).rsplit(".", 1)[-1]  # a flat layout's inception_3a_1x1
            if not flat.isdigit() and is_name(flat):
                return flat
        nxt = self.readers.get(v, [])
        if len(nxt) == 1 and nxt[0].kind in ("layer", "fused"):
            stem = _stem(_source(nxt[0].layer, 0))
            if stem != "x":
                return stem
        if st.kind == "concat":
            prefix = re.sub(r"_\d*$", "", _common_prefix(in_names))  # branch3x3_2a, _2b -> branch3x3
            if is_name(prefix):
                return prefix
        if in_names and st.inputs[0] in dying:
            return in_names[0]
        return "t"


def _source(layer: Layer, k: int) -> str:
    """The training module path a deploy layer's k-th output comes from."""
    return layer.folds[k][0] if layer.folds else layer.copy


def _common_prefix(names: list) -> str:
    if not names:
        return ""
    first = names[0]
    n = 0
    while n < len(first) and all(len(s) > n and s[n] == first[n] for s in names):
        n += 1
    return first[:n]


def _statement(st: Stmt, ins: list, outs: list, in_place: bool) -> list:
    comment = shape_comment(st.shape)
    if st.kind == "layer":
        call = f"self.{st.layer.attr}({ins[0]})"
        code = f"F.relu({call}, inplace=True)" if st.relu[0] else call
        return [f"{outs[0]} = {code}  # {comment}"]
    if st.kind == "fused":
        call = f"self.{st.layer.attr}({ins[0]})"
        if all(st.relu):
            call = f"F.relu({call}, inplace=True)"
        sizes = ", ".join(map(str, st.sizes))
        shape = f"N x ({' + '.join(map(str, st.sizes))}) x {dims(st.shape[1:], ' x ')}"
        lines = [f"{', '.join(outs)} = {call}.split([{sizes}], 1)  # {shape}"]
        if any(st.relu) and not all(st.relu):  # not in place: split() returns views
            lines += [f"{o} = F.relu({o})" for o, r in zip(outs, st.relu) if r]
        return lines
    if st.kind == "relu":
        return [f"{outs[0]} = F.relu({ins[0]}{', inplace=True' if in_place else ''})  # {comment}"]
    if st.kind == "concat":
        return [f"{outs[0]} = torch.cat([{', '.join(ins)}], 1)  # {comment}"]
    if st.kind == "add":
        return [f"{outs[0]} = {' + '.join(ins)}  # {comment}"]
    if st.kind == "mul":
        return [f"{outs[0]} = {' * '.join(ins)}  # {comment}"]
    if st.kind == "scale":
        return [f"{outs[0]} = {ins[0]} * {st.factor!r}  # {comment}"]
    if st.kind == "flatten":
        return [f"{outs[0]} = torch.flatten({ins[0]}, 1)  # {comment}"]
    call = st.call_in_place if in_place else st.call
    return [f"{outs[0]} = {call.format(x=ins[0])}  # {comment}"]


def _doc_text(text: str) -> list:
    return wrap_lines(doc_lines(text))


def generate_deploy(compiled, output: str = "generated") -> str:
    """The deploy module's full text, header included (deterministic bytes); ``output`` is the
    directory it is written to, for the header's rebuild command."""
    return deploy_module(compiled, output)[0]


def deploy_module(compiled, output: str = "generated") -> tuple:
    """(the deploy module's text, as generate_deploy, and its parameter count)."""
    dep = _Deploy(compiled)
    stmts = dep.plan()
    forward = _Forward(dep, stmts).lines()
    spec = compiled.resolved.spec
    has_conv = any(n.op == "conv2d" for n in dep.main)
    num_classes_layer = next((layer for layer in dep.layers if layer.ctor.startswith("nn.Linear(") and "num_classes" in layer.ctor), None)
    init = [f"self.channels_last = channels_last"]
    for layer in dep.layers:
        init.append(f"self.{layer.attr} = {layer.ctor}  # {escape(layer.comment)}")
    init += ["if channels_last:", "    self.to(memory_format=torch.channels_last)"] if has_conv else []
    params_sig = ["self"] + (["num_classes: int = " + repr(compiled.expanded.num_classes)] if num_classes_layer else []) + \
        [f"channels_last: bool = {has_conv!r}"]
    folds = [(layer.attr, layer.folds) for layer in dep.layers if layer.folds]
    copies = [(layer.attr, layer.copy) for layer in dep.layers if layer.copy]
    body = render("deploy.py.j2", {
        "title": _doc_text(f"{spec.name} (deploy build): {spec.description}" if spec.description else f"{spec.name} (deploy build)"),
        "cls": dep.model_class,
        "doc": _class_doc(dep, compiled, has_conv),
        "signature": ", ".join(params_sig),
        "init": init,
        "forward": forward,
        "folds": [line for a, fs in folds for line in _fold_lines(a, fs)],
        "copies": [f"({py_str(a)}, {py_str(p)})," for a, p in copies],
        "parameters": [f"({py_str(layer.attr)}, {py_str(layer.parameter)})," for layer in dep.layers if layer.parameter],
        "helpers": _helpers(dep),
        "num_classes": (f"model.get_submodule({py_str(_source_of(num_classes_layer))}).weight.shape[0]"
                        if num_classes_layer else None),
        "has_conv": has_conv,
        "channels_last": has_conv,
        "training_class": class_name_of(spec),
        "dtype_from": _dtype_from(compiled, dep),
    })
    return stamp(body, compiled.file, rebuild_command(compiled, True, output)), sum(layer.params for layer in dep.layers)


def _dtype_from(compiled, dep: _Deploy) -> str | None:
    """Where from_trained reads the model's floating-point type: its parameters; a network without
    any (BatchNorm without affine values kept as it is), its floating-point buffers; none when the
    deploy module holds no tensor to convert."""
    if compiled.analysis.totals.params:
        return "parameters"
    return "buffers" if dep.layers and compiled.analysis.totals.buffers else None


def _helpers(dep: _Deploy) -> list:
    """The classes of the catalog (LayerNorm2d) that the deploy layers are made of."""
    return [op.helper for op in OPS.values() if op.helper and any(
        layer.ctor.startswith(op.helper.split("(")[0][len("class "):] + "(") for layer in dep.layers)]


def _class_doc(dep: _Deploy, compiled, has_conv: bool) -> list:
    """The deploy class's docstring: what it computes, what was folded, fused and removed."""
    spec = compiled.resolved.spec
    ex = compiled.expanded
    fused = [layer for layer in dep.layers if layer.folds and len(layer.folds) > 1]
    folded = sum(1 for layer in dep.layers for f in (layer.folds or ()) if f[1] is not None)
    params = sum(layer.params for layer in dep.layers)
    removed = []
    if ex.aux:
        removed.append("aux heads (" + ", ".join(h.name for h in ex.aux) + ")")
    if any(n.op == "dropout" for n in dep.main):
        removed.append("dropout")
    doc = [f"Inference-only {class_name_of(spec)}: the deploy build of {spec_label(compiled.file)}.", ""]
    doc += _doc_text(spec.description or f"The {spec.name} network.")
    doc += [""] + _doc_text(
        f"Computes what {class_name_of(spec)} computes in eval mode: {folded} BatchNorm layers folded into "
        f"their convolutions"
        + (f", {len(fused)} groups of sibling convolutions fused into one convolution each" if fused else "")
        + (f", {' and '.join(removed)} removed" if removed else "")
        + (", channels_last memory format unless channels_last=False" if has_conv else "") + ". "
        f"Input {dims(ex.input)}. Parameters: {params:,}. "
        f"MACs: {compiled.analysis.totals.macs:,} (the same as the training module's in eval; FLOPs = 2 x MACs).")
    doc += ["", f"Build it from a trained model: ``{dep.model_class}.from_trained(model)``."]
    return doc


def _fold_lines(attr: str, folds: list) -> list:
    """One line per deploy layer; a fused layer lists its sources one a line."""
    srcs = [f"({py_str(layer)}, {py_str(bn)}, {scale!r})" for layer, bn, scale in folds]
    one = f"({py_str(attr)}, [{', '.join(srcs)}]),"
    if len(srcs) == 1 and len(one) <= 108:
        return [one]
    return [f"({py_str(attr)}, ["] + [f"    {s}," for s in srcs] + ["]),"]


def _source_of(layer: Layer) -> str:
    return layer.folds[0][0]

