"""Stage 8, generate: a compiled spec -> the source of a standalone PyTorch module (text only).

One ``nn.Module`` class per block definition, constructed with the block's arguments (input
channels passed explicitly), plus the model class, an outputs namedtuple when the spec has aux
heads, and ``loss(outputs, target)``. Expressions from the spec are written back over the
generated class's own arguments; input channels are tracked symbolically (``in_channels`` ->
``out`` -> ``64 + 64 + 96 + pool_features``) and checked against the analysed value of every
instance. Decisions are made here; ``templates/module.py.j2`` only lays the text out.

Spec strings reach the output only as validated identifiers (checked again here against the
names the generated module uses) or as ``repr()`` literals.
"""
from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass, field

from .emit import (MODULE_NAMES, class_name_of, doc_lines, outputs_class_of, rebuild_command, render, spec_label, stamp,
                   wrap_lines)
from .errors import GenerateError
from .exprs import constant, evaluate, fold, is_identifier, names, substitute, sum_of, unparse
from .ops import OPS
from .text import dims, shape_comment
from .validate import CallItem, MergeItem, NamedItem, RepeatItem

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
    """Emission state for one class: its instances (for shapes and checks) and its local names."""

    owner: str  # block name, or the model class
    instances: list  # expanded Modules of this block
    arg_names: set
    module_names: set = field(default_factory=set)
    stored_args: list = field(default_factory=list)  # block args that forward needs (self.<name>)
    locals_used: set = field(default_factory=set)
    next_suffix: dict = field(default_factory=dict)  # base -> where the search for a free name resumes
    init: list = field(default_factory=list)
    forward: list = field(default_factory=list)
    taken: set = field(default_factory=set)  # module-level names forward reads (the outputs type)

    def local(self, want: str) -> str:
        base = want if is_identifier(want) and want not in MODULE_NAMES else f"{want}_"
        if not is_identifier(base):
            base = "t"
        # names are never freed, so the search resumes where the last one for this base stopped:
        # 20,000 branches of one add: get out_2 ... out_20000 in linear time, not quadratic
        i = self.next_suffix.get(base, 1)
        name = base if i == 1 else f"{base}_{i}"
        while name in self.locals_used or name in MODULE_NAMES or name in self.arg_names or name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.next_suffix[base] = i
        self.locals_used.add(name)
        return name


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
        self.model_class = class_name_of(compiled.resolved.spec)
        self.outputs_class = outputs_class_of(compiled.resolved.spec)
        data = compiled.resolved.data
        if {self.model_class, self.model_class + "Outputs"} & MODULE_NAMES:  # e.g. class_name: F
            key = "class_name" if "class_name" in data else "name"
            raise GenerateError(f"model class '{self.model_class}' clashes with a name the generated module uses",
                                data.loc_of(key) if hasattr(data, "loc_of") else None)
        if compiled.expanded.aux and (self.outputs_class in MODULE_NAMES or self.outputs_class == self.model_class):
            raise GenerateError(f"outputs type '{self.outputs_class}' clashes with a name the generated module uses",
                                _outputs_loc(data, "type"))
        self.reserved = MODULE_NAMES | {self.model_class, self.model_class + "Outputs", self.outputs_class}
        for name in self.blocks:
            if name in self.reserved or keyword.iskeyword(name):
                raise GenerateError(f"block name '{name}' clashes with a name the generated module uses", self.blocks[name].loc)

    # -- shapes and numbers of the analysed instances --
    def shape_of_path(self, path: str):
        span = self.modules.get(path)
        return span.output.meta.get("shape") if span else None

    def input_dim(self, scope: _Scope, rel: str) -> list:
        """(instance, analysed input size) of module ``rel`` in every instance that has it."""
        out = []
        for inst in scope.instances:
            span = self.modules.get(f"{inst.path}.{rel}" if inst.path else rel)
            if span is not None:  # None: absent in this instance (if: false)
                out.append((inst, span.input.meta["shape"][0]))
        return out

    def _value(self, expr, inst, loc):
        env = dict(inst.args) if inst.kind != "model" else dict(self.c.expanded.model_args)
        env["in_channels"] = self.modules[inst.path].input.meta["shape"][0]
        try:
            return evaluate(expr, env, loc)
        except Exception:  # not computable from this instance's arguments: not symbolic
            return None

    def check_symbolic(self, scope: _Scope, rel: str, expr, loc):
        """Return the inferred input size: the symbolic expression if it gives the analysed value in
        every instance, else a literal when all instances agree."""
        pairs = self.input_dim(scope, rel)
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
        """Block arguments used in forward are read from attributes stored in __init__."""
        used = names(expr) & scope.arg_names
        for n in sorted(used):
            if n not in scope.stored_args:
                if n in scope.module_names:
                    raise GenerateError(f"argument '{n}' of {scope.owner} is needed in forward but a module has the same name", None)
                scope.stored_args.append(n)
        return substitute(expr, {n: ast.Attribute(ast.Name("self", ast.Load()), n, ast.Load()) for n in used})

    def block_call(self, call, in_expr, scope: _Scope, rel: str, loc) -> tuple:
        """Source of a block constructor call and the block's output channel expression."""
        block = self.blocks[call.name]
        self.ensure_class(call.name)
        in_src = self.check_symbolic(scope, rel, in_expr, loc)
        args = [unparse(in_src)] + [unparse(a) for a in call.args] + [f"{k}={unparse(v)}" for k, v in call.kwargs]
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
        return f"{call.name}({', '.join(args)})", out

    def module_ctor(self, call, in_expr, scope: _Scope, rel: str, loc) -> tuple:
        """(constructor source, output channel expr) for an op or block call registered as a module."""
        if call.name in self.blocks:
            return self.block_call(call, in_expr, scope, rel, loc)
        op = OPS[call.name]
        exprs_ = self.attr_exprs(call.name, call, scope, in_forward=False)
        in_src = ""
        if op.inferred:
            in_src = unparse(self.check_symbolic(scope, rel, in_expr, loc))
        ctor = op.module(in_src, exprs_, op)
        return ctor, self.channels_after(call, in_expr)

    def channels_after(self, call, in_expr):
        """The output channel expression of an op call (the catalog says which attribute sets it)."""
        op = OPS[call.name]
        if op.opaque_out:
            return None
        return _arg(call, op, op.out_attr) if op.out_attr else in_expr

    # -- classes --
    def ensure_class(self, name: str) -> None:
        if name in self.classes:
            return
        self.classes[name] = None  # placeholder keeps first-use order
        block = self.blocks[name]
        scope = _Scope(name, self.instances.get(name, []), {a.name for a in block.args})
        for a in block.args:
            if a.name in self.reserved or a.name in self.blocks:
                raise GenerateError(f"argument '{a.name}' of block {name} clashes with a name the generated module uses", a.loc)
        out = self.body(block.layers, self.first_steps(scope), "x", "x", ast.Name("in_channels", ast.Load()), scope, "",
                        fresh=False)
        self.out_channels[name] = out
        params = ["self", "in_channels: int"]
        for a in block.args:
            ann = _TYPES[a.type]
            params.append(f"{a.name}: {ann}" if a.required else f"{a.name}: {ann} = {a.default!r}")
        init = list(scope.init)
        for n in scope.stored_args:
            init.append(f"self.{n} = {n}")
        doc = doc_lines(block.doc or f"Block {name} from the spec.")
        insts = scope.instances
        if insts:
            where = insts[0].path or self.model_class
            doc += ["", f"Shapes in forward are those of {where}" + (f" (one of {len(insts)} instances)." if len(insts) > 1 else ".")]
        doc = wrap_lines(doc)
        self.classes[name] = ClassCode(name, doc, params, init or ["pass"], scope.forward + ["return x"])

    def first_steps(self, scope: _Scope):
        return scope.instances[0].body if scope.instances else None

    def body(self, items: list, steps, src: str, dst: str, ch, scope: _Scope, rel_prefix: str, fresh: bool):
        """Emit ``items`` of a body: the first reads ``src``, every one writes ``dst``.

        ``fresh`` says whether the tensor being read was made in this scope (so an in-place ReLU
        cannot touch a tensor someone else still holds). Returns the output channel expression.
        """
        for item, step in _paired(items, steps):
            ch, fresh = self.item(item, step, src, dst, ch, scope, rel_prefix, fresh)
            src = dst
        return ch

    def item(self, item, step, src: str, dst: str, ch, scope: _Scope, rel_prefix: str, fresh: bool):
        if isinstance(item, CallItem):
            op = OPS[item.call.name]
            exprs_ = self.attr_exprs(item.call.name, item.call, scope, in_forward=True)
            text = op.function(src, exprs_, op, inplace=fresh)
            if text != dst:  # identity on the same variable writes nothing
                scope.forward.append(_stmt(f"{dst} = {text}", self.node_shape(step)))
            return self.channels_after(item.call, ch), fresh if item.call.name == "identity" else True
        if isinstance(item, NamedItem):
            rel = f"{rel_prefix}{item.name}"
            scope.module_names.add(item.name)
            if item.seq is not None:
                ctor, out = self.sequential(item.seq, ch, scope, rel, item.loc)
            else:
                ctor, out = self.module_ctor(item.call, ch, scope, rel, item.loc)
            shape = self.shape_of_first(scope, rel)
            lines = f"self.{item.name} = {ctor}".split("\n")
            if item.cond is not None:
                scope.init += [f"if {unparse(item.cond)}:", *_indent(lines), "else:", f"    self.{item.name} = None"]
                call = f"self.{item.name}({src}) if self.{item.name} is not None else {src}"
                scope.forward.append(_stmt(f"{dst} = {call}", shape))
                same = out is not None and ch is not None and unparse(out) == unparse(ch)
                return (out if same else None), fresh and src == dst  # may be the input itself
            scope.init += lines
            scope.forward.append(_stmt(f"{dst} = self.{item.name}({src})", shape))
            return out, True
        if isinstance(item, MergeItem):
            return self.merge(item, step, src, dst, ch, scope, rel_prefix), True
        raise GenerateError("repeat: outside an nn.Sequential", item.loc)

    def merge(self, item: MergeItem, step, src: str, dst: str, ch, scope: _Scope, rel_prefix: str):
        """Each branch reads ``src`` into its own variable; concat or sum them into ``dst``."""
        outs, chans = [], []
        first = True  # no branch with layers yet: the first is `out`, the rest `identity` (as torchvision)
        names_ = _branch_vars(step.labels if step is not None else [""] * len(item.branches))
        for j, (branch, sub_steps) in enumerate(_paired(item.branches, step.branches if step is not None else None)):
            if not branch:  # identity
                outs.append(src)
                chans.append(ch)
                continue
            if item.kind == "add":  # residual sums read best as torchvision writes them
                local = scope.local("out" if first else "identity")
                first = False
            else:
                local = scope.local(names_[j])
            chans.append(self.body(branch, sub_steps, src, local, ch, scope, rel_prefix, fresh=False))
            outs.append(local)
        shape = self.node_shape(step)
        if item.kind == "concat":
            scope.forward.append(_stmt(f"{dst} = torch.cat([{', '.join(outs)}], 1)", shape))
            return sum_of(chans)
        scope.forward.append(_stmt(f"{dst} = {' + '.join(outs)}", shape))
        return chans[0]

    def sequential(self, items: list, ch, scope: _Scope, rel: str, loc) -> tuple:
        entries: list = []
        ch = self.seq_entries(items, ch, scope, rel, entries, [0], first=True)
        if not entries:
            return "nn.Sequential()", ch
        inner = []
        for e in entries:
            inner.extend(("    " + line) for line in e.split("\n"))
            inner[-1] += ","
        return "nn.Sequential(\n" + "\n".join(inner) + "\n)", ch

    def seq_entries(self, items, ch, scope, rel, entries, counter, first):
        for item in items:
            if isinstance(item, RepeatItem):
                before = len(entries)
                ch = self.repeat(item, ch, scope, rel, entries, counter, first)
                first = first and len(entries) == before
                continue
            index = counter[0]
            sub_rel = f"{rel}.{index}"
            if isinstance(item, NamedItem):  # nested Sequential
                ctor, ch = self.sequential(item.seq, ch, scope, sub_rel, item.loc)
            elif item.call.name in self.blocks or OPS[item.call.name].inferred:
                ctor, ch = self.module_ctor(item.call, ch, scope, sub_rel, item.loc)
            else:  # a stateless op module: in place only where its input is not shared
                op = OPS[item.call.name]
                ctor = op.module("", self.attr_exprs(item.call.name, item.call, scope, in_forward=False), op, inplace=not first)
                ch = self.channels_after(item.call, ch)
            entries.append(ctor)
            counter[0] += 1
            first = False
        return ch

    def repeat(self, item: RepeatItem, ch, scope, rel, entries, counter, first=False):
        count = self.repeat_count(scope, item)
        if count == 0:
            return ch
        trial: list = []
        ch_after = self.seq_entries(item.body, ch, scope, rel, trial, [counter[0]], first=first)
        steady = ch is not None and ch_after is not None and unparse(ch) == unparse(ch_after)
        if steady and len(trial) == 1 and "\n" not in trial[0] and (count is None or count > 1):
            # Same module each time: one generator expression, as a person would write it.
            entries.append(f"*({trial[0]} for _ in range({unparse(item.count)}))")
            counter[0] += count or 0
            return ch_after
        if count is None:
            raise GenerateError(f"cannot write this repeat: its count differs between instances of {scope.owner} "
                                "and its body changes the channels", item.loc)
        for i in range(count):  # channels change from one repetition to the next: write each one out
            ch = self.seq_entries(item.body, ch, scope, rel, entries, counter, first=first and i == 0)
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
        scope = _Scope(self.model_class, [ex.model], {"num_classes", *(a.name for a in c.resolved.args)},
                       taken={self.outputs_class} if ex.aux else set())
        for a in c.resolved.args:
            if a.name in self.reserved or a.name in self.blocks:
                raise GenerateError(f"model argument '{a.name}' clashes with a name the generated module uses", a.loc)
        self.model_layers(scope)
        self.group_aux_init(scope, [h.name for h in ex.aux])
        params = ["self", f"num_classes: int = {ex.num_classes!r}"]  # what was built (--num-classes included)
        if ex.aux:
            params.append("aux_logits: bool = True")
        for a in c.resolved.args:
            params.append(f"{a.name}: {_TYPES[a.type]} = {a.default!r}")
        init = [f"self.aux_logits = aux_logits"] if ex.aux else []
        init += scope.init
        for n in scope.stored_args:
            init.append(f"self.{n} = {n}")
        forward = list(scope.forward)
        if ex.aux:
            values = ", ".join("x" if source == "main" else source for _, source in c.resolved.output_fields())
            forward += ["if self.training and self.aux_logits:",
                        f"    return {self.outputs_class}({values})", "return x"]
            fsig = f"self, x: Tensor) -> Union[Tensor, {self.outputs_class}]"
        else:
            forward.append("return x")
            fsig = "self, x: Tensor) -> Tensor"
        return ClassCode(self.model_class, self.model_doc(), params, init or ["pass"], forward, fsig)

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
        channels, fresh = ast.Constant(ex.input[0]), False
        for item, step in _paired(self.c.resolved.layers, ex.model.body):
            channels, fresh = self.item(item, step, "x", "x", channels, scope, "", fresh)
            name = item.name if isinstance(item, NamedItem) else None
            for head in heads_after.get(name, []) if name else []:
                self.aux_init(head, aux_items[head.name], scope)
            for head in heads_from.get(name, []) if name else []:
                fresh = False  # the aux head reads x: no in-place op may touch it afterwards
                scope.forward += [f"{head.name}: Optional[Tensor] = None",
                                  f"if self.{head.name} is not None and self.training:",
                                  f"    {head.name} = self.{head.name}(x)  # {shape_comment(self.shape_of_path(head.name))}"]

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
            doc += [f"Aux heads, run in training only: {heads}. In training mode forward returns "
                    f"{self.outputs_class}({', '.join(n for n, _ in c.resolved.output_fields())}), in eval mode "
                    f"the output tensor."]
        return wrap_lines(doc)

    def aux_init(self, head, aux_item, scope: _Scope) -> None:
        """Register an aux head (inside `if aux_logits:`), reading its source's output channels."""
        item = aux_item.module
        source_shape = self.modules[head.source].output.meta["shape"]
        ch = ast.Constant(source_shape[0])
        save = scope.init
        scope.init = []
        scope.module_names.add(head.name)
        if item.seq is not None:
            ctor, _ = self.sequential(item.seq, ch, scope, head.name, item.loc)
        else:
            ctor, _ = self.module_ctor(item.call, ch, scope, head.name, item.loc)
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


def _paired(items: list, steps: list | None):
    """Each item of a body with the step it expanded to, or with None in a block without instances.

    Expansion turns every item into exactly one step (Absent for an ``if:`` that is false).
    """
    if steps is None:
        return ((item, None) for item in items)
    return zip(items, steps, strict=True)


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


def generate(compiled, output: str = "generated") -> str:
    """The generated module's full text, header included (deterministic bytes); ``output`` is the
    directory it is written to, for the header's rebuild command.

    >>> from archspec.pipeline import compile_spec          # doctest: +SKIP
    >>> text = generate(compile_spec("specs/googlenet.yaml"))  # doctest: +SKIP
    >>> "class GoogLeNet(nn.Module):" in text                # doctest: +SKIP
    True
    """
    gen = _Generator(compiled)
    model = gen.model()
    blocks = [code for code in gen.classes.values() if code is not None]
    return stamp(_render(compiled, gen, model, blocks), compiled.file, rebuild_command(compiled, False, output))


def _render(compiled, gen, model: ClassCode, blocks: list) -> str:
    ex = compiled.expanded
    spec = compiled.resolved.spec
    fields = compiled.resolved.output_fields()
    field_of = {source: name for name, source in fields}
    for h in ex.aux:  # the head's output is a local variable of forward, and by default a field
        if h.name in gen.reserved or (compiled.resolved.outputs is None and h.name in ("logits", "count", "index")):
            raise GenerateError(f"aux head name '{h.name}' clashes with a name of the outputs namedtuple", h.loc)
    heads = [{"field": field_of[h.name], "weight": repr(float(h.loss_weight))} for h in ex.aux]
    return render("module.py.j2", {
        "title": doc_lines(f"{spec.name}: {spec.description}" if spec.description else spec.name),
        "model": model,
        "blocks": blocks,
        "outputs": gen.outputs_class if ex.aux else None,
        "fields": [{"name": name, "aux": source != "main"} for name, source in fields],
        "main_field": field_of["main"],
        "heads": heads,
        "exports": [model.name, *([gen.outputs_class] if ex.aux else []), "loss"],
    })
