"""The structure a person would write, recovered from a traced model (no torch).

Every module instance is first written as a *template*: its body with each number (an op's
attribute, a block call's argument) in a ``Slot``. Instances of one class whose templates have the
same shape form a ``Group``, which becomes one block definition: a slot equal in every instance is
written as a literal, one that differs is an argument of the block (named after the constructor
parameter that carried it when the constructor's arguments are known, ``conv_out`` from where it
sits otherwise; one that is another argument times a constant is written as that expression). The
groups of one class with different shapes are variants (``Inception``, ``Inception2``). Blocks are
defined bottom up, so that a parent's template holds its children's block calls with their
arguments. Instances that match a stock library block (archspec/importer/stock.py) call it instead.
"""
from __future__ import annotations

import itertools
import keyword
import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace

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


@dataclass
class Arg:
    name: str
    type: str
    default: object = REQUIRED


@dataclass(eq=False)
class Group:
    """One block definition: the instances of a class with one template shape."""

    cls: str
    short: str
    members: list  # [(Mod, template items)]
    args: list = field(default_factory=list)  # [Arg]
    texts: list = field(default_factory=list)  # how each slot of the template is written
    name: str = ""
    order: int = 0  # first appearance in the model

    @property
    def template(self) -> list:
        return self.members[0][1]


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
    if isinstance(tree, (TNamed, TFn)):
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
        return ("seq", shape_of(tree.entries))
    if isinstance(tree, TNamed):
        return ("named", tree.name, shape_of(tree.value), tree.cond)
    if isinstance(tree, TFn):
        return ("fn", shape_of(tree.value))
    if isinstance(tree, TMerge):
        return ("merge", tree.kind, repr(tree.split), tuple(shape_of(b) for b in tree.branches))
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
            return TSeq([self.value(e, f"{hint}_{i}") for i, e in enumerate(mod.entries)])
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
    return 1 + max((height(m) for m in _children(mod.body)), default=0)


def _children(body: list):
    for it in body:
        if isinstance(it, Use):
            yield it.mod
        elif isinstance(it, Merge):
            for b in it.branches:
                yield from _children(b)


def instances(root: Mod, aux_mods: list) -> list:
    """Every block instance below the root (and the aux heads), in the order of the model."""
    out = []

    def visit(mod):
        if mod.kind == "block":
            for child in _children(mod.body):
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


# --- groups: block definitions and their arguments ------------------------------------------------

def same(a, b) -> bool:
    """Equal as spec values: a bool is no int, an int no float, a list a tuple, (3, 3) is 3."""
    a, b = canon(a), canon(b)
    return type(a) is type(b) and a == b


def canon(v):
    if isinstance(v, list):
        v = tuple(v)
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1] and all(isinstance(x, int) for x in v):
        return v[0]
    return v


def identifier(name: str, taken: set) -> str:
    """``name`` as an argument or block name a spec accepts, unique among ``taken``."""
    from ..validate import RESERVED

    base = re.sub(r"\W", "_", name).strip("_") or "arg"
    if base[0].isdigit():
        base = "n" + base
    out, i = base, 2
    while out in taken or out in RESERVED or out == "in_channels" or keyword.iskeyword(out):
        out, i = f"{base}_{i}", i + 1
    return out


class Arguments:
    """The arguments of one group, slot by slot."""

    def __init__(self, members: list, classes: int | None = None):
        self.members = members  # [(Mod, [Slot])]
        self.classes = classes  # the slot that carries num_classes (the head's last linear), if any
        self.args: list = []
        self.vecs: dict = {}  # arg name -> its values, one per instance
        self.types: dict = {}  # arg name -> the slot types it fills
        self.defaults: dict = {}  # arg name -> the defaults of the slots it fills
        self.taken: set = set()
        shorts = [s.short for s in members[0][1]]
        self.unique = {s for s in shorts if shorts.count(s) == 1}  # a short name says where only if unique

    def text(self, j: int) -> str:
        col = [ps[j] for _, ps in self.members]
        vec = tuple(s.value for s in col)
        if j == self.classes:  # num_classes, even where every instance has the same: it is the model's
            return self.add(Arg("num_classes", "int"), vec, col[0])
        if all(same(v, vec[0]) for v in vec):
            return lit(col[0].value)
        for a in self.args:  # the same numbers as an argument already taken
            if all(same(x, y) for x, y in zip(self.vecs[a.name], vec)):
                self.types[a.name].add(col[0].type)
                self.defaults[a.name].append(col[0].default)
                return a.name
        derived = self.derived(vec)
        if derived:
            return derived
        return self.add(self.new(col[0], vec), vec, col[0])

    def add(self, arg: Arg, vec, slot: Slot) -> str:
        self.taken.add(arg.name)
        self.args.append(arg)
        self.vecs[arg.name] = vec
        self.types[arg.name] = {slot.type}
        self.defaults[arg.name] = [slot.default]
        return arg.name

    def derived(self, vec) -> str | None:
        """``planes * 4`` (ResNet's expansion), ``width // 2``: another argument times a constant."""
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vec):
            return None
        for a in self.args:
            base = self.vecs[a.name]
            if not all(isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in base):
                continue
            for k in range(2, 65):
                if all(v == b * k for v, b in zip(vec, base)):
                    return f"{a.name} * {k}"
                if all(v * k == b for v, b in zip(vec, base)):
                    return f"{a.name} // {k}"
        return None

    def new(self, slot: Slot, vec) -> Arg:
        """Named after the constructor parameter that carried these numbers, else after the slot."""
        name = None
        first = self.members[0][0]
        for p in first.ctor:
            if p in self.taken or identifier(p, self.taken) != p:
                continue
            if all(p in m.ctor and same(m.ctor[p], v) for (m, _), v in zip(self.members, vec)):
                name = p
                break
        type_ = "size" if slot.type == "size_or_none" else slot.type
        default = REQUIRED
        if name is not None and name in first.defaults and fits(first.defaults[name], type_):
            default = canon(first.defaults[name])
        if name is None and slot.short in self.unique and identifier(slot.short, self.taken) == slot.short:
            name = slot.short
        return Arg(name or identifier(slot.hint, self.taken), type_, default)

    def finish(self) -> list:
        """Types settled (an int slot makes the argument an int), required arguments first."""
        for a in self.args:
            kinds = self.types[a.name]
            if "int" in kinds and all(isinstance(v, int) for v in self.vecs[a.name]):
                a.type = "int"
            ds = self.defaults[a.name]
            if a.default is REQUIRED and ds[0] is not REQUIRED and all(same(d, ds[0]) for d in ds):
                a.default = canon(ds[0])  # where the op (or block) has a default, so has the argument
            if a.default is not REQUIRED and not fits(a.default, a.type):
                a.default = REQUIRED
        return [a for a in self.args if a.default is REQUIRED] + [a for a in self.args if a.default is not REQUIRED]


def fits(value, type_: str) -> bool:
    value = canon(value)
    if type_ == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or value is None:
        return False
    if type_ == "int":
        return isinstance(value, int)
    if type_ in ("float", "number"):
        return isinstance(value, (int, float))
    if type_ == "size":
        return isinstance(value, int) or (isinstance(value, tuple) and len(value) == 2
                                          and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
    return False


def define(group: Group, calls: dict, num_classes: int | None = None) -> None:
    """The group's arguments, how each slot is written, and each instance's call."""
    members = [(m, slots(t)) for m, t in group.members]
    args = Arguments(members, _classes_slot(group, members, num_classes))
    group.texts = [args.text(j) for j in range(len(members[0][1]))]
    group.args = args.finish()
    for m, _ in members:
        i = next(k for k, (mm, _) in enumerate(members) if mm is m)
        params = [(a.name, Slot(args.vecs[a.name][i], a.type, a.name, a.default)) for a in group.args]
        calls[id(m)] = TCall(group, params)


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


def _classes_slot(group: Group, members: list, num_classes: int | None) -> int | None:
    """The index of the slot that gives the classes, in a block whose last op is a linear with
    num_classes outputs in every instance (a classifier head), else None."""
    call = tail_call(group.template)
    if num_classes is None or call is None or call.callee != "linear":
        return None
    tail = dict(call.params)["out_features"]
    j = next(i for i, s in enumerate(members[0][1]) if s is tail)
    return j if all(ps[j].value == num_classes for _, ps in members) else None


def preorder(root: Mod, aux_mods: list) -> dict:
    """id(Mod) -> its position in the model, parents before children."""
    order: dict = {}
    stack = [root] + list(aux_mods)
    todo = list(reversed(stack))
    while todo:
        mod = todo.pop()
        order.setdefault(id(mod), len(order))
        kids = list(_children(mod.body)) if mod.kind == "block" else list(mod.entries) if mod.kind == "seq" else []
        todo.extend(reversed(kids))
    return order


def build_groups(root: Mod, aux_mods: list, stock=None, num_classes: int | None = None) -> tuple:
    """(Templates with every block instance's call, the groups in order of appearance)."""
    t = Templates()
    mods = instances(root, aux_mods)
    order = preorder(root, aux_mods)
    groups = []
    for h in sorted({height(m) for m in mods}):
        buckets: OrderedDict = OrderedDict()
        for m in (m for m in mods if height(m) == h):
            tmpl = t.items(m.body)
            matched = stock.match(tmpl, m) if stock is not None else None
            if matched is not None:
                t.calls[id(m)] = matched
                continue
            buckets.setdefault((m.cls, shape_of(tmpl)), []).append((m, tmpl))
        for members in buckets.values():
            g = Group(members[0][0].cls, members[0][0].short, members,
                      order=min(order.get(id(m), 0) for m, _ in members))
            define(g, t.calls, num_classes)
            groups.append(g)
    return t, sorted(groups, key=lambda g: g.order)


def name_groups(groups: list, taken: set) -> None:
    """Block names from class names; variants of one class numbered in order of appearance."""
    counts: dict = {}
    for g in groups:
        base = identifier(g.short, set())
        if base in OPS or base[0].islower() and base in taken:
            base = base + "Block"
        n = counts.get(base, 0) + 1
        counts[base] = n
        name = base if n == 1 else f"{base}{n}"
        while name in taken:
            n += 1
            name = f"{base}{n}"
        g.name = name
        taken.add(name)


# --- rendering: templates -> YAML data -----------------------------------------------------------

class Marked:
    """An item that could not be imported (--partial): ``identity`` with the reason beside it."""

    def __init__(self, problem: Problem):
        self.problem = problem


def fill(tree, texts: list | None = None):
    """Slot texts: the group's (a block body), else each value as a literal (the model's layers)."""
    counter = itertools.count()

    def text(s: Slot) -> Slot:
        j = next(counter)
        return replace(s, text=texts[j] if texts is not None else (s.text or lit(s.value)))

    return walk(tree, text)


def call_text(call: TCall) -> str:
    callee = call.callee
    if isinstance(callee, str):
        attrs = OPS[callee].attrs
        parts, keywords = [], False
        for a, (name, s) in zip(attrs, call.params):
            if a.default is not REQUIRED and s.text == lit(a.default):
                keywords = True
                continue
            if (a.default is REQUIRED or len(attrs) == 1) and not keywords:
                parts.append(s.text)
            else:
                keywords = True
                parts.append(f"{name}={s.text}")
        return f"{callee}({', '.join(parts)})" if parts else callee
    return block_call(callee.name, callee.args, {n: s.text for n, s in call.params})


def block_call(name: str, args: list, texts: dict) -> str:
    required = [a for a in args if a.default is REQUIRED]
    all_positional = len(required) >= 4
    parts, keywords = [], False
    for i, a in enumerate(args):
        text = texts[a.name]
        if a.default is not REQUIRED and text == lit(a.default):
            keywords = True
            continue
        positional = a.default is REQUIRED and (all_positional or (i == 0 and (len(args) > 1 or text == a.name)))
        if positional and not keywords:
            parts.append(text)
        else:
            keywords = True
            parts.append(f"{a.name}={text}")
    return f"{name}({', '.join(parts)})" if parts else name


def render_items(items: list) -> list:
    return [render_item(it) for it in items]


def render_item(it):
    if isinstance(it, TNamed):
        out = {it.name: render_value(it.value)}
        if it.cond is not None:
            out["if"] = it.cond
        return out
    if isinstance(it, TFn):
        return render_value(it.value)
    merged = {it.kind: [_branch(b) for b in it.branches]}
    if it.split is not None:
        merged["split"] = list(it.split) if isinstance(it.split, tuple) else it.split
    return merged


def _branch(b: list):
    if len(b) == 1 and isinstance(b[0], TNamed):
        return render_item(b[0])
    return render_items(b)


def render_value(v):
    if isinstance(v, TCall):
        return call_text(v)
    if isinstance(v, TSeq):
        return runs([render_value(e) for e in v.entries])
    return Marked(v.problem)


def runs(entries: list) -> list:
    """Consecutive repeats of one or more entries as ``{repeat: N, body: [...]}`` (the numbering is
    unchanged: a repeat unrolls in place)."""
    out, i = [], 0
    while i < len(entries):
        best = (1, 1)  # (length, count)
        for length in range(1, min(8, (len(entries) - i) // 2) + 1):
            body = entries[i:i + length]
            count = 1
            while entries[i + count * length:i + (count + 1) * length] == body:
                count += 1
            if count > 1 and length * count > best[0] * best[1]:
                best = (length, count)
        length, count = best
        if count > 1 and not any(isinstance(e, Marked) for e in entries[i:i + length]):
            out.append({"repeat": count, "body": entries[i:i + length]})
        else:
            length, count = 1, 1
            out.append(entries[i])
        i += length * count
    return out
