"""Stage 8, generate: a compiled spec -> the source of a standalone PyTorch module (text only).

One ``nn.Module`` class per block definition, constructed with the block's arguments (input
channels passed explicitly), plus the model class and, when the spec has aux heads, an outputs
namedtuple and ``loss(outputs, target)`` that weighs them (without aux heads the loss is plain
``F.cross_entropy``, as torchvision leaves it to the training script). Expressions from the spec are written back over the
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
from contextlib import contextmanager
from dataclasses import dataclass, field

from .emit import (TRAINING_IMPORTS, Namespace, attribute_names, check_module_name, claim_class, class_name_of,
                   doc_lines, escape, file_names, in_place_nodes, new_class, py_str, rebuild_command, render, spec_label,
                   stamp, wrap_lines)
from .errors import GenerateError, Loc
from .expand import INPUT_NAMES, Absent, Apply, Func, Group, Loop, Merge, Module
from .exprs import constant, evaluate, fold, functions, is_identifier, names, substitute, sum_of, unparse
from .lower import nodes_by_item
from .ops import OPS
from .text import dims, shape_comment
from .validate import CallItem, ForItem, GroupItem, MergeItem, NamedItem, RepeatItem, expressions, spec_expressions

_TYPES = {"int": "int", "float": "float", "bool": "bool", "size": "int | tuple[int, int]", "number": "float",
          "op": "Callable[..., nn.Module]"}
_IN = "__archspec_in__"  # where an op's module takes its input size, in the text of a module class


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
    of: str = ""  # " of block B" in messages
    subst: dict = field(default_factory=dict)  # loop variable -> what it stands for here (a value, or a Python loop's name)
    loop_vars: set = field(default_factory=set)  # the variables of the Python loops being written
    op_args: set = field(default_factory=set)  # its arguments of type op (module classes)
    # __init__'s names that die with the statement being written (an nn.Sequential's list of layers
    # and its loop variable): free again once it is written, as each of torchvision's _make_layer
    # calls has its own `layers`
    dead: list = field(default_factory=list)
    shapes_shown: bool = False  # a line of forward has a shape comment
    shapes_differ: bool = False  # a line of forward has different shapes in different instances: no comment

    def statement_done(self) -> None:
        for name in self.dead:
            self.init_names.release(name)
            if self.names.used.get(name) == "a loop variable":  # a loop variable is claimed in both
                self.names.release(name)
        self.dead.clear()

    def local(self, want: str) -> str:
        return self.names.fresh(want, "a local of forward")

    def spec(self, expr):
        """A spec expression as this place of the class writes it: loop variables replaced."""
        return substitute(expr, self.subst) if self.subst and expr is not None else expr

    @contextmanager
    def bound(self, values: dict):
        """An iteration written out: its loop variables stand for these expressions."""
        saved = self.subst
        self.subst = {**saved, **values}
        try:
            yield
        finally:
            self.subst = saved

    @contextmanager
    def looping(self, var: str | None, name: str):
        """Inside a Python loop: its variable (when the spec names one) is the generated ``name``."""
        saved, vars_ = self.subst, self.loop_vars
        self.subst = {**saved, **({var: ast.Name(name, ast.Load())} if var else {})}
        self.loop_vars = vars_ | {var or name}
        try:
            yield
        finally:
            self.subst, self.loop_vars = saved, vars_


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
        self.shadow_instances = _shadow_blocks(compiled.expanded.model)
        # block -> the input sizes besides in_channels its expressions read (in_h, in_w: constructor arguments)
        self.class_inputs = {name: set().union(*map(names, expressions(b.layers))) & set(INPUT_NAMES[1:])
                             for name, b in self.blocks.items()}
        self.classes: dict = {}  # block name -> ClassCode (insertion = emission order)
        self.out_channels: dict = {}  # block name -> ast expr over its args (None: not symbolic)
        # The file's names: the model class, an outputs type the spec names, one class per block, the
        # default outputs type.
        used = set().union(*map(functions, spec_expressions(compiled.resolved)))
        op_args = ("Callable", "partial") if _has_op_args(compiled.resolved) else ()
        op_args += ("OrderedDict",) if _has_named_entries(compiled.expanded.model) else ()
        self.files = file_names((TRAINING_IMPORTS[0] + (("math",) if used & {"ceil", "floor"} else ()) + op_args,
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
        self.modules_of: dict = {}  # id(spec item) -> the modules it became
        for m in compiled.expanded.model.walk():
            self.modules_of.setdefault(id(m.item), []).append(m)
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

    # -- sites: where a class's code runs, and what the network has there --
    def sites_of(self, name: str) -> list:
        """Where block ``name``'s class runs: its instances in the network, or, when it has none, the
        instances of absent items' shadows (their sizes still write its code)."""
        insts = self.instances.get(name)
        if insts:
            return [_Site(inst.env, inst.body, base=inst.path) for inst in insts]
        return [_Site(inst.env, inst.body, real=False, base=inst.path) for inst in self.shadow_instances.get(name, ())]

    def _value(self, expr, env: dict, loc):
        try:
            return evaluate(expr, env, loc)
        except Exception:  # not computable from this site's names: not symbolic
            return None

    def shared(self, scope: _Scope, at: list, shape_of, ch=None):
        """The shape a line of forward gives at every site that runs it (the real ones), for its
        comment: the same everywhere, or differing only in channels that an argument of the class
        gives (``N x c7 x 17 x 17``: ``ch``, the line's channel expression, a bare name); else None
        (no site runs it, or the shapes differ: the class's docstring says so)."""
        runs = [(site, shape_of(step)) for site, step in at if site.real and step is not None]
        runs = [(site, shape) for site, shape in runs if shape is not None]
        shapes = {shape for _, shape in runs}
        if len(shapes) > 1 and isinstance(ch, ast.Name) and len({shape[1:] for shape in shapes}) == 1 and \
                all(self._value(ch, site.env, None) == shape[0] for site, shape in runs):
            shapes = {(ch.id, *runs[0][1][1:])}
        scope.shapes_differ = scope.shapes_differ or len(shapes) > 1
        scope.shapes_shown = scope.shapes_shown or len(shapes) == 1
        return next(iter(shapes)) if len(shapes) == 1 else None

    def check_symbolic(self, scope: _Scope, pairs: list, expr, loc, what: str, dim: int = 0):
        """The inferred input size (of ``dim``) of a module from ``pairs`` [(site env, input shape)]:
        the symbolic expression if it gives the analysed value at every site, else a literal when all
        sites agree (the real ones; an absent item's shadow only when nothing real has it)."""
        real = [(env, shape[dim]) for env, shape, is_real in pairs if is_real and shape is not None]
        shadows = [(env, shape[dim]) for env, shape, is_real in pairs if not is_real and shape is not None]
        pairs = real or shadows
        values = [v for _, v in pairs]
        if expr is not None and pairs and all(self._value(expr, env, loc) == v for env, v in pairs):
            return expr
        if values and (len(set(values)) == 1 or not real):
            # all sites agree; or the module is in none of them (its code never runs for this spec): the
            # size it would have at the first
            return ast.Constant(values[0])
        if not pairs and expr is not None:
            return expr  # nothing in the network has it: the expression as written
        raise GenerateError(
            f"cannot write the input size of '{what}' in {scope.owner}: it differs between instances "
            f"({', '.join(map(str, sorted(set(values))))}) and does not follow from the block's arguments"
            if values else f"cannot write the input size of '{what}' in {scope.owner}: no instance has it and it "
                           "does not follow from the block's arguments", loc)

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
            expr = scope.spec(expr)
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

    def block_call(self, call, in_expr, scope: _Scope, pairs: list, loc, what: str) -> tuple:
        """Source of a block constructor call and the block's output channel expression."""
        block = self.blocks[call.name]
        self.ensure_class(call.name)
        in_src = self.check_symbolic(scope, pairs, in_expr, loc, what)
        first_kw = _keyword_only(block.args)
        given_args = [scope.spec(a) for a in call.args]
        given_kwargs = [(k, scope.spec(v)) for k, v in call.kwargs]
        types = {a.name: a.type for a in block.args}

        def text(name, expr):
            return self.op_source(expr, scope) if types.get(name) == "op" else unparse(expr)

        positional = [text(block.args[j].name, a) if j < first_kw else f"{block.args[j].name}={text(block.args[j].name, a)}"
                      for j, a in enumerate(given_args)]
        sizes = [unparse(self.check_symbolic(scope, pairs, self.spatial_expr(scope, d), loc, what, d))
                 for d in (1, 2) if name_uses_input(self.class_inputs.get(call.name, ()), d)]
        args = [unparse(in_src)] + sizes + positional + [f"{k}={text(k, v)}" for k, v in given_kwargs]
        out = self.out_channels.get(call.name)
        if out is not None:
            mapping = {"in_channels": in_src}
            given = {}
            for a, expr in zip(block.args, given_args):
                given[a.name] = expr
            given.update(dict(given_kwargs))
            for a in block.args:
                mapping[a.name] = given.get(a.name, constant(a.default) if not a.required else ast.Name(a.name, ast.Load()))
            out = fold(substitute(out, mapping))
        return f"{self.class_names[call.name]}({', '.join(args)})", out

    @staticmethod
    def spatial_expr(scope: _Scope, dim: int):
        """``in_h`` / ``in_w`` of the calling class when it takes them (the callee's size may be its own)."""
        name = INPUT_NAMES[dim]
        return ast.Name(name, ast.Load()) if name in scope.arg_names else None

    def module_ctor(self, call, in_expr, scope: _Scope, pairs: list, loc, item, what: str) -> tuple:
        """(constructor source, output channel expr) for an op or block call registered as a module."""
        if call.name in self.blocks:
            return self.block_call(call, in_expr, scope, pairs, loc, what)
        if call.name in scope.op_args:
            return self.op_arg_ctor(call, in_expr, scope, pairs, loc, item, what)
        op = OPS[call.name]
        exprs_ = self.attr_exprs(call.name, call, scope, in_forward=False)
        in_src = ""
        flat = {len(shape) for _, shape, _ in pairs if shape is not None} <= {1}
        if op.inferred_dim and not flat:  # over the last dimension of a tensor of rank 2 or more: not the channels
            in_expr = None
        if op.inferred:
            in_src = unparse(self.check_symbolic(scope, pairs, in_expr, loc, what, op.inferred_dim))
        ctor = op.module(in_src, exprs_, op, inplace=self.runs_in_place(item))
        return ctor, (self.channels_after(call, in_expr, scope) if flat or not op.inferred_dim else None)

    def op_arg_ctor(self, call, in_expr, scope: _Scope, pairs: list, loc, item, what: str) -> tuple:
        """An argument of type op used as a module: the module class it holds, called (with the input
        size where the ops it holds take one, as torchvision's norm_layer(channels)). Channels kept."""
        ops = {m.type for m in self.nodes_modules(item)}
        inferred = {OPS[name].inferred is not None for name in ops}
        if len(inferred) > 1:
            raise GenerateError(f"'{call.name}' holds ops that take their input size and ops that do not in different "
                                f"instances of {scope.owner} ({', '.join(sorted(ops))}); the class cannot call both "
                                "the same way", loc)
        if inferred == {True}:
            dim = {OPS[name].inferred_dim for name in ops}.pop()
            size = self.check_symbolic(scope, pairs, in_expr if dim == 0 else None, loc, what, dim)
            return f"{call.name}({unparse(size)})", in_expr
        return f"{call.name}()", in_expr

    def nodes_modules(self, item) -> list:
        """The modules a spec item became, at every site of its class (real ones)."""
        return self.modules_of.get(id(item), [])

    def op_source(self, expr, scope: _Scope) -> str:
        """A value of type op as generated source: a module class (``nn.Hardswish``, ``partial(nn.LeakyReLU,
        0.2)``), or the class's own argument of type op (``act``)."""
        if isinstance(expr, ast.Name) and expr.id in scope.op_args:
            return expr.id
        if isinstance(expr, ast.Name):
            return module_class(expr.id, {})
        op = OPS[expr.func.id]
        texts = {a.name: unparse(scope.spec(e)) for a, e in zip(op.attrs, expr.args)}
        texts.update({k.arg: unparse(scope.spec(k.value)) for k in expr.keywords})
        return module_class(op.name, texts)

    def runs_in_place(self, item) -> bool:
        """Whether the op of a spec item may overwrite its input: in every instance of its block (every
        repetition of a repeat) the graph proves it safe (``emit.in_place_nodes``)."""
        nodes = self.nodes_of.get(id(item))
        return bool(nodes) and all(node in self.in_place for node in nodes)

    @staticmethod
    def channels_after(call, in_expr, scope: _Scope):
        """The output channel expression of an op call (the catalog says which attribute sets it)."""
        op = OPS[call.name]
        if op.opaque_out:
            return None
        out = _arg(call, op, op.out_attr) if op.out_attr else None
        return scope.spec(out) if out is not None else in_expr

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
        arg_names = {a.name for a in args if a.type != "op"} | ({p for p in params if p in INPUT_NAMES})
        return _Scope(owner, instances, arg_names, attrs, init_names, names, of=of,
                      op_args={a.name for a in args if a.type == "op"})

    def ensure_class(self, name: str) -> None:
        if name in self.classes:
            return
        self.classes[name] = None  # placeholder keeps first-use order
        block = self.blocks[name]
        inputs = ("in_channels", *(n for d, n in ((1, "in_h"), (2, "in_w"))
                                   if name_uses_input(self.class_inputs.get(name, ()), d)))
        scope = self.new_scope(name, self.instances.get(name, []), block.args, block.layers, inputs)
        sites = self.sites_of(name)
        out = self.body(block.layers, sites, "x", "x", ast.Name("in_channels", ast.Load()), scope)
        self.out_channels[name] = out
        params = ["self", *(f"{p}: int" for p in inputs)]
        first_kw = _keyword_only(block.args)
        for j, a in enumerate(block.args):
            if j == first_kw:
                params.append("*")
            ann = _TYPES[a.type]
            params.append(f"{a.name}: {ann}" if a.required else f"{a.name}: {ann} = {_default(a)}")
        init = list(scope.init)
        for n, attr in scope.arg_attrs.items():
            init.append(f"self.{attr} = {n}")
        doc = doc_lines(block.doc or f"Block {name} from the spec.")
        doc += self.shapes_doc(scope)
        doc = wrap_lines(doc)
        self.classes[name] = ClassCode(self.class_names[name], doc, params, init, scope.forward + ["return x"])

    def shapes_doc(self, scope: _Scope) -> list:
        """What the shape comments of a block class's forward are: its one instance's; with several
        instances, those they all share (a line whose shape differs between them has none)."""
        insts = scope.instances
        if not insts or not scope.shapes_shown:
            return []
        if len(insts) == 1:
            return ["", escape(f"Shapes in forward are those of {insts[0].path or self.model_class}.")]
        every = "both" if len(insts) == 2 else f"all {len(insts)}"
        if not scope.shapes_differ:
            return ["", f"Shapes in forward are those of {every} instances."]
        return ["", f"Shapes in forward are those {every} instances share; a line without one has different "
                    "shapes in different instances."]

    def body(self, items: list, sites: list, src: str, dst: str, ch, scope: _Scope):
        """Emit ``items`` of a body at ``sites``: the first reads ``src``, every one writes ``dst``.
        Returns the output channel expression."""
        for k, item in enumerate(items):
            ch = self.item(item, _at(sites, k), src, dst, ch, scope)
            src = dst
        return ch

    def item(self, item, at: list, src: str, dst: str, ch, scope: _Scope):
        if isinstance(item, CallItem):
            op = OPS[item.call.name]
            exprs_ = self.attr_exprs(item.call.name, item.call, scope, in_forward=True)
            text = op.function(src, exprs_, op, inplace=self.runs_in_place(item))
            out = self.channels_after(item.call, ch, scope)
            if text != dst:  # identity on the same variable writes nothing
                scope.forward.append(_stmt(f"{dst} = {text}", self.shared(scope, at, _node_shape, out)))
            return out
        if isinstance(item, NamedItem):
            return self.named(item, at, src, dst, ch, scope)
        if isinstance(item, MergeItem):
            return self.merge(item, at, src, dst, ch, scope)
        if isinstance(item, GroupItem):
            return self.group(item, at, src, dst, ch, scope)
        return self.loop(item, at, src, dst, ch, scope)

    def named(self, item: NamedItem, at: list, src: str, dst: str, ch, scope: _Scope):
        """A named module: registered in __init__ (None where its if: is false), applied in forward."""
        modules = [(site, _module_of(step)) for site, step in at]
        pairs = [(site.env, _in_shape(step), site.real and isinstance(step, Apply)) for site, step in at
                 if step is not None]
        attr = self.attribute(item, modules, scope)
        what = attr.text if attr.fixed else item.name
        if item.seq is not None:
            inner = _real_first([_Site(site.env, m.body, site.real and isinstance(step, Apply), site.base)
                                 for (site, m), (_, step) in zip(modules, at) if m is not None])
            ctor, out, prelude = self.sequential(item.seq, inner, ch, scope, item.loc)
        else:
            ctor, out = self.module_ctor(item.call, ch, scope, pairs, item.loc, item, what)
            prelude = []
        shape = self.shared(scope, at, _line_shape, out if item.cond is None else None)
        lines = [*prelude, *attr.assign(ctor).split("\n")]
        applied = f"{attr.read}({src})"
        op = OPS.get(item.call.name) if item.call is not None else None
        if op is not None and op.parameter:  # a tensor of this module, applied to the input
            applied = op.applied(src, attr.read, self.attr_exprs(op.name, item.call, scope, False))
        if item.cond is not None:
            scope.init += [f"if {unparse(scope.spec(item.cond))}:", *_indent(lines), "else:", f"    {attr.assign('None')}"]
            call = f"{applied} if {attr.read} is not None else {src}"
            scope.forward.append(_stmt(f"{dst} = {call}", shape))
            scope.statement_done()
            same = out is not None and ch is not None and unparse(out) == unparse(ch)
            return out if same else None
        scope.init += lines
        scope.statement_done()
        scope.forward.append(_stmt(f"{dst} = {applied}", shape))
        return out

    def attribute(self, item: NamedItem, modules: list, scope: _Scope) -> "_Attr":
        """How the class writes a named item's attribute: ``self.conv``; a template's, in a loop the
        generated code runs (``getattr(self, f"layer{i + 1}")``), or its name at this iteration."""
        if item.template is None:
            return _Attr(f"self.{item.name}", f"self.{item.name} = {{}}", True, item.name)
        if scope.loop_vars:  # a Python loop: the name is computed
            text = _fstring(item.template, scope.subst)
            return _Attr(f"getattr(self, {text})", f"self.add_module({text}, {{}})", False, item.name)
        name = next((m.name for _, m in modules if m is not None), None)
        if name is None:  # in no instance: the name the template gives here, where the loop fixes its variables
            env = modules[0][0].env if modules else {}
            name = "".join(p if isinstance(p, str) else str(evaluate(scope.spec(p), env, item.loc))
                           for p in item.template)
        of = scope.of
        scope.attrs.claim(name, "module", item.loc, of,
                          ": rename it (archspec cannot: a module's name starts its state_dict keys)")
        return _Attr(f"self.{name}", f"self.{name} = {{}}", True, name)

    # -- merges --
    def merge(self, item: MergeItem, at: list, src: str, dst: str, ch, scope: _Scope):
        """Each branch reads ``src`` (or, with ``split:``, its chunk of it) into its own variable;
        concat, sum or multiply them into ``dst``. A conditional branch is computed and joined only
        where its condition holds."""
        outs, chans = [], []
        first = True  # no branch with layers yet: the first is `out`, the rest `identity` (as torchvision)
        step = _first(at)
        labels = step.labels if step is not None and step.present is None else \
            [_branch_label(br, j) for j, br in enumerate(item.branches)]
        names_ = _branch_vars(labels, item.branches)
        srcs, in_chans = self.split(item, at, src, ch, scope)
        conds = item.conds or [None] * len(item.branches)
        cond_lines: list = []
        for j, branch in enumerate(item.branches):
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
            start = len(scope.forward)
            with self.guarded(scope, conds[j], _module_names(branch)):
                chans.append(self.body(branch, _branch_sites(at, j), srcs[j], local, in_chans[j], scope))
            if conds[j] is not None:  # computed where it is joined, under its condition
                cond_lines = scope.forward[start:]
                del scope.forward[start:]
            outs.append(local)
        return self.join(item, at, outs, chans, conds, dst, scope, cond_lines)

    def join(self, item: MergeItem, at: list, outs: list, chans: list, conds: list, dst: str, scope: _Scope,
             cond_lines: list):
        """The statement that joins a merge's branches; with a conditional branch, computed and joined
        where its condition holds (``cond_lines``), the others alone where it does not. Returns the
        merge's channel expression."""
        step = _first(at)
        every = list(range(len(outs)))
        j = next((k for k, c in enumerate(conds) if c is not None), None)
        text, ch = self.joined(item, step, outs, chans, every)
        if j is None:
            scope.forward.append(_stmt(f"{dst} = {text}", self.shared(scope, at, _node_shape, ch)))
            return ch
        rest = [k for k in every if k != j]
        text_without, ch_without = self.joined(item, step, outs, chans, rest)
        cond = self.forward_expr(scope.spec(conds[j]), scope)
        def joined_shape(with_j: bool):  # the line's shape where the branch is joined (or not)
            return lambda s: s.out if isinstance(s, Merge) and (j in s.present) == with_j else None

        scope.forward += [f"if {unparse(cond)}:", *_indent(cond_lines),
                          f"    {_stmt(f'{dst} = {text}', self.shared(scope, at, joined_shape(True)))}", "else:",
                          f"    {_stmt(f'{dst} = {text_without}', self.shared(scope, at, joined_shape(False)))}"]
        return _either(scope.spec(conds[j]), ch, ch_without)

    @staticmethod
    def joined(item: MergeItem, step, outs: list, chans: list, which: list) -> tuple:
        """(expression, channels) of the branches ``which`` joined."""
        texts = [outs[k] for k in which]
        if len(texts) == 1:
            return texts[0], chans[which[0]]
        if item.kind == "concat":
            return f"torch.cat([{', '.join(texts)}], 1)", sum_of([chans[k] for k in which])
        text = (' * ' if item.kind == 'mul' else ' + ').join(texts)
        if item.kind == "mul":  # broadcasting: the channels of a branch that has them all (the widest)
            widths = _branch_widths(step)
            known = [k for k in which if k in widths]
            if known:
                return text, chans[max(known, key=lambda k: widths[k])]
        return text, chans[which[0]]

    def split(self, item: MergeItem, at: list, src: str, ch, scope: _Scope) -> tuple:
        """With ``split:``, one statement gives every branch its chunk of the channels, as ShuffleNet
        writes it: ``x1, x2 = x.chunk(2, dim=1)``. The variables and their channel expressions."""
        n = len(item.branches)
        if item.split is None:
            return [src] * n, [ch] * n
        split = scope.spec(item.split)
        expr = self.forward_expr(split, scope)
        step = _first(at)
        value = step.split if step is not None else None
        names_ = [scope.local(f"x{j + 1}") for j in range(n)]
        if isinstance(value, tuple) or isinstance(split, ast.Tuple):
            items = expr.elts if isinstance(expr, ast.Tuple) else None
            text = f"{src}.split([{', '.join(unparse(e) for e in items)}], dim=1)" if items else \
                f"{src}.split(list({unparse(expr)}), dim=1)"
            chans = list(split.elts) if isinstance(split, ast.Tuple) else [None] * n
        else:
            text = f"{src}.chunk({unparse(expr)}, dim=1)"
            chans = [fold(ast.BinOp(ch, ast.FloorDiv(), split)) if ch is not None else None] * n
        shapes = self.shared(scope, at, lambda s: tuple(c.meta["shape"] for c in s.chunks) if isinstance(s, Merge) else None)
        shapes = list(shapes or ())
        comment = ", ".join(shape_comment(s) for s in shapes) if len(set(shapes)) > 1 else \
            (f"{shape_comment(shapes[0])} each" if shapes else "")
        scope.forward.append(f"{', '.join(names_)} = {text}" + (f"  # {comment}" if comment else ""))
        return names_, chans

    # -- conditional groups and loops in a body --
    @contextmanager
    def guarded(self, scope: _Scope, cond, modules: list):
        """The __init__ lines written inside run where ``cond`` holds (None: always); the modules the
        guarded items name are None where it does not."""
        if cond is None:
            yield
            return
        start = len(scope.init)
        yield
        lines = scope.init[start:]
        if lines:
            del scope.init[start:]
            scope.init += [f"if {unparse(scope.spec(cond))}:", *_indent(lines)]
            fixed = [name for name, _, _ in modules]
            if fixed:
                scope.init += ["else:", *(f"    self.{name} = None" for name in fixed)]

    def group(self, item: GroupItem, at: list, src: str, dst: str, ch, scope: _Scope):
        """``{if: COND, body: [...]}``: its modules created where COND holds, its steps run there."""
        inner = _group_sites(at)
        cond = self.forward_expr(scope.spec(item.cond), scope)
        start = len(scope.forward)
        with self.guarded(scope, item.cond, _module_names(item.body)):
            out = self.body(item.body, inner, src, dst, ch, scope)
        body = scope.forward[start:]
        del scope.forward[start:]
        scope.forward += [f"if {unparse(cond)}:", *_indent(body or ["pass"])]
        if src != dst:
            scope.forward += ["else:", f"    {dst} = {src}"]
        return _either(scope.spec(item.cond), out, ch)

    def loop(self, item, at: list, src: str, dst: str, ch, scope: _Scope):
        """A loop in a body: written out iteration by iteration where every site runs it the same
        number of times (a for: table always), else a Python loop over range(count)."""
        counts = {len(step.iterations) for _, step in at if isinstance(step, Loop)}
        count = self.fixed_count(item, counts, scope)
        if count is None:
            return self.python_loop(item, at, src, dst, ch, scope)
        if count == 0 and src != dst:  # no iteration: what follows reads dst
            scope.forward.append(f"{dst} = {src}")
        for k in range(count):
            inner = [_Site({**site.env, **step.iterations[k].values}, step.iterations[k].steps, site.real, site.base)
                     for site, step in at if isinstance(step, Loop)]
            with scope.bound(self.iteration_values(item, k, scope)):
                ch = self.body(item.body, inner, src, dst, ch, scope)
            src = dst
        return ch

    def fixed_count(self, item, counts: set, scope: _Scope):
        """The iteration count every site shares (None: it differs, or cannot be known here)."""
        if isinstance(item, ForItem):
            return len(item.rows)
        if len(counts) == 1:
            return counts.pop()
        if not counts:
            value = self._value(scope.spec(item.count), {}, item.loc)
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        return None

    @staticmethod
    def iteration_values(item, k: int, scope: _Scope) -> dict:
        """What the loop variables stand for at iteration k, as expressions over the class's names."""
        if isinstance(item, ForItem):
            return {name: scope.spec(expr) for name, expr in zip(item.names, item.rows[k])}
        return {item.var: ast.Constant(k)} if item.var else {}

    def python_loop(self, item: RepeatItem, at: list, src: str, dst: str, ch, scope: _Scope):
        """``for i in range(count):`` in __init__ and forward; a templated name is computed
        (``self.add_module(f"layer{i}", ...)``, ``getattr(self, f"layer{i}")``), the channels carried
        in a local where the body changes them."""
        loop = self.loop_frame(item, at, ch, scope)
        if src != dst:  # every iteration reads what the one before wrote
            scope.forward.append(f"{dst} = {src}")
        init_start, fwd_start = len(scope.init), len(scope.forward)
        with scope.looping(item.var, loop.var):
            out = self.body(item.body, loop.sites, dst, dst, loop.ch, scope)
        self.close_loop(item, loop, out, at, scope)
        init_body, fwd_body = scope.init[init_start:], scope.forward[fwd_start:]
        del scope.init[init_start:], scope.forward[fwd_start:]
        if loop.chvar:
            scope.init.append(f"{loop.chvar} = {unparse(ch)}")
            init_body.append(f"{loop.chvar} = {unparse(out)}")
        count = scope.spec(item.count)
        scope.init += [f"for {loop.var} in range({unparse(count)}):", *_indent(init_body or ["pass"])]
        scope.forward += [f"for {loop.var} in range({unparse(self.forward_expr(count, scope))}):",
                          *_indent(fwd_body or ["pass"])]
        return loop.ch

    def loop_frame(self, item: RepeatItem, at: list, ch, scope: _Scope) -> "_LoopFrame":
        """A Python loop's names and sites: one site per iteration of every site that runs it; the
        channels carried in a local (``channels``) where an iteration changes them."""
        runs, carried = [], False
        for site, step in at:
            if not isinstance(step, Loop):
                continue
            for k, it in enumerate(step.iterations):
                nxt = step.iterations[k + 1].shape if k + 1 < len(step.iterations) else step.out
                carried = carried or it.shape is None or nxt is None or it.shape[0] != nxt[0]
                runs.append((site, it))
        var = _loop_name(scope, item.var or "_")
        chvar = scope.init_names.fresh("channels", "the channels a loop carries") if carried else None
        sites = [_Site({**site.env, **it.values, **({chvar: it.shape[0]} if chvar and it.shape else {})}, it.steps,
                       site.real, site.base) for site, it in runs]
        return _LoopFrame(var, chvar, sites, ast.Name(chvar, ast.Load()) if chvar else ch)

    def close_loop(self, item: RepeatItem, loop: "_LoopFrame", out, at: list, scope: _Scope) -> None:
        """The channels the body hands to the next iteration must be what the network has at every
        site; the sites after the loop read the carried local's last value."""
        if loop.chvar is None:
            return
        wrong = out is None
        for site, step in at:
            if not isinstance(step, Loop):
                continue
            for k, it in enumerate(step.iterations):
                nxt = step.iterations[k + 1].shape if k + 1 < len(step.iterations) else step.out
                env = {**site.env, **it.values, loop.chvar: it.shape[0] if it.shape else None}
                wrong = wrong or nxt is None or self._value(out, env, item.loc) != nxt[0]
            site.env = {**site.env, loop.chvar: step.out[0] if step.out else None}
        if wrong:
            raise GenerateError(f"cannot write this repeat: its count differs between instances of {scope.owner} "
                                "and the channels its body gives do not follow from the block's arguments", item.loc)

    # -- nn.Sequential --
    def sequential(self, items: list, sites: list, ch, scope: _Scope, loc) -> tuple:
        """(constructor, channels, prelude): ``nn.Sequential(a, b, ...)`` where its entries are fixed;
        where an entry is conditional or a loop runs a count that differs between sites, a list built
        statement by statement (``layers.append(...)``, torchvision's style), the prelude."""
        pieces: list = []
        ch = self.seq_items(items, sites, ch, scope, pieces)
        if all(kind in ("entry", "pre") for kind, *_ in pieces):
            prelude = [line for kind, *rest in pieces if kind == "pre" for line in rest[0]]
            entries = [rest[0] for kind, *rest in pieces if kind == "entry"]
            if not entries:
                return "nn.Sequential()", ch, prelude
            keys = self.entry_keys(items, scope)
            if keys:  # named entries (validate: all of them, written out): the keys of an OrderedDict
                entries = [f"({key}, {e})" for key, e in zip(keys, entries)]
            inner = []
            for e in entries:
                inner.extend(("    " + line) for line in e.split("\n"))
                inner[-1] += ","
            if keys:
                return "nn.Sequential(OrderedDict([\n" + "\n".join(inner) + "\n]))", ch, prelude
            return "nn.Sequential(\n" + "\n".join(inner) + "\n)", ch, prelude
        layers = scope.init_names.fresh("layers", "the layers of an nn.Sequential")
        scope.dead.append(layers)
        return f"nn.Sequential(*{layers})", ch, [f"{layers} = []", *_render_pieces(pieces, layers)]

    def entry_keys(self, items: list, scope: _Scope) -> list:
        """The string literals of a Sequential's entry names (none: its entries are numbered). Each
        is claimed in a namespace of the Sequential's own attributes: add_module refuses a name
        nn.Module has (``eval``, ``training``), and the OrderedDict would keep one of two equal keys."""
        names = [_entry_name(item) for item in items]
        if not any(names):
            return []
        attrs = attribute_names()
        return [py_str(attrs.claim(name, "nn.Sequential entry", item.loc, scope.of)) for name, item in zip(names, items)]

    def seq_items(self, items: list, sites: list, ch, scope: _Scope, pieces: list):
        for k, item in enumerate(items):
            at = _at(sites, k)
            if isinstance(item, (RepeatItem, ForItem)):
                ch = self.seq_loop(item, at, ch, scope, pieces)
            elif isinstance(item, GroupItem):
                sub: list = []
                out = self.seq_items(item.body, _group_sites(at), ch, scope, sub)
                pieces.append(("block", f"if {unparse(scope.spec(item.cond))}:", sub))
                ch = _either(scope.spec(item.cond), out, ch)
            else:
                text, ch, prelude = self.seq_entry(item, at, ch, scope)
                if prelude:
                    pieces.append(("pre", prelude))
                pieces.append(("entry", text))
        return ch

    def seq_entry(self, item, at: list, ch, scope: _Scope) -> tuple:
        """(constructor, channels, prelude) of one entry: a nested Sequential, a block or an op module."""
        modules = [(site, step.module) for site, step in at if isinstance(step, Apply)]
        what = _relative(modules[0][0], modules[0][1]) if modules else "an entry"
        if isinstance(item, NamedItem) and item.seq is not None:  # nested Sequential
            inner = [_Site(site.env, m.body, site.real, site.base) for site, m in modules]
            return self.sequential(item.seq, inner, ch, scope, item.loc)
        if item.call.name in self.blocks or item.call.name in scope.op_args or OPS[item.call.name].inferred:
            pairs = [(site.env, m.in_shape, site.real) for site, m in modules]
            ctor, ch = self.module_ctor(item.call, ch, scope, pairs, item.loc, item, what)
            return ctor, ch, []
        op = OPS[item.call.name]  # a stateless op module
        ctor = op.module("", self.attr_exprs(item.call.name, item.call, scope, in_forward=False), op,
                         inplace=self.runs_in_place(item))
        return ctor, self.channels_after(item.call, ch, scope), []

    def seq_loop(self, item, at: list, ch, scope: _Scope, pieces: list):
        """A loop in an nn.Sequential: its iterations written out where every site runs the same count
        and the count is a number (timm's Inception-v4: ``InceptionA(384), InceptionA(384), ...``),
        else a Python loop that appends to the list (torchvision's _make_layer: ``for _ in
        range(blocks1 - 1): layers.append(Bottleneck(256, 64))``), so an argument still sets it."""
        counts = {len(step.iterations) for _, step in at if isinstance(step, Loop)}
        count = self.fixed_count(item, counts, scope)
        if count == 0:
            return ch
        if count is None or (isinstance(item, RepeatItem) and self._value(scope.spec(item.count), {}, item.loc) is None):
            return self.seq_python_loop(item, at, ch, scope, pieces)
        for k in range(count):  # write each one out
            with scope.bound(self.iteration_values(item, k, scope)):
                ch = self.seq_items(item.body, self.iteration_sites(at, k), ch, scope, pieces)
        return ch

    @staticmethod
    def iteration_sites(at: list, k: int) -> list:
        return [_Site({**site.env, **step.iterations[k].values}, step.iterations[k].steps, site.real, site.base)
                for site, step in at if isinstance(step, Loop) and k < len(step.iterations)]

    def seq_python_loop(self, item: RepeatItem, at: list, ch, scope: _Scope, pieces: list):
        """``for i in range(n): layers.append(...)``, the channels carried in a local where they change."""
        loop = self.loop_frame(item, at, ch, scope)
        scope.dead += [loop.var, *([loop.chvar] if loop.chvar else [])]
        sub: list = []
        with scope.looping(item.var, loop.var):
            out = self.seq_items(item.body, loop.sites, loop.ch, scope, sub)
        self.close_loop(item, loop, out, at, scope)
        if loop.chvar:
            pieces.append(("line", f"{loop.chvar} = {unparse(ch)}"))
            sub.append(("line", f"{loop.chvar} = {unparse(out)}"))
        pieces.append(("block", f"for {loop.var} in range({unparse(scope.spec(item.count))}):", sub))
        return loop.ch

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
            params.append(f"{a.name}: {_TYPES[a.type]} = {_default(a)}")
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
        sites = [_Site(ex.model.env, ex.model.body)]
        for k, item in enumerate(self.c.resolved.layers):
            channels = self.item(item, _at(sites, k), "x", "x", channels, scope)
            name = item.name if isinstance(item, NamedItem) else None
            for head in heads_after.get(name, []) if name else []:
                self.aux_init(head, aux_items[head.name], scope)
            for head in heads_from.get(name, []) if name else []:
                # the head's output lives to the end of forward: a name no later local takes; `aux`
                # where there is one head (torchvision's Inception3), else the head's own (aux1, aux2)
                want = "aux" if len(ex.aux) == 1 else head.name
                local = self.aux_locals[head.name] = scope.local(want)
                scope.forward += [f"{local}: Optional[Tensor] = None",
                                  f"if self.{head.name} is not None and self.training:",
                                  f"    {local} = self.{head.name}(x)  # {shape_comment(head.module.out_shape)}"]

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
        ch = ast.Constant(head.module.in_shape[0])
        env = self.c.expanded.model.env
        if item.seq is not None:
            ctor, _, prelude = self.sequential(item.seq, [_Site(env, head.module.body)], ch, scope, item.loc)
        else:
            pairs = [(env, head.module.in_shape, True)]
            (ctor, _), prelude = self.module_ctor(item.call, ch, scope, pairs, item.loc, item, head.name), []
        scope.init.append(("aux", head.name, "\n".join([*prelude, f"self.{head.name} = {ctor}"])))

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
    """(name, location, 'module') of every module a body registers as an attribute of its class under
    a fixed name: its named items, those inside merge branches, groups and loops included (a
    Sequential's entries are numbered; a template's names are claimed as they are written)."""
    for item in items:
        if isinstance(item, NamedItem):
            if item.template is None:
                yield item.name, item.loc, "module"
        elif isinstance(item, MergeItem):
            for branch in item.branches:
                yield from _module_names(branch)
        elif isinstance(item, (GroupItem, RepeatItem, ForItem)):
            yield from _module_names(item.body)


@dataclass
class _Site:
    """One place a class's code runs: the names its expressions read there with their values (its
    arguments, INPUT_NAMES, loop variables, a loop's carried channels) and the expanded steps of the
    items being written (one per item). ``real`` is False for an absent item's shadow (sizes only);
    ``base`` is the path of the instance, for messages."""

    env: dict
    steps: list | None
    real: bool = True
    base: str = ""


@dataclass
class _Attr:
    """A named item's attribute as the class writes it: how forward reads it, how __init__ assigns it
    (``{}`` the constructor), whether the name is fixed, and the name for messages."""

    read: str
    assigns: str
    fixed: bool
    text: str

    def assign(self, ctor: str) -> str:
        return self.assigns.replace("{}", ctor, 1)


@dataclass
class _LoopFrame:
    var: str  # the loop variable in generated code
    chvar: str | None  # the local carrying the channels (None: the body keeps them)
    sites: list
    ch: object  # the channel expression the body starts from


def _at(sites: list, k: int) -> list:
    """(site, step) of item k at every site (step None where the site's steps are not known)."""
    return [(site, site.steps[k] if site.steps is not None else None) for site in sites]


def _first(at: list):
    """The step of the first site (its shapes write the comments; a shadow's are not the network's)."""
    return at[0][1] if at and at[0][0].real else None


def _real_first(sites: list) -> list:
    """Sites where a construct is there before its shadows (the first writes the shape comments)."""
    return [s for s in sites if s.real] + [s for s in sites if not s.real]


def _node_shape(step):
    """The analysed shape of a functional op or merge step (None: not in the network here)."""
    node = getattr(step, "node", None)
    return node.meta.get("shape") if node is not None else None


def _module_of(step):
    if isinstance(step, Apply):
        return step.module
    if isinstance(step, Absent) and isinstance(step.shadow, Module):
        return step.shadow
    return None


def _in_shape(step):
    return step.module.in_shape if isinstance(step, Apply) else getattr(step, "shape", None)


def _line_shape(step):
    """The shape after a named module's line: its output; where it is absent (``if:`` false), the
    input it passes on."""
    if isinstance(step, Apply):
        return step.module.out_shape
    return step.shape if isinstance(step, Absent) else None


def _relative(site: _Site, module) -> str:
    """A module's path inside the class instance of ``site`` (``features.3``), for messages."""
    return module.path[len(site.base) + 1:] if site.base and module.path.startswith(site.base + ".") else module.path


def _branch_sites(at: list, j: int) -> list:
    """The sites of a merge's branch j: where it is there, else where it is absent, its shadow."""
    out = []
    for site, step in at:
        if not isinstance(step, Merge):
            continue
        present = step.present if step.present is not None else list(range(len(step.branches)))
        if j in present:
            out.append(_Site(site.env, step.branches[present.index(j)], site.real, site.base))
        elif step.shadows.get(j) is not None:
            out.append(_Site(site.env, step.shadows[j], False, site.base))
    return _real_first(out)


def _branch_widths(step) -> dict:
    """A merge's branches' output channels at one site, by the item's branch index."""
    if not isinstance(step, Merge):
        return {}
    present = step.present if step.present is not None else list(range(len(step.branches)))
    if step.node is None:
        return {present[0]: step.out[0]} if step.out else {}
    return {k: n.meta["shape"][0] for k, n in zip(present, step.node.inputs)}


def _group_sites(at: list) -> list:
    """The sites of a conditional group's body: where it is there, then where it is absent, its shadow."""
    inner = []
    for site, step in at:
        if isinstance(step, Group):
            inner.append(_Site(site.env, step.steps, site.real, site.base))
        elif isinstance(step, Absent) and step.shadow is not None:
            inner.append(_Site(site.env, step.shadow, False, site.base))
    return _real_first(inner)


def _branch_label(items: list, j: int) -> str:
    for it in items:
        if isinstance(it, NamedItem) and it.name and it.template is None:
            return it.name
    return f"branch {j + 1}" if items else f"branch {j + 1} (identity)"


def _either(cond, then, other):
    """The channel expression after a conditional construct: ``then if cond else other`` (one of
    them where both are the same; None where either is unknown)."""
    if then is None or other is None:
        return None
    if unparse(then) == unparse(other):
        return then
    return fold(ast.IfExp(cond, then, other))


def _fstring(template: tuple, subst: dict) -> str:
    """A template name as an f-string over the generated loop variables: f"layer{i + 1}"."""
    parts = [p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{" + unparse(substitute(p, subst)) + "}"
             for p in template]
    return 'f"' + "".join(parts) + '"'


def _render_pieces(pieces: list, layers: str) -> list:
    """The statements that build an nn.Sequential's list of layers."""
    out = []
    for kind, *rest in pieces:
        if kind == "entry":
            out += f"{layers}.append({rest[0]})".split("\n")
        elif kind in ("pre",):
            out += rest[0]
        elif kind == "line":
            out.append(rest[0])
        else:
            out += [rest[0], *_indent(_render_pieces(rest[1], layers) or ["pass"])]
    return out


def _loop_name(scope, want: str) -> str:
    """A loop variable free in both __init__ and forward (the same name in both)."""
    while True:
        name = scope.init_names.fresh(want, "a loop variable")
        if scope.names.why_taken(name) is None:
            scope.names.used[name] = "a loop variable"
            return name


def name_uses_input(used, dim: int) -> bool:
    """Whether a block's expressions read its input's height (dim 1) or width (dim 2)."""
    return INPUT_NAMES[dim] in used


def _shadow_blocks(model) -> dict:
    """Block name -> the block instances inside absent items' shadows, in network order."""
    out: dict = {}

    def steps(items, shadow: bool):
        for step in items:
            if isinstance(step, Apply) and shadow:
                module(step.module)
            elif isinstance(step, Absent) and step.shadow is not None:
                if isinstance(step.shadow, Module):
                    module(step.shadow)
                else:
                    steps(step.shadow, True)
            elif isinstance(step, Group):
                steps(step.steps, shadow)
            elif isinstance(step, Loop):
                for it in step.iterations:
                    steps(it.steps, shadow)
            elif isinstance(step, Merge):
                for branch in step.branches:
                    steps(branch, shadow)
                for branch in step.shadows.values():
                    steps(branch or [], True)

    def module(root):  # a shadow module and all it holds
        for m in root.walk():
            if m.kind == "block":
                out.setdefault(m.type, []).append(m)
            steps(m.body, False)  # its absent items' shadows; its own modules are walked here

    for m in model.walk():
        steps(m.body, False)
    return out


def module_class(name: str, attrs: dict) -> str:
    """An op's module class as a value (torchvision's activation_layer, norm_layer): ``nn.ReLU``, or with
    its attributes bound, ``partial(nn.LeakyReLU, negative_slope=0.2)``; the input size, where the op
    takes one, is the one argument left to the call (``norm_layer(channels)``)."""
    op = OPS[name]
    call = ast.parse(op.module(_IN, attrs, op, inplace=False), mode="eval").body
    args = [ast.unparse(a) for a in call.args]
    if op.inferred:
        if not args or args[-1] != _IN:
            raise GenerateError(f"cannot write {name} as a module class that takes its input size last")
        args = args[:-1]
    rest = args + [f"{k.arg}={ast.unparse(k.value)}" for k in call.keywords]
    return f"partial({ast.unparse(call.func)}, {', '.join(rest)})" if rest else ast.unparse(call.func)


def _op_value_source(value) -> str:
    op = OPS[value.name]
    texts = {a.name: repr(v) for a, v in zip(op.attrs, value.args)}
    texts.update({k: repr(v) for k, v in value.kwargs})
    return module_class(value.name, texts)


def _default(arg) -> str:
    """An argument's default as generated source."""
    return _op_value_source(arg.default) if arg.type == "op" else repr(arg.default)


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


def _branch_vars(labels: list, branches: list) -> list:
    """Variable names for a merge's branches, from their first modules' names.

    torchvision's style: the branch of branch5x5_1, branch5x5_2 is held in `branch5x5`; a branch
    that is a pooling alone is `branch_pool` (Inception3's InceptionB: ``branch_pool =
    F.max_pool2d(x, ...)``); another branch without a named module is `branch<k>`. When a name is
    long (Caffe's flat `inception_3a_double_3x3_reduce` would make every line of the branch long),
    all the merge's branches are numbered instead: branch1, branch2, ...
    """
    stems = [label[:-2] if label.endswith("_1") and len(label) > 2 else label for label in labels]
    if any(len(s) > 16 for s in stems):
        return [f"branch{j + 1}" for j in range(len(labels))]
    return ["branch_pool" if _pool_only(branches[j]) else s if is_identifier(s) else f"branch{j + 1}"
            for j, s in enumerate(stems)]


def _pool_only(branch: list) -> bool:
    """Whether a merge's branch is one unnamed max or average pooling."""
    return len(branch) == 1 and isinstance(branch[0], CallItem) and branch[0].call.name in ("maxpool2d", "avgpool2d")


def _stmt(code: str, shape) -> str:
    comment = shape_comment(shape)
    return f"{code}  # {comment}" if comment else code


def _indent(lines):
    return ["    " + line for line in lines]


def helpers(compiled, files) -> list:
    """The classes the generated file defines for ops that torch has no module for (LayerNorm2d,
    Permute, StochasticDepth: no torchvision import), in catalog order. Their names are claimed in
    the file's namespace before the spec's classes, which are renamed around them."""
    r = compiled.resolved
    used = {n.op for n in compiled.graph if n.is_module}
    used |= {a.default.name for a in [*r.args, *(a for b in r.blocks.values() for a in b.args)]
             if a.type == "op" and not a.required}  # a default the generated class names
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


def _has_named_entries(model: Module) -> bool:
    """Whether an nn.Sequential of the model has named entries (it is built from an OrderedDict)."""
    return any(m.kind == "sequential" and any(_entry_name(c) for c in m.children) for m in model.walk())


def _entry_name(item) -> str | None:
    """The name of a named nn.Sequential entry (a Module or a spec item; None: a numbered one)."""
    item = item.item if isinstance(item, Module) else item
    return item.name if isinstance(item, NamedItem) and item.name else None


def _has_op_args(resolved) -> bool:
    return any(a.type == "op" for a in [*resolved.args, *(a for b in resolved.blocks.values() for a in b.args)])


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
        "callable": "Callable" in used and "Callable" in gen.files.reserved,
        "partial": "partial" in used and "partial" in gen.files.reserved,
        "ordered": "OrderedDict" in used and "OrderedDict" in gen.files.reserved,
        "model": model,
        "blocks": blocks,
        "outputs": gen.outputs_class if ex.aux else None,
        "fields": [{"name": name, "aux": source != "main"} for name, source in fields],
        "main_field": field_of["main"],
        "heads": heads,
        "exports": [model.name, *([gen.outputs_class, "loss"] if ex.aux else [])],
    })
