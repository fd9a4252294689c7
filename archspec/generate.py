"""Stage 8, generate: a compiled spec -> the source of a standalone PyTorch module (text only).

One ``nn.Module`` class per block definition, constructed with the block's arguments (input
channels passed explicitly), plus the model class, an outputs namedtuple when the spec has aux
heads, and ``loss(outputs, target)``. Expressions from the spec are written back over the
generated class's own arguments; input channels are tracked symbolically (``in_channels`` ->
``out`` -> ``64 + 64 + 96 + pool_features``) and checked against the analysed value of every
instance. Decisions are made here; ``templates/module.py.j2`` only lays the text out.

Every identifier it writes is allocated in a ``Namespace`` (archspec/emit.py): the file's class
names, each class's attributes, the locals of ``__init__`` and ``forward``, loop variables and the
outputs namedtuple's fields. Module names are kept as they are (they are the state_dict keys) or
refused; anything else is renamed away from Python's names, nn.Module's attributes, the file's
imports and each other. Spec text reaches the output only through ``emit.escape``. An op runs in
place only where ``emit.in_place_nodes`` proves it safe from the graph, in every instance of its block.
"""
from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass, field

from .emit import (TRAINING_IMPORTS, Namespace, attribute_names, check_module_name, claim_class, class_name_of,
                   doc_lines, escape, file_names, in_place_nodes, new_class, rebuild_command, render, spec_label, stamp,
                   wrap_lines)
from .errors import GenerateError, Loc
from .expand import Absent, Apply, Func, Merge
from .exprs import constant, evaluate, fold, functions, is_identifier, names, substitute, sum_of, unparse
from .lower import nodes_by_item
from .ops import OPS
from .text import dims, shape_comment
from .validate import CallItem, MergeItem, NamedItem, RepeatItem, spec_expressions

_TYPES = {"int": "int", "float": "float", "bool": "bool", "size": "int | tuple[int, int]", "number": "float"}


def _outputs_loc(data, key: str):
    raw = data.get("outputs") if hasattr(data, "get") else None
    return raw.loc_of(key).at(f"outputs.{key}") if hasattr(raw, "loc_of") and key in raw else None


# --- classes -----------------------------------------------------------------------------------

@dataclass
class ClassCode:
    name: str
    doc: list
    params: list  # "name: type = default" strings, self first
    init: list
    forward: list
    forward_signature: str = "self, x: Tensor) -> Tensor"

    @property
    def signature(self) -> str:
        """One line if it fits, else one parameter a line (as black would)."""
        flat = ", ".join(self.params)
        if len(flat) <= 80:
            return flat
        return "\n" + "".join(f"        {p},\n" for p in self.params) + "    "


@dataclass
class _Scope:
    """Emission state for one class: its instances (for shapes and checks) and its names."""

    owner: str  # block name, or the model class
    instances: list  # expanded Modules of this block
    arg_names: set
    attrs: Namespace  # self.<name>: its modules (verbatim), the arguments forward reads
    init_names: Namespace  # __init__'s parameters and loop variables
    names: Namespace  # forward's locals
    arg_attrs: dict = field(default_factory=dict)  # argument forward reads -> the attribute holding it
    init: list = field(default_factory=list)
    forward: list = field(default_factory=list)

    def local(self, want: str) -> str:
        return self.names.fresh(want, "a local of forward")


class _Generator:
    def __init__(self, compiled):
        self.c = compiled
        self.g = compiled.graph
        self.modules = self.g.modules
        self.blocks = compiled.resolved.blocks
        self.instances: dict = {}
        for m in compiled.expanded.model.walk():
            if m.kind == "block":
                self.instances.setdefault(m.type, []).append(m)
        self.classes: dict = {}  # block name -> ClassCode (insertion = emission order)
        self.out_channels: dict = {}  # block name -> ast expr over its args (None: not symbolic)
        # The file's names: the model class, an outputs type the spec names, one class per block, the
        # default outputs type.
        used = set().union(*map(functions, spec_expressions(compiled.resolved)))
        self.files = file_names((TRAINING_IMPORTS[0] + (("math",) if used & {"ceil", "floor"} else ()),
                                 TRAINING_IMPORTS[1] + (("make_divisible",) if "make_divisible" in used else ())))
        self.helpers = helpers(compiled, self.files)
        self.model_class = new_class(self.files, class_name_of(compiled.resolved.spec), "the model class")
        self.outputs_class = self.outputs_type() if compiled.expanded.aux else None
        self.class_names = {name: new_class(self.files, name, f"the class of block {name}") for name in self.blocks}
        if compiled.expanded.aux and self.outputs_class is None:
            self.outputs_class = new_class(self.files, f"{self.model_class}Outputs", "the outputs namedtuple")
        self.fields = self.output_fields()
        self.in_place = in_place_nodes(self.g)
        self.nodes_of = nodes_by_item(compiled.expanded.model, self.g)
        self.aux_locals: dict = {}  # aux head -> the local of forward holding its output

    def outputs_type(self):
        """The outputs namedtuple's type as ``outputs: {type: ...}`` names it, kept or refused (None:
        not named, the default is allocated after the block classes)."""
        spec = self.c.resolved.spec
        if spec.outputs is None or not spec.outputs.type:
            return None
        return claim_class(self.files, spec.outputs.type, "outputs type", _outputs_loc(self.c.resolved.data, "type"),
                           ": choose another type name")

    def output_fields(self) -> list:
        """The outputs namedtuple's fields, [(field, "main" or an aux head)]: as ``outputs:`` names
        them, else ``logits`` and each aux head under a field named after it (``_output_fields``)."""
        r = self.c.resolved
        if r.outputs is not None:
            return r.outputs
        fields = _output_fields(self.c.expanded.aux)
        return [("logits", "main")] + [(fields[h.name], h.name) for h in self.c.expanded.aux]

    # -- shapes and numbers of the analysed instances --
    def shape_of_path(self, path: str):
        span = self.modules.get(path)
        return span.output.meta.get("shape") if span else None

    def input_dim(self, scope: _Scope, rel: str, dim: int = 0) -> list:
        """(instance, analysed input size along ``dim``) of module ``rel`` in every instance that has it."""
        out = []
        for inst in scope.instances:
            span = self.modules.get(f"{inst.path}.{rel}" if inst.path else rel)
            if span is not None:  # None: absent in this instance (if: false)
                out.append((inst, span.input.meta["shape"][dim]))
        return out

    def input_ranks(self, scope: _Scope, rel: str) -> set:
        """The ranks of module ``rel``'s input in the instances that have it."""
        return {len(span.input.meta["shape"]) for span in
                (self.modules.get(f"{inst.path}.{rel}" if inst.path else rel) for inst in scope.instances) if span}

    def _value(self, expr, inst, loc):
        env = dict(inst.args) if inst.kind != "model" else dict(self.c.expanded.model_args)
        env["in_channels"] = self.modules[inst.path].input.meta["shape"][0]
        try:
            return evaluate(expr, env, loc)
        except Exception:  # not computable from this instance's arguments: not symbolic
            return None

    def check_symbolic(self, scope: _Scope, rel: str, expr, loc, dim: int = 0):
        """Return the inferred input size: the symbolic expression if it gives the analysed value in
        every instance, else a literal when all instances agree."""
        pairs = self.input_dim(scope, rel, dim)
        values = [v for _, v in pairs]
        if expr is not None and pairs and all(self._value(expr, inst, loc) == v for inst, v in pairs):
            return expr
        if values and len(set(values)) == 1:
            return ast.Constant(values[0])
        raise GenerateError(
            f"cannot write the input size of '{rel}' in {scope.owner}: it differs between instances "
            f"({', '.join(map(str, sorted(set(values))))}) and does not follow from the block's arguments", loc)

    # -- rendering of calls --
    def attr_exprs(self, op_name: str, call, scope: _Scope, in_forward: bool) -> dict:
        op = OPS[op_name]
        out = {}
        for attr, expr in zip(op.attrs, call.args):
            out[attr.name] = expr
        for k, expr in call.kwargs:
            out[k] = expr
        rendered = {}
        for name, expr in out.items():
            if in_forward:
                expr = self.forward_expr(expr, scope)
            rendered[name] = unparse(expr)
        return rendered

    def forward_expr(self, expr, scope: _Scope):
        """Arguments used in forward are read from attributes stored in __init__, named after the
        argument unless a module or nn.Module has that name (``_modules`` is stored as ``_modules_``)."""
        used = names(expr) & scope.arg_names
        for n in sorted(used):
            if n not in scope.arg_attrs:
                scope.arg_attrs[n] = scope.attrs.fresh(n, f"the argument {n}")
        return substitute(expr, {n: ast.Attribute(ast.Name("self", ast.Load()), scope.arg_attrs[n], ast.Load())
                                 for n in used})

    def block_call(self, call, in_expr, scope: _Scope, rel: str, loc) -> tuple:
        """Source of a block constructor call and the block's output channel expression."""
        block = self.blocks[call.name]
        self.ensure_class(call.name)
        in_src = self.check_symbolic(scope, rel, in_expr, loc)
        first_kw = _keyword_only(block.args)
        positional = [unparse(a) if j < first_kw else f"{block.args[j].name}={unparse(a)}" for j, a in enumerate(call.args)]
        args = [unparse(in_src)] + positional + [f"{k}={unparse(v)}" for k, v in call.kwargs]
        out = self.out_channels.get(call.name)
        if out is not None:
            mapping = {"in_channels": in_src}
            given = {}
            for a, expr in zip(block.args, call.args):
                given[a.name] = expr
            given.update(dict(call.kwargs))
            for a in block.args:
                mapping[a.name] = given.get(a.name, constant(a.default) if not a.required else ast.Name(a.name, ast.Load()))
            out = fold(substitute(out, mapping))
        return f"{self.class_names[call.name]}({', '.join(args)})", out

    def module_ctor(self, call, in_expr, scope: _Scope, rel: str, loc, item) -> tuple:
        """(constructor source, output channel expr) for an op or block call registered as a module."""
        if call.name in self.blocks:
            return self.block_call(call, in_expr, scope, rel, loc)
        op = OPS[call.name]
        exprs_ = self.attr_exprs(call.name, call, scope, in_forward=False)
        in_src = ""
        flat = self.input_ranks(scope, rel) <= {1}
        if op.inferred_dim and not flat:  # over the last dimension of a tensor of rank 2 or more: not the channels
            in_expr = None
        if op.inferred:
            in_src = unparse(self.check_symbolic(scope, rel, in_expr, loc, op.inferred_dim))
        ctor = op.module(in_src, exprs_, op, inplace=self.runs_in_place(item))
        return ctor, (self.channels_after(call, in_expr) if flat or not op.inferred_dim else None)

    def runs_in_place(self, item) -> bool:
        """Whether the op of a spec item may overwrite its input: in every instance of its block (every
        repetition of a repeat) the graph proves it safe (``emit.in_place_nodes``)."""
        nodes = self.nodes_of.get(id(item))
        return bool(nodes) and all(node in self.in_place for node in nodes)

    def channels_after(self, call, in_expr):
        """The output channel expression of an op call (the catalog says which attribute sets it)."""
        op = OPS[call.name]
        if op.opaque_out:
            return None
        return _arg(call, op, op.out_attr) if op.out_attr else in_expr

    # -- classes --
    def new_scope(self, owner: str, instances: list, args: list, items: list, params: tuple, heads=()) -> _Scope:
        """A class's names: its modules (and aux heads) claimed as attributes under their own names,
        its arguments as ``__init__``'s parameters; both refused with a located error where they would
        hide a name Python, nn.Module or the generated file gives a meaning."""
        attrs = attribute_names({"aux_logits": "the model's own aux_logits switch"} if heads else None)
        of = f" of block {owner}" if owner in self.blocks else ""
        for name, loc, what in [*_module_names(items), *((h.name, h.loc, "aux head") for h in heads)]:
            attrs.claim(name, what, loc, of, ": rename it (archspec cannot: a module's name starts its state_dict keys)")
        init_names = Namespace({p: f"the generated __init__'s own parameter {p}" for p in ("self", *params)},
                               outer=self.files)
        for a in args:
            init_names.claim(a.name, "argument", a.loc, of or " of the model",
                             ": rename it (archspec cannot: an argument is a parameter of the generated class)")
        names = Namespace({"self": "forward's self", **{a.name: f"the argument {a.name}" for a in args}},
                          outer=self.files)
        names.claim("x", "input of forward", None)
        return _Scope(owner, instances, {a.name for a in args}, attrs, init_names, names)

    def ensure_class(self, name: str) -> None:
        if name in self.classes:
            return
        self.classes[name] = None  # placeholder keeps first-use order
        block = self.blocks[name]
        scope = self.new_scope(name, self.instances.get(name, []), block.args, block.layers, ("in_channels",))
        out = self.body(block.layers, self.first_steps(scope), "x", "x", ast.Name("in_channels", ast.Load()), scope, "")
        self.out_channels[name] = out
        params = ["self", "in_channels: int"]
        first_kw = _keyword_only(block.args)
        for j, a in enumerate(block.args):
            if j == first_kw:
                params.append("*")
            ann = _TYPES[a.type]
            params.append(f"{a.name}: {ann}" if a.required else f"{a.name}: {ann} = {a.default!r}")
        init = list(scope.init)
        for n, attr in scope.arg_attrs.items():
            init.append(f"self.{attr} = {n}")
        doc = doc_lines(block.doc or f"Block {name} from the spec.")
        insts = scope.instances
        if insts:
            where = insts[0].path or self.model_class
            doc += ["", escape(f"Shapes in forward are those of {where}"
                               + (f" (one of {len(insts)} instances)." if len(insts) > 1 else "."))]
        doc = wrap_lines(doc)
        self.classes[name] = ClassCode(self.class_names[name], doc, params, init, scope.forward + ["return x"])

    def first_steps(self, scope: _Scope):
        return scope.instances[0].body if scope.instances else None

    def body(self, items: list, steps, src: str, dst: str, ch, scope: _Scope, rel_prefix: str):
        """Emit ``items`` of a body: the first reads ``src``, every one writes ``dst``. Returns the
        output channel expression."""
        for item, step in _paired(items, steps):
            ch = self.item(item, step, src, dst, ch, scope, rel_prefix)
            src = dst
        return ch

    def item(self, item, step, src: str, dst: str, ch, scope: _Scope, rel_prefix: str):
        if isinstance(item, CallItem):
            op = OPS[item.call.name]
            exprs_ = self.attr_exprs(item.call.name, item.call, scope, in_forward=True)
            text = op.function(src, exprs_, op, inplace=self.runs_in_place(item))
            if text != dst:  # identity on the same variable writes nothing
                scope.forward.append(_stmt(f"{dst} = {text}", self.node_shape(step)))
            return self.channels_after(item.call, ch)
        if isinstance(item, NamedItem):
            rel = f"{rel_prefix}{item.name}"
            if item.seq is not None:
                ctor, out = self.sequential(item.seq, ch, scope, rel, item.loc)
            else:
                ctor, out = self.module_ctor(item.call, ch, scope, rel, item.loc, item)
            shape = self.shape_of_first(scope, rel)
            lines = f"self.{item.name} = {ctor}".split("\n")
            applied = f"self.{item.name}({src})"
            op = OPS.get(item.call.name) if item.call is not None else None
            if op is not None and op.parameter:  # a tensor of this module, applied to the input
                applied = op.applied(src, f"self.{item.name}", self.attr_exprs(op.name, item.call, scope, False))
            if item.cond is not None:
                scope.init += [f"if {unparse(item.cond)}:", *_indent(lines), "else:", f"    self.{item.name} = None"]
                call = f"{applied} if self.{item.name} is not None else {src}"
                scope.forward.append(_stmt(f"{dst} = {call}", shape))
                same = out is not None and ch is not None and unparse(out) == unparse(ch)
                return out if same else None
            scope.init += lines
            scope.forward.append(_stmt(f"{dst} = {applied}", shape))
            return out
        if isinstance(item, MergeItem):
            return self.merge(item, step, src, dst, ch, scope, rel_prefix)
        raise GenerateError("repeat: outside an nn.Sequential", item.loc)

    def merge(self, item: MergeItem, step, src: str, dst: str, ch, scope: _Scope, rel_prefix: str):
        """Each branch reads ``src`` (or, with ``split:``, its chunk of it) into its own variable;
        concat, sum or multiply them into ``dst``."""
        outs, chans = [], []
        first = True  # no branch with layers yet: the first is `out`, the rest `identity` (as torchvision)
        names_ = _branch_vars(step.labels if step is not None else [""] * len(item.branches))
        srcs, in_chans = self.split(item, step, src, ch, scope)
        for j, (branch, sub_steps) in enumerate(_paired(item.branches, step.branches if step is not None else None)):
            if not branch:  # identity
                outs.append(srcs[j])
                chans.append(in_chans[j])
                continue
            if item.kind == "add":  # residual sums read best as torchvision writes them
                local = scope.local("out" if first else "identity")
                first = False
            elif item.kind == "mul" and sum(1 for b in item.branches if b) == 1:  # a gate: torchvision's SE
                local = scope.local("scale")
            else:
                local = scope.local(names_[j])
            chans.append(self.body(branch, sub_steps, srcs[j], local, in_chans[j], scope, rel_prefix))
            outs.append(local)
        shape = self.node_shape(step)
        if item.kind == "concat":
            scope.forward.append(_stmt(f"{dst} = torch.cat([{', '.join(outs)}], 1)", shape))
            return sum_of(chans)
        scope.forward.append(_stmt(f"{dst} = {(' * ' if item.kind == 'mul' else ' + ').join(outs)}", shape))
        if item.kind == "mul" and step is not None:  # broadcasting: the channels of a branch that has them all
            widths = [n.meta["shape"][0] for n in step.node.inputs]
            return chans[widths.index(shape[0])]
        return chans[0]

    def split(self, item: MergeItem, step, src: str, ch, scope: _Scope) -> tuple:
        """With ``split:``, one statement gives every branch its chunk of the channels, as ShuffleNet
        writes it: ``x1, x2 = x.chunk(2, dim=1)``. The variables and their channel expressions."""
        n = len(item.branches)
        if item.split is None:
            return [src] * n, [ch] * n
        expr = self.forward_expr(item.split, scope)
        value = step.split if step is not None else None
        names_ = [scope.local(f"x{j + 1}") for j in range(n)]
        if isinstance(value, tuple) or isinstance(item.split, ast.Tuple):
            items = expr.elts if isinstance(expr, ast.Tuple) else None
            text = f"{src}.split([{', '.join(unparse(e) for e in items)}], dim=1)" if items else \
                f"{src}.split(list({unparse(expr)}), dim=1)"
            chans = list(items) if items else [None] * n
        else:
            text = f"{src}.chunk({unparse(expr)}, dim=1)"
            chans = [fold(ast.BinOp(ch, ast.FloorDiv(), item.split)) if ch is not None else None] * n
        shapes = [c.meta["shape"] for c in step.chunks] if step is not None else []
        comment = ", ".join(shape_comment(s) for s in shapes) if len(set(shapes)) > 1 else \
            (f"{shape_comment(shapes[0])} each" if shapes else "")
        scope.forward.append(f"{', '.join(names_)} = {text}" + (f"  # {comment}" if comment else ""))
        return names_, chans

    def sequential(self, items: list, ch, scope: _Scope, rel: str, loc) -> tuple:
        entries: list = []
        ch = self.seq_entries(items, ch, scope, rel, entries, [0])
        if not entries:
            return "nn.Sequential()", ch
        inner = []
        for e in entries:
            inner.extend(("    " + line) for line in e.split("\n"))
            inner[-1] += ","
        return "nn.Sequential(\n" + "\n".join(inner) + "\n)", ch

    def seq_entries(self, items, ch, scope, rel, entries, counter):
        for item in items:
            if isinstance(item, RepeatItem):
                ch = self.repeat(item, ch, scope, rel, entries, counter)
                continue
            index = counter[0]
            sub_rel = f"{rel}.{index}"
            if isinstance(item, NamedItem):  # nested Sequential
                ctor, ch = self.sequential(item.seq, ch, scope, sub_rel, item.loc)
            elif item.call.name in self.blocks or OPS[item.call.name].inferred:
                ctor, ch = self.module_ctor(item.call, ch, scope, sub_rel, item.loc, item)
            else:  # a stateless op module
                op = OPS[item.call.name]
                ctor = op.module("", self.attr_exprs(item.call.name, item.call, scope, in_forward=False), op,
                                 inplace=self.runs_in_place(item))
                ch = self.channels_after(item.call, ch)
            entries.append(ctor)
            counter[0] += 1
        return ch

    def repeat(self, item: RepeatItem, ch, scope, rel, entries, counter):
        count = self.repeat_count(scope, item)
        if count == 0:
            return ch
        trial: list = []
        ch_after = self.seq_entries(item.body, ch, scope, rel, trial, [counter[0]])
        steady = ch is not None and ch_after is not None and unparse(ch) == unparse(ch_after)
        if steady and len(trial) == 1 and "\n" not in trial[0] and (count is None or count > 1):
            # Same module each time: one generator expression, as a person would write it. Its loop
            # variable must not hide an argument the constructor call reads (an argument named `_`).
            var = scope.init_names.fresh("_", "a loop variable")
            scope.init_names.release(var)  # the generator expression's own scope ends with it
            entries.append(f"*({trial[0]} for {var} in range({unparse(item.count)}))")
            counter[0] += count or 0
            return ch_after
        if count is None:
            raise GenerateError(f"cannot write this repeat: its count differs between instances of {scope.owner} "
                                "and its body changes the channels", item.loc)
        for _ in range(count):  # channels change from one repetition to the next: write each one out
            ch = self.seq_entries(item.body, ch, scope, rel, entries, counter)
        return ch

    def repeat_count(self, scope, item):
        values = set()
        for inst in scope.instances or [None]:
            env = dict(inst.args) if inst is not None and inst.kind == "block" else dict(self.c.expanded.model_args)
            values.add(evaluate(item.count, env, item.loc))
        return values.pop() if len(values) == 1 else None

    @staticmethod
    def node_shape(step):
        """The analysed shape of a functional op or merge step (None: a block without instances)."""
        return step.node.meta.get("shape") if step is not None else None

    def shape_of_first(self, scope, rel):
        if not scope.instances:
            return None
        inst = scope.instances[0]
        path = f"{inst.path}.{rel}" if inst.path else rel
        return self.shape_of_path(path)

    # -- the model --
    def model(self) -> ClassCode:
        c = self.c
        ex = c.expanded
        scope = self.new_scope(self.model_class, [ex.model], c.resolved.args, c.resolved.layers,
                               ("num_classes", *(["aux_logits"] if ex.aux else [])), ex.aux)
        self.model_layers(scope)
        self.group_aux_init(scope, [h.name for h in ex.aux])
        params = ["self", f"num_classes: int = {ex.num_classes!r}"]  # what was built (--num-classes included)
        if ex.aux:
            params.append("aux_logits: bool = True")
        for a in c.resolved.args:
            params.append(f"{a.name}: {_TYPES[a.type]} = {a.default!r}")
        init = [f"self.aux_logits = aux_logits"] if ex.aux else []
        init += scope.init
        for n, attr in scope.arg_attrs.items():
            init.append(f"self.{attr} = {n}")
        forward = list(scope.forward)
        if ex.aux:
            values = ", ".join("x" if source == "main" else self.aux_locals[source] for _, source in self.fields)
            forward += ["if self.training and self.aux_logits:",
                        f"    return {self.outputs_class}({values})", "return x"]
            fsig = f"self, x: Tensor) -> Union[Tensor, {self.outputs_class}]"
        else:
            forward.append("return x")
            fsig = "self, x: Tensor) -> Tensor"
        return ClassCode(self.model_class, self.model_doc(), params, init, forward, fsig)

    def model_layers(self, scope: _Scope) -> None:
        """The model's layers; each aux head registered after its ``after:`` layer and run on the
        output of its ``from:`` layer."""
        ex = self.c.expanded
        scope.forward.append(f"# {shape_comment(ex.input)}")
        heads_after: dict = {}
        heads_from: dict = {}
        for head in ex.aux:
            heads_after.setdefault(head.after, []).append(head)
            heads_from.setdefault(head.source, []).append(head)
        aux_items = {a.name: a for a in self.c.resolved.aux}
        channels = ast.Constant(ex.input[0])
        for item, step in _paired(self.c.resolved.layers, ex.model.body):
            channels = self.item(item, step, "x", "x", channels, scope, "")
            name = item.name if isinstance(item, NamedItem) else None
            for head in heads_after.get(name, []) if name else []:
                self.aux_init(head, aux_items[head.name], scope)
            for head in heads_from.get(name, []) if name else []:
                # the head's output lives to the end of forward: a name no later local takes
                local = self.aux_locals[head.name] = scope.local(head.name)
                scope.forward += [f"{local}: Optional[Tensor] = None",
                                  f"if self.{head.name} is not None and self.training:",
                                  f"    {local} = self.{head.name}(x)  # {shape_comment(self.shape_of_path(head.name))}"]

    def model_doc(self) -> list:
        """The model's docstring: the spec's description, then where it comes from and its totals."""
        c = self.c
        ex = c.expanded
        spec = c.resolved.spec
        t = c.analysis.totals
        doc = doc_lines(spec.description or f"The {spec.name} network.")
        doc += ["", f"Generated from {spec_label(c.file)} by archspec. Input {dims(ex.input)}, "
                    f"{ex.num_classes} classes by default.",
                f"Parameters: {t.params:,} in training (all parts), {t.params_eval:,} in eval (main network).",
                f"MACs: {t.macs:,} (conv + linear multiply-adds, batch 1, eval; FLOPs = 2 x MACs)."]
        if ex.aux:
            heads = ", ".join(f"{h.name} (from {h.source}, loss weight {h.loss_weight:g})" for h in ex.aux)
            doc += [escape(f"Aux heads, run in training only: {heads}. In training mode forward returns "
                           f"{self.outputs_class}({', '.join(n for n, _ in self.fields)}), in eval mode "
                           f"the output tensor.")]
        return wrap_lines(doc)

    def aux_init(self, head, aux_item, scope: _Scope) -> None:
        """Register an aux head (inside `if aux_logits:`), reading its source's output channels."""
        item = aux_item.module
        source_shape = self.modules[head.source].output.meta["shape"]
        ch = ast.Constant(source_shape[0])
        save = scope.init
        scope.init = []
        if item.seq is not None:
            ctor, _ = self.sequential(item.seq, ch, scope, head.name, item.loc)
        else:
            ctor, _ = self.module_ctor(item.call, ch, scope, head.name, item.loc, item)
        scope.init = save
        scope.init.append(("aux", head.name, f"self.{head.name} = {ctor}"))

    def group_aux_init(self, scope: _Scope, names: list) -> None:
        out, group = [], []

        def flush():
            if group:
                out.append("if aux_logits:")
                for _, _, text in group:
                    out.extend("    " + line for line in text.split("\n"))
                out.append("else:")
                out.extend(f"    self.{n} = None" for _, n, _ in group)
                group.clear()

        for line in scope.init:
            if isinstance(line, tuple):
                group.append(line)
                continue
            flush()
            out.append(line)
        flush()
        scope.init = out


def _output_fields(heads: list) -> dict:
    """Each aux head's field in the outputs namedtuple: its name, or where namedtuple refuses that
    (``_aux``: no leading underscore) or it would hide a tuple method (``count``), the nearest free
    name (``aux``, ``count_``). Names that can be kept are kept whatever the heads' order. A head
    named ``logits`` is refused: ``outputs.logits`` is the main output, and a field ``logits_2``
    for the head would read as the main output to anyone who maps fields to heads by name
    (``outputs:`` can give it any field)."""
    fields = Namespace({**{k: "a Python keyword" for k in keyword.kwlist},
                        "count": "tuple's own count", "index": "tuple's own index"})
    fields.used["logits"] = "the main output's field logits of the outputs namedtuple"
    for h in heads:
        if h.name == "logits":
            fields.claim(h.name, "aux head", h.loc, advice=": rename it, or name the fields with outputs:")
    kept = {h.name for h in heads if not h.name.startswith("_") and fields.why_taken(h.name) is None}
    out = {name: fields.claim(name, "field", None) for name in sorted(kept)}
    for h in heads:
        if h.name not in out:
            out[h.name] = fields.fresh(h.name.lstrip("_") or "aux", "a field")
    return out


def _module_names(items: list):
    """(name, location, 'module') of every module a body registers as an attribute of its class:
    its named items, those inside merge branches included (a Sequential's entries are numbered)."""
    for item in items:
        if isinstance(item, NamedItem):
            yield item.name, item.loc, "module"
        elif isinstance(item, MergeItem):
            for branch in item.branches:
                yield from _module_names(branch)


def _paired(items: list, steps: list | None):
    """Each item of a body with the step it expanded to, or with None in a block without instances.

    Expansion turns every item into exactly one step (Absent for an ``if:`` that is false).
    """
    if steps is None:
        return ((item, None) for item in items)
    return zip(items, steps, strict=True)


def _keyword_only(args: list) -> int:
    """The index of the first argument the generated class takes by keyword only: Python refuses a
    parameter without a default after one with a default, so from the first default on that is
    followed by a required argument, every argument is keyword-only (``*``; calls name them)."""
    last_required = max((j for j, a in enumerate(args) if a.required), default=-1)
    first_default = next((j for j, a in enumerate(args) if not a.required), len(args))
    return first_default if first_default < last_required else len(args)


def _arg(call, op, name):
    for attr, expr in zip(op.attrs, call.args):
        if attr.name == name:
            return expr
    for k, expr in call.kwargs:
        if k == name:
            return expr
    return None


def _branch_vars(labels: list) -> list:
    """Variable names for a merge's branches, from their first modules' names.

    torchvision's style: the branch of branch5x5_1, branch5x5_2 is held in `branch5x5`; a branch
    without a named module is `branch<k>`. When a name is long (Caffe's flat
    `inception_3a_double_3x3_reduce` would make every line of the branch long), all the merge's
    branches are numbered instead: branch1, branch2, ...
    """
    stems = [label[:-2] if label.endswith("_1") and len(label) > 2 else label for label in labels]
    if any(len(s) > 16 for s in stems):
        return [f"branch{j + 1}" for j in range(len(labels))]
    return [s if is_identifier(s) else f"branch{j + 1}" for j, s in enumerate(stems)]


def _stmt(code: str, shape) -> str:
    comment = shape_comment(shape)
    return f"{code}  # {comment}" if comment else code


def _indent(lines):
    return ["    " + line for line in lines]


def helpers(compiled, files) -> list:
    """The classes the generated file defines for ops that torch has no module for (LayerNorm2d,
    Permute, StochasticDepth: no torchvision import), in catalog order. Their names are claimed in
    the file's namespace before the spec's classes, which are renamed around them."""
    used = {n.op for n in compiled.graph if n.is_module}
    out = []
    for op in OPS.values():
        if op.helper is not None and op.name in used:
            files.claim(re.match(r"class (\w+)", op.helper).group(1), f"the class for {op.name}", None)
            out.append(op.helper)
    return out


def generate(compiled, output: str = "generated") -> str:
    """The generated module's full text, header included (deterministic bytes); ``output`` is the
    directory it is written to, for the header's rebuild command.

    >>> from archspec.pipeline import compile_spec          # doctest: +SKIP
    >>> text = generate(compile_spec("specs/googlenet.yaml"))  # doctest: +SKIP
    >>> "class GoogLeNet(nn.Module):" in text                # doctest: +SKIP
    True
    """
    check_module_name(compiled.resolved)
    gen = _Generator(compiled)
    model = gen.model()
    blocks = [code for code in gen.classes.values() if code is not None]
    return stamp(_render(compiled, gen, model, blocks), compiled.file, rebuild_command(compiled, False, output))


# The spec's make_divisible (torchvision's _make_divisible), defined in a generated file that calls it.
MAKE_DIVISIBLE = '''def make_divisible(value: float, divisor: int, min_value=None) -> int:
    """The multiple of divisor nearest to value, at least min_value (default: divisor) and never
    more than 10% below value (torchvision's _make_divisible, MobileNet's channel rounding)."""
    least = divisor if min_value is None else min_value
    rounded = max(least, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded'''


def _names_used(classes: list) -> set:
    """The words of the generated classes' code (``math``, ``make_divisible``): what the file must
    import or define (a word of a comment may add an import nothing reads, never leave one out)."""
    return {w for cls in classes for line in (*cls.params, *cls.init, *cls.forward)
            for w in re.findall(r"[A-Za-z_]\w*", line if isinstance(line, str) else str(line))}


def _render(compiled, gen, model: ClassCode, blocks: list) -> str:
    ex = compiled.expanded
    used = _names_used([model, *blocks])
    spec = compiled.resolved.spec
    fields = gen.fields
    field_of = {source: name for name, source in fields}
    heads = [{"field": field_of[h.name], "weight": repr(float(h.loss_weight))} for h in ex.aux]
    return render("module.py.j2", {
        "title": doc_lines(f"{spec.name}: {spec.description}" if spec.description else spec.name),
        "helpers": gen.helpers + ([MAKE_DIVISIBLE] if "make_divisible" in used and "make_divisible" in
                                  gen.files.reserved else []),
        "math": "math" in used and "math" in gen.files.reserved,
        "model": model,
        "blocks": blocks,
        "outputs": gen.outputs_class if ex.aux else None,
        "fields": [{"name": name, "aux": source != "main"} for name, source in fields],
        "main_field": field_of["main"],
        "heads": heads,
        "exports": [model.name, *([gen.outputs_class] if ex.aux else []), "loss"],
    })
