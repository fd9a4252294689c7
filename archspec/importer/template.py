"""Templates: a module instance's body with each number (an op's attribute, a block call's
argument) in a ``Slot``, so that instances compare slot by slot (no torch).

Two templates with the same ``shape_of`` differ only in values that can be block arguments;
``walk`` visits the slots of a template in one fixed order, which is how a block's argument list,
its body's texts and its instances' values line up.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..ops import OPS, REQUIRED
from .ir import Fn, Merge, Mod, Param, Problem, Use

ARGABLE = ("int", "float", "bool", "size", "number", "size_or_none")
_ABBREV = {"out_channels": "out", "out_features": "out", "kernel_size": "k", "output_size": "size"}


@dataclass
class Slot:
    value: object
    type: str
    hint: str  # a name for it, should it become an argument: conv_stride
    default: object = REQUIRED
    text: str | None = None  # how it is written, once decided
    short: str = ""  # a shorter name, if no other argument takes it first: stride


@dataclass
class TCall:
    callee: object  # an op name, a Group or a stock block (stock.StockBlock)
    params: list  # [(name, Slot)]


@dataclass
class TSeq:
    entries: list
    names: tuple | None = None  # named entries (an OrderedDict's keys, RegNet's block1-0); None: numbered


@dataclass
class TMarked:
    problem: Problem


@dataclass
class TNamed:
    name: str
    value: object  # TCall, TSeq or TMarked
    cond: str | None = None


@dataclass
class TFn:
    value: object  # TCall or TMarked


@dataclass
class TMerge:
    kind: str
    split: object
    branches: list
    conds: list | None = None  # a condition per branch (None: always there), or None for none


@dataclass
class TOpt:
    """An entry of a Sequential that only some instances have: ``{if: cond, body: [value]}``."""

    value: object  # TCall or TSeq
    cond: str | None = None


# --- templates ------------------------------------------------------------------------------------

def lit(value) -> str:
    """A value as a spec writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, tuple):
        inner = ", ".join(lit(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def op_call(op, hint: str) -> TCall:
    spec = OPS[op.op]
    params = []
    for a in spec.attrs:
        short = _ABBREV.get(a.name, a.name)
        params.append((a.name, Slot(op.attrs[a.name], a.type, f"{hint}_{short}", a.default, short=short)))
    return TCall(op.op, params)


def walk(tree, fn):
    """The template with every Slot replaced by ``fn(slot)``, visited in one fixed order."""
    if isinstance(tree, list):
        return [walk(t, fn) for t in tree]
    if isinstance(tree, Slot):
        return fn(tree)
    if isinstance(tree, TCall):
        return replace(tree, params=[(n, walk(s, fn)) for n, s in tree.params])
    if isinstance(tree, TSeq):
        return replace(tree, entries=walk(tree.entries, fn))
    if isinstance(tree, (TNamed, TFn, TOpt)):
        return replace(tree, value=walk(tree.value, fn))
    if isinstance(tree, TMerge):
        return replace(tree, branches=[walk(b, fn) for b in tree.branches])
    return tree


def slots(tree) -> list:
    out: list = []
    walk(tree, lambda s: out.append(s) or s)
    return out


def _argable(slot: Slot) -> bool:
    return slot.type in ARGABLE and slot.value is not None and not isinstance(slot.value, str)


def shape_of(tree):
    """What must be equal for two templates to be one block: everything but argument-able values."""
    if isinstance(tree, list):
        return tuple(shape_of(t) for t in tree)
    if isinstance(tree, Slot):
        return ("slot", "arg") if _argable(tree) else ("slot", tree.type, repr(tree.value))
    if isinstance(tree, TCall):
        callee = tree.callee if isinstance(tree.callee, str) else ("block", id(tree.callee))
        return ("call", callee, tuple((n, shape_of(s)) for n, s in tree.params))
    if isinstance(tree, TSeq):
        return ("seq", tree.names, shape_of(tree.entries))
    if isinstance(tree, TNamed):
        return ("named", tree.name, shape_of(tree.value), tree.cond)
    if isinstance(tree, TFn):
        return ("fn", shape_of(tree.value))
    if isinstance(tree, TOpt):
        return ("opt", shape_of(tree.value), tree.cond)
    if isinstance(tree, TMerge):
        conds = tuple(tree.conds) if tree.conds else None
        return ("merge", tree.kind, repr(tree.split), tuple(shape_of(b) for b in tree.branches), conds)
    if isinstance(tree, TMarked):
        return ("marked", id(tree))
    return repr(tree)


class Templates:
    """Templates of module instances; ``calls`` holds each block instance's call once decided."""

    def __init__(self):
        self.calls: dict = {}  # id(Mod) -> TCall

    def items(self, body: list) -> list:
        out = []
        for it in body:
            if isinstance(it, Use):
                out.append(TNamed(it.name, self.value(it.mod, it.name)))
                out += [TFn(op_call(op, op.op)) for op in it.mod.after]  # BatchNormAct2d's activation
            elif isinstance(it, Param):
                out.append(TNamed(it.name, op_call(it.op, it.name)))
            elif isinstance(it, Fn):
                out.append(TFn(op_call(it.op, it.op.op) if it.op is not None else TMarked(it.problem)))
            elif isinstance(it, Merge):
                out.append(TMerge(it.kind, it.split, [self.items(b) for b in it.branches]))
        return out

    def value(self, mod: Mod, hint: str):
        if mod.kind == "op":
            return op_call(mod.op, hint)
        if mod.kind == "seq":
            return TSeq([self.value(e, f"{hint}_{i}") for i, e in enumerate(mod.entries)], mod.names)
        if mod.kind == "block":
            call = self.calls[id(mod)]
            return TCall(call.callee, [(n, replace(s, hint=f"{hint}_{n}", short=n)) for n, s in call.params])
        return TMarked(mod.problem)


def height(mod: Mod) -> int:
    """Blocks nested inside a block, counted through Sequentials and merges (an op: 0)."""
    if mod.kind == "seq":
        return max((height(e) for e in mod.entries), default=0)
    if mod.kind != "block":
        return 0
    return 1 + max((height(m) for m in children(mod.body)), default=0)


def children(body: list):
    for it in body:
        if isinstance(it, Use):
            yield it.mod
        elif isinstance(it, Merge):
            for b in it.branches:
                yield from children(b)


def instances(root: Mod, aux_mods: list) -> list:
    """Every block instance below the root (and the aux heads), in the order of the model."""
    out = []

    def visit(mod):
        if mod.kind == "block":
            for child in children(mod.body):
                visit(child)
            if mod is not root:
                out.append(mod)
        elif mod.kind == "seq":
            for e in mod.entries:
                visit(e)

    visit(root)
    for m in aux_mods:
        visit(m)
    return out


def tail_call(items: list):
    """The last conv or linear before a body's output (through Sequentials and parameterless
    ops), or None when a block, a merge or an unsupported part comes first."""
    for it in reversed(items):
        value = it.value if isinstance(it, (TNamed, TFn)) else None
        if isinstance(value, TSeq):
            return tail_call([TFn(e) for e in value.entries])
        if not isinstance(value, TCall) or not isinstance(value.callee, str):
            return None
        if OPS[value.callee].out_attr is not None:
            return value
    return None


def tail_slot(items: list):
    """The slot of the width ``tail_call`` gives, or None."""
    call = tail_call(items)
    return dict(call.params)[OPS[call.callee].out_attr] if call is not None else None
