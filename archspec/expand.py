"""Stage 3, expand: a validated spec -> the resolved module tree.

Block calls are instantiated with their arguments and defaults, loops unrolled (``repeat:``,
``for:`` tables), ``if:`` decided (named items, groups, merge branches) and op attributes evaluated
and type-checked. The result is a tree of ``Module`` objects (what ``nn.Module`` children the
generated model will have, in registration order) whose ``body`` lists the steps of ``forward``,
one step per item of the spec (a ``Loop``, a ``Group`` or an ``Absent`` for the constructs).

Expansion follows the tensor's shape through the op catalog's shape rules, because a block may
read its input's size (``in_channels``, ``in_h``, ``in_w``) and decide its structure from it
(``if: stride == 1 and in_channels == out``). A shape rule that fails leaves the shape unknown:
``analyse`` reports the error, unless a block reads the size first, which then reports it. What is
absent from the network (an ``if:`` that is false) is expanded too, detached, where it can be:
the generated class still writes its code (``Absent.shadow``).
"""
from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import exprs
from .errors import ArchspecError, ExpandError, Loc, StructureError, raise_all
from .ops import OPS, REQUIRED, USER_OPS, OpAttrError, OpShapeError
from .validate import (RESERVED, CallItem, ForItem, GroupItem, MergeItem, NamedItem, RepeatItem, Resolved,
                       exprs_required, op_value_problem)

if TYPE_CHECKING:
    from .graph import Node

# Bounds that keep an absurd spec a quick, clean error (docs/errors.md). The largest network in
# specs/ has about 800 modules and functional ops; expanding, lowering and analysing 10,000 takes
# well under a second, 100,000 takes about ten.
MAX_REPEAT = 100_000  # iterations of one repeat: or rows of one for: table
MAX_MODULES = 200_000  # modules, functional ops and merges of the whole network
MAX_ITERATIONS = 200_000  # loop iterations of the whole network, nested loops included (empty bodies too)
MAX_BLOCK_NESTING = 32
# What a block reads of its input, besides its arguments.
INPUT_NAMES = ("in_channels", "in_h", "in_w")


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
    body: list = field(default_factory=list)  # forward steps, one per item of the spec (a Sequential's too)
    in_shape: tuple | None = None  # the shape it reads, as expansion followed it (None: unknown)
    out_shape: tuple | None = None  # the shape it gives
    env: dict = field(default_factory=dict, repr=False)  # a block's scope: its arguments and INPUT_NAMES

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
    branches: list  # list of lists of steps: the branches present
    labels: list  # a readable name per branch
    loc: Loc
    item: object = None
    node: Node | None = field(default=None, repr=False, compare=False)  # set by lower (None: one branch left)
    split: int | tuple | None = None  # branch i reads chunk i of the channels: N equal chunks or the sizes
    chunks: list = field(default_factory=list, repr=False, compare=False)  # the split nodes, set by lower
    present: list | None = None  # the item's branch index of each branch (None: every branch is there)
    shadows: dict = field(default_factory=dict, repr=False)  # item branch index -> steps of an absent branch
    out: tuple | None = None  # the shape it gives


@dataclass
class Absent:
    """An item whose ``if:`` was false: a named module (the attribute is None) or a group; the step
    is the identity. ``shape`` is the tensor's there; ``shadow`` what the item would have been, detached
    from the network (a Module, or a group's steps; None where it could not be expanded)."""

    name: str | None
    item: object
    shape: tuple | None = None
    shadow: object = field(default=None, repr=False)


@dataclass
class Group:
    """A conditional group whose condition held: one step per item of its body."""

    item: object
    steps: list


@dataclass
class Iteration:
    """One pass of a loop: the loop variables' values, its steps (one per body item) and the shape it reads."""

    values: dict
    steps: list
    shape: tuple | None = None


@dataclass
class Loop:
    """A ``repeat:`` or ``for:`` item: its iterations, and the shape after the last."""

    item: object
    iterations: list
    out: tuple | None = None


def flat_steps(steps: list):
    """The steps a body runs, constructs opened: a group's steps, each iteration's, a merge with one
    branch left as that branch (an absent item stays: it runs nothing)."""
    for step in steps:
        if isinstance(step, Group):
            yield from flat_steps(step.steps)
        elif isinstance(step, Loop):
            for it in step.iterations:
                yield from flat_steps(it.steps)
        elif isinstance(step, Merge) and len(step.branches) == 1 and step.split is None:
            yield from flat_steps(step.branches[0])
        else:
            yield step


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
        raise StructureError(f"{owner} takes at most {len(params)} positional argument{'s' if len(params) != 1 else ''} "
                             f"({', '.join(names) or 'none'}), got {len(call.args)}", loc)
    given = {}
    for (name, _, _), expr in zip(params, call.args):
        given[name] = expr
    for name, expr in call.kwargs:
        if name not in names:
            raise StructureError(f"{owner} has no argument '{name}' (expected {', '.join(names) or 'none'})", loc)
        if name in given:
            raise StructureError(f"{owner} got argument '{name}' twice", loc)
        given[name] = expr
    out = {}
    for name, type_, default in params:
        if name in given and type_ == "op":
            out[name] = op_argument(given[name], env, loc, f"argument '{name}' of {owner}")
        elif name in given:
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
            raise StructureError(f"{owner} is missing required argument '{name}'", loc)
        else:
            out[name] = default
    return out


def op_argument(expr, env: dict, loc: Loc, what: str) -> exprs.OpValue:
    """The value of an argument of type op: an op argument in scope (``act=act``), an op by its name
    (``act=hardswish``) or with attributes (``act=leaky_relu(0.2)``, evaluated here); its attributes
    checked as the op's catalog entry checks them."""
    if isinstance(expr, ast.Name) and isinstance(env.get(expr.id), exprs.OpValue):
        return env[expr.id]
    if isinstance(expr, ast.Name) and expr.id in env:
        raise ExpandError(f"{what} must be an op such as relu or leaky_relu(0.2), got {exprs.describe(env[expr.id])} "
                          f"(the argument '{expr.id}')", loc)
    if isinstance(expr, ast.Name):
        value = exprs.OpValue(expr.id)
    elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
        value = exprs.OpValue(expr.func.id, tuple(exprs.evaluate(a, env, loc, f" in {what}") for a in expr.args),
                              tuple((k.arg, exprs.evaluate(k.value, env, loc, f" in {what}")) for k in expr.keywords))
    else:
        raise ExpandError(f"{what} must be an op such as relu or leaky_relu(0.2), got '{ast.unparse(expr)}'", loc)
    problem = op_value_problem(value.name)
    if problem:
        raise ExpandError(f"{what}: {problem}", loc)
    op_attrs(value.call(loc), {})  # what the op's entry refuses, refused where the op is given
    return value


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
        self.iterations = 0
        self.too_large: ExpandError | None = None
        self.stack: list = []
        self.shape_error: ExpandError | None = None  # the first shape rule that failed (what a read size reports)
        # id(owner) -> (owner, {name: child}): duplicate names found in O(1), not by scanning the
        # children (quadratic for a model of 1,000 top-level layers). The owner is held so that its
        # id cannot be reused by another module while the expander lives.
        self.child_names: dict = {}

    # -- entry points --
    def model(self, env: dict, shape: tuple) -> Module:
        root = Module("", "", "model", self.r.name, dict(env), Loc(self.r.file, 1, 1), in_shape=shape, env=env)
        root.body, _ = self.steps(self.r.layers, env, root, "main", shape)
        return root

    # -- steps in a block (or the model) body: (steps, the shape after them) --
    def steps(self, items: list, env: dict, owner: Module, part: str, shape) -> tuple:
        out = []
        for item in items:
            try:
                step, shape = self.step(item, env, owner, part, shape)
            except ArchspecError as exc:
                self.failed(exc)
                shape = None  # what follows an error is not measured
                continue
            out.append(step)
        return out, shape

    def step(self, item, env: dict, owner: Module, part: str, shape) -> tuple:
        if isinstance(item, CallItem):
            return self.func(item, env, shape)
        if isinstance(item, NamedItem):
            name = self.item_name(item, env)
            self._check_unique(owner, name, item.loc, item)
            if item.cond is not None and not self.condition(item.cond, env, item.cond_loc or item.loc, f" of '{name}'"):
                return Absent(name, item, shape, self.shadow(lambda: self.named(item, env, owner, part, shape, name))), shape
            child = self.named(item, env, owner, part, shape, name)
            owner.children.append(child)
            self._names_of(owner)[child.name] = child
            return Apply(child), self.out_shape(child)
        if isinstance(item, MergeItem):
            return self.merge(item, env, owner, part, shape)
        return self.construct(item, env, shape, owner, lambda items, e, sh, o: self.steps(items, e, o, part, sh))

    def func(self, item: CallItem, env: dict, shape) -> tuple:
        name = item.call.name
        if isinstance(env.get(name), exprs.OpValue):
            raise StructureError(f"'{name}' is an argument of type op, a module class: in a body it needs a name "
                                 f"(write '- {name}: {name}'); in an nn.Sequential it is an entry", item.loc)
        if name in self.r.blocks:
            raise StructureError(f"block '{name}' needs a name here: write '- name: {item.call.text}'", item.loc)
        op = self.op(item.call)
        if op.stateful:
            raise StructureError(f"'{name}' has parameters or state and needs a name: write '- name: {item.call.text}'", item.loc)
        if op.function is None:
            raise StructureError(f"'{name}' can only be used as a named module here: write '- name: {item.call.text}'", item.loc)
        self._count(item.loc)
        attrs = op_attrs(item.call, env)
        return Func(name, attrs, item.loc, item.call, item), self.shape_of(name, [shape], attrs, item.loc, name)

    def construct(self, item, env: dict, shape, owner: Module, body) -> tuple:
        """A loop or a conditional group, in a body or an nn.Sequential (``body(items, env, shape,
        owner)`` expands a list of items into ``owner``)."""
        if isinstance(item, GroupItem):
            if self.condition(item.cond, env, item.cond_loc or item.loc, ""):
                steps, out = body(item.body, env, shape, owner)
                return Group(item, steps), out
            shadow = self.shadow(lambda: body(item.body, env, shape, _detached(owner))[0])
            return Absent(None, item, shape, shadow), shape
        if isinstance(item, (RepeatItem, ForItem)):
            return self.loop(item, env, shape, lambda items, e, sh: body(items, e, sh, owner))
        raise ExpandError("this item is not allowed here", getattr(item, "loc", None))

    def loop(self, item, env: dict, shape, body) -> tuple:
        """Each row (``for:``) or index (``repeat:``), the body expanded with its values in scope."""
        iterations = []
        rows = self.rows(item, env)
        for k, values in enumerate(rows):
            before = self.count
            self._iterate(item.loc)
            steps, out = body(item.body, {**env, **values}, shape)
            iterations.append(Iteration(values, steps, shape))
            shape = out
            if k == 0 and self.count + (self.count - before) * (len(rows) - 1) > MAX_MODULES:
                # every repetition adds as many layers as the first: refuse now, not 200,000 layers later
                self.count += (self.count - before) * (len(rows) - 1)
                self._count(item.loc)
        return Loop(item, iterations, shape), shape

    def rows(self, item, env: dict) -> list:
        """The loop variables' values, one dict per iteration."""
        names = item.names if isinstance(item, ForItem) else ((item.var,) if item.var else ())
        for name in names:
            if name in env:
                raise ExpandError(f"loop variable '{name}' hides {'an argument' if name not in INPUT_NAMES else 'the input size'} "
                                  f"of that name", item.loc)
        if isinstance(item, ForItem):
            if len(item.rows) > MAX_REPEAT:
                raise ExpandError(f"the table has {len(item.rows)} rows, over the limit of {MAX_REPEAT}", item.loc)
            return [dict(zip(item.names, (exprs.evaluate(c, env, item.loc, " in a for: row") for c in row)))
                    for row in item.rows]
        count = exprs.evaluate(item.count, env, item.loc, " in repeat")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ExpandError(f"repeat count must be a non-negative int, got {exprs.describe(count)}"
                              f"{exprs.float_hint(count, item.count)}", item.loc)
        if count > MAX_REPEAT:
            raise ExpandError(f"repeat count {count} is over the limit of {MAX_REPEAT}", item.loc)
        return [{item.var: i} if item.var else {} for i in range(count)]

    def condition(self, expr, env: dict, at: Loc, what: str) -> bool:
        value = exprs.evaluate(expr, env, at, " in if:")
        if not isinstance(value, bool):
            raise ExpandError(f"if:{what} must be a boolean, got {exprs.describe(value)} (write a comparison: n != 0)", at)
        return value

    def item_name(self, item: NamedItem, env: dict) -> str:
        """A named item's name; a template's, evaluated (``"layer{i + 1}"`` -> layer3)."""
        if item.template is None:
            return item.name
        parts = []
        for part in item.template:
            value = part if isinstance(part, str) else exprs.evaluate(part, env, item.loc, f" in the name '{item.name}'")
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ExpandError(f"the name '{item.name}' needs ints in its {{...}}, got {exprs.describe(value)}", item.loc)
            parts.append(str(value))
        name = "".join(parts)
        if not exprs.is_identifier(name) or name.startswith("__") or name in RESERVED:
            raise ExpandError(f"the name '{item.name}' gives '{name}', which cannot name a module", item.loc)
        return name

    # -- merges --
    def merge(self, item: MergeItem, env: dict, owner: Module, part: str, shape) -> tuple:
        self._count(item.loc)
        split = _split(item, env)
        branches, labels, present, shadows, outs = [], [], [], {}, []
        conds = item.conds or [None] * len(item.branches)
        for i, (br, cond) in enumerate(zip(item.branches, conds)):
            head = shape if split is None else self.shape_of("split", [shape], {"split": split, "index": i}, item.loc,
                                                                "split")
            if cond is not None and not self.condition(cond, env, item.loc, f" of branch {i + 1}"):
                shadows[i] = self.shadow(lambda: self.steps(br, env, _detached(owner), part, head)[0])
                continue
            steps, out = self.steps(br, env, owner, part, head)
            branches.append(steps)
            labels.append(_label(br, i))
            present.append(i)
            outs.append(out)
        step = Merge(item.kind, branches, labels, item.loc, item, split=split,
                     present=present if item.conds else None, shadows=shadows)
        if len(branches) == 1 and split is None:
            step.out = outs[0]  # one branch left: the branch alone
        else:
            step.out = self.shape_of(item.kind, outs, {}, item.loc, f"{item.kind} in {owner.path or 'the model'}")
        return step, step.out

    def _names_of(self, owner: Module) -> dict:
        entry = self.child_names.get(id(owner))
        if entry is None:
            entry = self.child_names[id(owner)] = (owner, {})
        return entry[1]

    def _check_unique(self, owner: Module, name: str, loc: Loc, item=None) -> None:
        child = self._names_of(owner).get(name)
        if child is not None:
            again = child.item is item and item is not None  # the same item, in the next iteration of a loop
            hint = (": a loop names its modules by a template over its variable, e.g. "
                    f"'{name}{{i}}' with as: i") if again else f" (first at line {child.item.loc.line if child.item else '?'})"
            raise ExpandError(f"duplicate module name '{name}' in {owner.path or 'the model'}{hint}", loc)

    # -- modules --
    def named(self, item: NamedItem, env: dict, owner: Module, part: str, shape=None, name: str | None = None) -> Module:
        name = name or item.name
        path = f"{owner.path}.{name}" if owner.path else name
        if item.seq is not None:
            return self.sequential(name, path, item.seq, env, part, item, shape)
        return self.instance(name, path, item.call, env, part, item, shape)

    def instance(self, name: str, path: str, call: exprs.Call, env: dict, part: str, item, shape=None) -> Module:
        self._count(call.loc)
        if isinstance(env.get(call.name), exprs.OpValue):  # an argument of type op: the op it holds here
            if call.args or call.kwargs:
                raise ExpandError(f"'{call.name}' is an argument of type op: use it without arguments (its "
                                  f"attributes come with the op it is given, e.g. leaky_relu(0.2))", call.loc)
            call = env[call.name].call(call.loc)
        if call.name in self.r.blocks:
            block = self.r.blocks[call.name]
            args = bind(call, [(a.name, a.type, a.default) for a in block.args], env, f"block {call.name}")
            if call.name in self.stack:
                chain = " -> ".join([*self.stack[self.stack.index(call.name):], call.name])
                raise ExpandError(f"block '{call.name}' uses itself: {chain}", call.loc)
            if len(self.stack) >= MAX_BLOCK_NESTING:
                raise ExpandError(f"blocks nested more than {MAX_BLOCK_NESTING} deep", call.loc)
            scope = {**args, **self.input_names(shape, call.name)}
            mod = Module(name, path, "block", call.name, args, call.loc, part, call, item, in_shape=shape, env=scope)
            self.stack.append(call.name)
            try:
                mod.body, mod.out_shape = self.steps(block.layers, scope, mod, part, shape)
            finally:
                self.stack.pop()
            return mod
        op = self.op(call)
        if op.module is None:  # no nn.Module to register (build would have nothing to write)
            raise ExpandError(f"'{call.name}' is a functional op only: write it without a name in a block's layers, "
                              "not as a named module or an nn.Sequential entry", call.loc)
        attrs = op_attrs(call, env)
        mod = Module(name, path, "op", call.name, attrs, call.loc, part, call, item, in_shape=shape)
        mod.out_shape = self.shape_of(call.name, [shape], attrs, call.loc, path)
        return mod

    def input_names(self, shape, block: str) -> dict:
        """``in_channels``, ``in_h``, ``in_w`` of a block instance's input (unknown after a shape
        error: reading one reports that error)."""
        if shape is None:
            return dict.fromkeys(INPUT_NAMES, exprs.Unknown())
        if len(shape) != 3:
            flat = exprs.Unknown(f"block {block} reads a {_dims(shape)} tensor, not a C x H x W map: it has no in_h "
                                 "and in_w")
            return {"in_channels": shape[0], "in_h": flat, "in_w": flat}
        return dict(zip(INPUT_NAMES, shape))

    def sequential(self, name: str, path: str, items: list, env: dict, part: str, item, shape=None) -> Module:
        seq = Module(name, path, "sequential", "Sequential", {}, item.loc if item else Loc("?"), part, None, item,
                     in_shape=shape)
        seq.body, seq.out_shape = self.seq_steps(items, env, seq, part, shape)
        return seq

    def seq_steps(self, items: list, env: dict, seq: Module, part: str, shape) -> tuple:
        out = []
        for sub in items:
            try:
                step, shape = self._seq_item(seq, sub, env, part, shape)
            except ArchspecError as exc:
                self.failed(exc)
                shape = None
                continue
            out.append(step)
        return out, shape

    def _seq_item(self, seq: Module, sub, env: dict, part: str, shape) -> tuple:
        i = str(len(seq.children))
        if isinstance(sub, NamedItem) and sub.name:  # a named entry: its name is the key (validate: all are)
            self._check_unique(seq, sub.name, sub.loc, sub)
            child = self.named(sub, env, seq, part, shape)
            self._names_of(seq)[sub.name] = child
            seq.children.append(child)
            return Apply(child), self.out_shape(child)
        path = f"{seq.path}.{i}" if seq.path else i
        if isinstance(sub, NamedItem) and sub.seq is not None:  # nested Sequential
            child = self.sequential(i, path, sub.seq, env, part, sub, shape)
        elif isinstance(sub, CallItem):
            if sub.call.name in OPS and OPS[sub.call.name].parameter:
                raise ExpandError(f"'{sub.call.name}' is a tensor of the module that owns it, not a module: it cannot be "
                                  "an nn.Sequential entry (write it as a named item of a block's layers)", sub.loc)
            child = self.instance(i, path, sub.call, env, part, sub, shape)
        elif isinstance(sub, (GroupItem, RepeatItem, ForItem)):
            return self.construct(sub, env, shape, seq, lambda items, e, sh, o: self.seq_steps(items, e, o, part, sh))
        else:
            raise ExpandError("only calls, lists, repeat:, for: and if: groups are allowed inside an nn.Sequential "
                              "list", getattr(sub, "loc", seq.loc))
        seq.children.append(child)
        return Apply(child), self.out_shape(child)

    def failed(self, exc: ArchspecError) -> None:
        """An item's error, recorded; one that read a size an earlier error left unknown reports the
        shape rule that failed (once), or nothing (the earlier error explains it)."""
        if self.too_large:
            raise self.too_large from None
        if isinstance(exc, exprs.Cascade):
            if self.shape_error is not None and self.shape_error not in self.errors:
                self.errors.append(self.shape_error)
            return
        self.errors.append(exc)

    # -- shapes --
    def shape_of(self, op: str, ins: list, attrs: dict, loc: Loc, where: str):
        """The op's output shape by its catalog rule; None when an input is unknown or the rule fails
        (the first failure is kept: a block that reads its input's size reports it)."""
        if any(s is None for s in ins):
            return None
        try:
            return tuple(OPS[op].shape([tuple(s) for s in ins], attrs))
        except OpShapeError as exc:
            if self.shape_error is None:
                self.shape_error = ExpandError(f"{where}: {exc}", loc)
            return None

    @staticmethod
    def out_shape(module: Module):
        return module.out_shape

    def shadow(self, build):
        """What an absent item would have been, expanded detached from the network (no names taken,
        nothing registered), for the code of configurations the spec does not instantiate; None when
        it cannot be expanded (the condition guarded an error; a ``StructureError`` is reported all the
        same). Counted against the bounds."""
        errors, names, self.errors, self.child_names = self.errors, self.child_names, [], {}
        shape_error = self.shape_error
        try:
            out = build()
            found = self.errors
        except ArchspecError as exc:
            if self.too_large:
                raise self.too_large from None
            out, found = None, [exc]
        finally:
            self.errors, self.child_names, self.shape_error = errors, names, shape_error
        # what no argument's value can make right is an error under a false condition too
        self.errors.extend(e for e in found if isinstance(e, StructureError) and e not in self.errors)
        return None if found else out

    def op(self, call: exprs.Call):
        if call.name not in OPS or call.name not in USER_OPS:
            names = sorted([*USER_OPS, *self.r.blocks])
            close = difflib.get_close_matches(call.name, names, n=1, cutoff=0.8)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise StructureError(f"unknown op or block '{call.name}' (known: {', '.join(names)}){hint}", call.loc)
        return OPS[call.name]

    def _count(self, loc: Loc) -> None:
        self.count += 1
        if self.count > MAX_MODULES:
            # one error for the whole network, not one per remaining module: expansion stops here
            self.too_large = ExpandError(f"the network has more than {MAX_MODULES} layers (modules and functional ops)", loc)
            raise self.too_large

    def _iterate(self, loc: Loc) -> None:
        self.iterations += 1
        if self.iterations > MAX_ITERATIONS:
            self.too_large = ExpandError(f"more than {MAX_ITERATIONS} loop iterations (repeat: and for:, nested "
                                         "loops multiplied)", loc)
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


def _detached(owner: Module) -> Module:
    """A stand-in for ``owner`` that an absent item's shadow registers into (its Sequential indices
    continue the owner's), so that nothing of the shadow reaches the network."""
    return Module(owner.name, owner.path, owner.kind, owner.type, owner.args, owner.loc, owner.part,
                  children=list(owner.children))


def _dims(shape) -> str:
    return " x ".join(map(str, shape))


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
    shape = tuple(input_shape) if input_shape else tuple(resolved.spec.input)
    model = ex.model(env, shape)
    aux_heads = []
    # the layers an aux head may read or follow: named items of the top level (not inside a group or a loop,
    # which the generated forward writes as blocks of their own)
    top = {step.module.name: step.module for step in model.body if isinstance(step, Apply)}
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
            head = ex.named(aux.module, env, model, aux.name, ex.out_shape(top[aux.source]))
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
    return Expanded(resolved, model, aux_heads, shape, env["num_classes"], env)
