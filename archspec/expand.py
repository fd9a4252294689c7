"""Stage 3, expand: a validated spec -> the resolved module tree.

Block calls are instantiated with their arguments and defaults, repeats unrolled, ``if:`` items
decided and op attributes evaluated and type-checked. The result is a tree of ``Module`` objects
(what ``nn.Module`` children the generated model will have, in registration order) whose
``body`` lists the steps of ``forward``. Nothing here knows shapes; ``analyse`` infers the
input-dependent constructor arguments (in_channels, in_features) later.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import exprs
from .errors import ArchspecError, ExpandError, Loc, raise_all
from .ops import OPS, REQUIRED, USER_OPS, OpAttrError
from .validate import CallItem, MergeItem, NamedItem, RepeatItem, Resolved, exprs_required

if TYPE_CHECKING:
    from .graph import Node

# Bounds that keep an absurd spec a quick, clean error (docs/errors.md). The largest network in
# specs/ has about 800 modules and functional ops; expanding, lowering and analysing 10,000 takes
# well under a second, 100,000 takes about ten.
MAX_REPEAT = 100_000
MAX_MODULES = 200_000  # modules, functional ops and merges of the whole network
MAX_BLOCK_NESTING = 32


@dataclass
class Module:
    """A registered module: the model, a block instance, an nn.Sequential or a leaf op."""

    name: str  # attribute name, or index inside a Sequential
    path: str  # dotted module path ("" for the model)
    kind: str  # model | block | sequential | op
    type: str  # block name, "Sequential", or op name
    args: dict  # block arguments or op attributes, evaluated
    loc: Loc
    part: str = "main"
    call: exprs.Call | None = None
    item: object = None  # the source item (for code generation)
    children: list = field(default_factory=list)  # registered submodules, in order
    body: list = field(default_factory=list)  # forward steps

    def walk(self):
        """This module and every submodule, in registration (state_dict) order."""
        stack = [self]
        while stack:
            module = stack.pop()
            yield module
            stack.extend(reversed(module.children))


@dataclass
class Apply:
    """Apply a child module."""

    module: Module


@dataclass
class Func:
    """A functional op (no module): F.relu, F.avg_pool2d, torch.flatten ..."""

    op: str
    attrs: dict
    loc: Loc
    call: exprs.Call
    item: object = None
    node: Node | None = field(default=None, repr=False, compare=False)  # set by lower


@dataclass
class Merge:
    kind: str  # concat | add | mul
    branches: list  # list of lists of steps
    labels: list  # a readable name per branch
    loc: Loc
    item: object = None
    node: Node | None = field(default=None, repr=False, compare=False)  # set by lower
    split: int | tuple | None = None  # branch i reads chunk i of the channels: N equal chunks or the sizes
    chunks: list = field(default_factory=list, repr=False, compare=False)  # the split nodes, set by lower


@dataclass
class Absent:
    """A named item whose ``if:`` was false: the attribute is None and the step is the identity."""

    name: str
    item: object


@dataclass
class AuxHead:
    name: str
    source: str  # module path whose output it reads
    after: str  # top-level name it is registered after
    loss_weight: float
    module: Module
    loc: Loc


@dataclass
class Expanded:
    resolved: Resolved
    model: Module
    aux: list
    input: tuple
    num_classes: int
    model_args: dict

    @property
    def name(self) -> str:
        return self.resolved.name


def bind(call: exprs.Call, params: list, env: dict, owner: str, errors: list | None = None) -> dict:
    """Match a call's arguments to declared parameters: [(name, type, default)] -> values."""
    loc = call.loc
    names = [p[0] for p in params]
    if len(call.args) > len(params):
        raise ExpandError(f"{owner} takes at most {len(params)} positional argument{'s' if len(params) != 1 else ''} "
                          f"({', '.join(names) or 'none'}), got {len(call.args)}", loc)
    given = {}
    for (name, _, _), expr in zip(params, call.args):
        given[name] = expr
    for name, expr in call.kwargs:
        if name not in names:
            raise ExpandError(f"{owner} has no argument '{name}' (expected {', '.join(names) or 'none'})", loc)
        if name in given:
            raise ExpandError(f"{owner} got argument '{name}' twice", loc)
        given[name] = expr
    out = {}
    for name, type_, default in params:
        if name in given:
            value = exprs.evaluate(given[name], env, loc, f" in {owner}")
            if type_ == "size_or_none":
                checked = value if value is None else exprs.check_type(value, "size")
                ok = value is None or checked is not None
            else:
                checked = exprs.check_type(value, type_)
                ok = checked is not None
            if not ok:
                want = exprs.TYPE_WORDS.get(type_, "an int, a pair of ints or none")
                raise ExpandError(f"argument '{name}' of {owner} must be {want}, got {exprs.describe(value)}"
                                  f"{exprs.float_hint(value, given[name])}", loc)
            out[name] = checked
        elif default is REQUIRED or default is exprs_required:
            raise ExpandError(f"{owner} is missing required argument '{name}'", loc)
        else:
            out[name] = default
    return out


def op_params(op_name: str) -> list:
    return [(a.name, a.type, a.default) for a in OPS[op_name].attrs]


def op_attrs(call: exprs.Call, env: dict) -> dict:
    """An op call's attributes, bound, type-checked and checked by the op's catalog entry (values
    PyTorch would refuse only when the network runs are refused here, at the call)."""
    attrs = bind(call, op_params(call.name), env, call.name)
    try:
        OPS[call.name].validate(attrs)
    except OpAttrError as exc:
        raise ExpandError(str(exc), call.loc) from None
    return attrs


class _Expander:
    def __init__(self, resolved: Resolved):
        self.r = resolved
        self.errors: list = []
        self.count = 0
        self.too_large: ExpandError | None = None
        self.stack: list = []
        # id(owner) -> (owner, {name: child}): duplicate names found in O(1), not by scanning the
        # children (quadratic for a model of 1,000 top-level layers). The owner is held so that its
        # id cannot be reused by another module while the expander lives.
        self.child_names: dict = {}

    # -- entry points --
    def model(self, env: dict) -> Module:
        root = Module("", "", "model", self.r.name, dict(env), Loc(self.r.file, 1, 1))
        root.body = self.steps(self.r.layers, env, root, "main")
        return root

    # -- steps in a block (or the model) body --
    def steps(self, items: list, env: dict, owner: Module, part: str) -> list:
        out = []
        for item in items:
            try:
                step = self.step(item, env, owner, part)
            except ArchspecError as exc:
                if self.too_large:
                    raise self.too_large from None
                self.errors.append(exc)
                continue
            if step is not None:
                out.append(step)
        return out

    def step(self, item, env: dict, owner: Module, part: str):
        if isinstance(item, CallItem):
            name = item.call.name
            if name in self.r.blocks:
                raise ExpandError(f"block '{name}' needs a name here: write '- name: {item.call.text}'", item.loc)
            op = self.op(item.call)
            if op.stateful:
                raise ExpandError(f"'{name}' has parameters or state and needs a name: write '- name: {item.call.text}'", item.loc)
            if op.function is None:
                raise ExpandError(f"'{name}' can only be used as a named module here: write '- name: {item.call.text}'", item.loc)
            self._count(item.loc)
            return Func(name, op_attrs(item.call, env), item.loc, item.call, item)
        if isinstance(item, NamedItem):
            self._check_unique(owner, item.name, item.loc)
            if item.cond is not None:
                at = item.cond_loc or item.loc
                cond = exprs.evaluate(item.cond, env, at, " in if:")
                if not isinstance(cond, bool):
                    raise ExpandError(f"if: of '{item.name}' must be a boolean, got {exprs.describe(cond)}", at)
                if not cond:
                    return Absent(item.name, item)
            child = self.named(item, env, owner, part)
            owner.children.append(child)
            self._names_of(owner)[child.name] = child
            return Apply(child)
        if isinstance(item, MergeItem):
            self._count(item.loc)
            split = _split(item, env)
            branches, labels = [], []
            for i, br in enumerate(item.branches):
                branches.append(self.steps(br, env, owner, part))
                labels.append(_label(br, i))
            return Merge(item.kind, branches, labels, item.loc, item, split=split)
        raise ExpandError("repeat: is only allowed inside an nn.Sequential list", item.loc)

    def _names_of(self, owner: Module) -> dict:
        entry = self.child_names.get(id(owner))
        if entry is None:
            entry = self.child_names[id(owner)] = (owner, {})
        return entry[1]

    def _check_unique(self, owner: Module, name: str, loc: Loc) -> None:
        child = self._names_of(owner).get(name)
        if child is not None:
            raise ExpandError(f"duplicate module name '{name}' in {owner.path or 'the model'} (first at line {child.item.loc.line if child.item else '?'})", loc)

    def named(self, item: NamedItem, env: dict, owner: Module, part: str) -> Module:
        path = f"{owner.path}.{item.name}" if owner.path else item.name
        if item.seq is not None:
            return self.sequential(item.name, path, item.seq, env, part, item)
        return self.instance(item.name, path, item.call, env, part, item)

    def instance(self, name: str, path: str, call: exprs.Call, env: dict, part: str, item) -> Module:
        self._count(call.loc)
        if call.name in self.r.blocks:
            block = self.r.blocks[call.name]
            args = bind(call, [(a.name, a.type, a.default) for a in block.args], env, f"block {call.name}")
            if call.name in self.stack:
                chain = " -> ".join([*self.stack[self.stack.index(call.name):], call.name])
                raise ExpandError(f"block '{call.name}' uses itself: {chain}", call.loc)
            if len(self.stack) >= MAX_BLOCK_NESTING:
                raise ExpandError(f"blocks nested more than {MAX_BLOCK_NESTING} deep", call.loc)
            mod = Module(name, path, "block", call.name, args, call.loc, part, call, item)
            self.stack.append(call.name)
            try:
                mod.body = self.steps(block.layers, dict(args), mod, part)
            finally:
                self.stack.pop()
            return mod
        op = self.op(call)
        if op.module is None:  # no nn.Module to register (build would have nothing to write)
            raise ExpandError(f"'{call.name}' is a functional op only: write it without a name in a block's layers, "
                              "not as a named module or an nn.Sequential entry", call.loc)
        attrs = op_attrs(call, env)
        return Module(name, path, "op", call.name, attrs, call.loc, part, call, item)

    def sequential(self, name: str, path: str, items: list, env: dict, part: str, item) -> Module:
        seq = Module(name, path, "sequential", "Sequential", {}, item.loc if item else Loc("?"), part, None, item)
        for sub in items:
            try:
                self._seq_item(seq, sub, env, part)
            except ArchspecError as exc:
                if self.too_large:
                    raise self.too_large from None
                self.errors.append(exc)
        seq.body = [Apply(c) for c in seq.children]
        return seq

    def _seq_item(self, seq: Module, sub, env: dict, part: str) -> None:
        def index_path():
            i = str(len(seq.children))
            return i, f"{seq.path}.{i}" if seq.path else i

        if isinstance(sub, RepeatItem):
            count = exprs.evaluate(sub.count, env, sub.loc, " in repeat")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ExpandError(f"repeat count must be a non-negative int, got {exprs.describe(count)}"
                                  f"{exprs.float_hint(count, sub.count)}", sub.loc)
            if count > MAX_REPEAT:
                raise ExpandError(f"repeat count {count} is over the limit of {MAX_REPEAT}", sub.loc)
            for i in range(count):
                before = self.count
                for inner in sub.body:
                    self._seq_item(seq, inner, env, part)
                if i == 0 and self.count + (self.count - before) * (count - 1) > MAX_MODULES:
                    # every repetition adds as many layers as the first: refuse now, not 200,000 layers later
                    self.count += (self.count - before) * (count - 1)
                    self._count(sub.loc)
            return
        if isinstance(sub, NamedItem) and sub.seq is not None:  # nested Sequential
            i, path = index_path()
            seq.children.append(self.sequential(i, path, sub.seq, env, part, sub))
            return
        if isinstance(sub, CallItem):
            if sub.call.name in OPS and OPS[sub.call.name].parameter:
                raise ExpandError(f"'{sub.call.name}' is a tensor of the module that owns it, not a module: it cannot be "
                                  "an nn.Sequential entry (write it as a named item of a block's layers)", sub.loc)
            i, path = index_path()
            seq.children.append(self.instance(i, path, sub.call, env, part, sub))
            return
        raise ExpandError("only calls and repeat: are allowed inside an nn.Sequential list", getattr(sub, "loc", seq.loc))

    def op(self, call: exprs.Call):
        if call.name not in OPS or call.name not in USER_OPS:
            names = sorted([*USER_OPS, *self.r.blocks])
            close = difflib.get_close_matches(call.name, names, n=1, cutoff=0.8)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ExpandError(f"unknown op or block '{call.name}' (known: {', '.join(names)}){hint}", call.loc)
        return OPS[call.name]

    def _count(self, loc: Loc) -> None:
        self.count += 1
        if self.count > MAX_MODULES:
            # one error for the whole network, not one per remaining module: expansion stops here
            self.too_large = ExpandError(f"the network has more than {MAX_MODULES} layers (modules and functional ops)", loc)
            raise self.too_large


def _split(item: MergeItem, env: dict):
    """A merge's ``split:``, evaluated: N equal chunks, or the channel count of each branch."""
    if item.split is None:
        return None
    at = item.split_loc or item.loc
    value = exprs.evaluate(item.split, env, at, " in split:")
    checked = exprs.check_type(value, "ints")
    if checked is None or min(checked) < 1:
        raise ExpandError(f"split: must be a positive int (equal chunks) or a tuple of positive channel counts, "
                          f"got {exprs.describe(value)}", at)
    count = checked[0] if isinstance(value, int) else len(checked)
    if count != len(item.branches):
        raise ExpandError(f"split: gives {count} chunks, the {item.kind} has {len(item.branches)} branches "
                          "(branch i reads chunk i)", at)
    return value if isinstance(value, int) else checked


def _label(branch_items: list, index: int) -> str:
    for it in branch_items:
        if isinstance(it, NamedItem) and it.name:
            return it.name
    return f"branch {index + 1}" if branch_items else f"branch {index + 1} (identity)"


def model_env(resolved: Resolved, num_classes: int | None = None, overrides: dict | None = None) -> dict:
    env = {"num_classes": num_classes if num_classes is not None else resolved.spec.num_classes}
    for a in resolved.args:
        env[a.name] = a.default
    for key, value in (overrides or {}).items():
        env[key] = value
    return env


def expand(resolved: Resolved, input_shape=None, num_classes: int | None = None) -> Expanded:
    """Instantiate every block; the result is the module tree the generated code will build."""
    ex = _Expander(resolved)
    env = model_env(resolved, num_classes)
    model = ex.model(env)
    aux_heads = []
    top = {c.name: c for c in model.children}
    for aux in resolved.aux:
        try:
            if aux.source not in top:
                nested = any(m.path == aux.source for m in model.walk())
                hint = " (aux heads read the output of a top-level layer)" if nested else ""
                raise ExpandError(f"aux head '{aux.name}' reads from '{aux.source}', which is not a top-level layer{hint}", aux.source_loc or aux.loc)
            if aux.after not in top:
                raise ExpandError(f"aux head '{aux.name}' is registered after '{aux.after}', which is not a top-level layer", aux.after_loc or aux.loc)
            if aux.name in top:
                raise ExpandError(f"aux head '{aux.name}' has the name of a top-level layer", aux.loc)
            if aux.module.call is not None and aux.module.call.name in OPS and OPS[aux.module.call.name].parameter:
                raise ExpandError(f"aux head '{aux.name}' must be a module, not a parameter", aux.loc)
            head = ex.named(aux.module, env, model, aux.name)
            aux_heads.append(AuxHead(aux.name, aux.source, aux.after, aux.loss_weight, head, aux.loc))
        except ArchspecError as exc:
            ex.errors.append(exc)
    raise_all(ex.errors)
    # Register aux heads after the layer they name (torchvision's state_dict order depends on it).
    order = []
    for child in model.children:
        order.append(child)
        order.extend(h.module for h in aux_heads if h.after == child.name)
    model.children = order
    shape = tuple(input_shape) if input_shape else tuple(resolved.spec.input)
    return Expanded(resolved, model, aux_heads, shape, env["num_classes"], env)
