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

import keyword
import re
from dataclasses import dataclass, field

from ..ops import OPS, REQUIRED
from .ir import Mod
from .template import Slot, TCall, Templates, children, height, instances, lit, shape_of, slots, tail_call
from .variants import HOLE, optionals, project, union


@dataclass
class Arg:
    name: str
    type: str
    default: object = REQUIRED


@dataclass(eq=False)
class Group:
    """One block definition: the instances of a class with one template shape (up to items only
    some of them have: variants.py)."""

    cls: str
    short: str
    members: list  # [(Mod, its template)]
    template: list  # the union of the members' templates
    args: list = field(default_factory=list)  # [Arg]
    texts: list = field(default_factory=list)  # how each slot of the template is written
    name: str = ""
    order: int = 0  # first appearance in the model


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


WIDTHS = {"out", "out_channels", "out_features", "num_features", "groups"}  # slots that hold a width


class Arguments:
    """The arguments of one group, slot by slot."""

    def __init__(self, members: list, classes: int | None = None):
        self.members = members  # [(Mod, [Slot])]
        self.classes = classes  # the slot that carries num_classes (the head's last linear), if any
        self.args: list = []
        self.vecs: dict = {}  # arg name -> its values, one per instance
        self.types: dict = {}  # arg name -> the slot types it fills
        self.defaults: dict = {}  # arg name -> the defaults of the slots it fills
        self.shorts: dict = {}  # arg name -> the kinds of slot it fills (out, stride, ...)
        self.taken: set = set()
        shorts = [s.short for s in members[0][1]]
        self.unique = {s for s in shorts if shorts.count(s) == 1}  # a short name says where only if unique
        inch = tuple(m.in_channels for m, _ in members)
        self.inch = inch if all(_positive(c) for c in inch) else None  # in_channels of each instance

    def text(self, j: int) -> str:
        col = [ps[j] for _, ps in self.members]
        vec = tuple(s.value for s in col)
        present = [v for v in vec if v is not HOLE]
        slot = next(s for s in col if s.value is not HOLE)
        if j == self.classes:  # num_classes, even where every instance has the same: it is the model's
            return self.add(Arg("num_classes", "int"), vec, slot)
        if len(present) < len(vec):  # inside an optional item: a width or stride of the block, not a constant
            text = self.reuse(vec, slot, alike=True)
            if text:
                return text
        if all(same(v, present[0]) for v in present):
            return lit(present[0])
        return self.varying(vec, present, slot)

    def varying(self, vec, present: list, slot: Slot) -> str:
        """A slot whose numbers differ between instances: in_channels, an argument, an expression."""
        if self.inch is not None and all(v is HOLE or same(v, c) for v, c in zip(vec, self.inch)):
            return "in_channels"  # the input's width, as a person writes a depthwise or residual width
        text = self.reuse(vec, slot) or self.derived(vec)
        if text is None and self.inch is not None and not self.carried(vec):  # in_channels * 6
            text = self.scaled(vec) or self.derived(vec, [("in_channels", self.inch)])
        return text or self.fresh(vec, present, slot)

    def scaled(self, vec) -> str | None:
        """``in_channels * expand_ratio``: the input's width times an int constructor parameter that
        differs between instances (variants merged: MobileNet v2's blocks with and without an
        expansion)."""
        for p in self.members[0][0].ctor:
            ps = tuple(m.ctor.get(p) for m, _ in self.members)
            if not all(_positive(x) for x in ps) or len(set(ps)) == 1:
                continue
            if all(v is HOLE or v == c * x for v, c, x in zip(vec, self.inch, ps)):
                if p in self.vecs and self.vecs[p] == ps:
                    return f"in_channels * {p}"
                if p in self.taken or identifier(p, self.taken) != p:
                    continue
                default = self.members[0][0].defaults.get(p, REQUIRED)
                self.add(Arg(p, "int", default if _positive(default) else REQUIRED), ps, Slot(ps[0], "int", p, short=p))
                return f"in_channels * {p}"
        return None

    def reuse(self, vec, slot: Slot, alike: bool = False) -> str | None:
        """An argument already taken that has the same numbers (where both are built); ``alike``:
        one that fills slots of the same kind (out_channels, stride) only."""
        for a in self.args:
            if alike and slot.short not in self.shorts[a.name]:
                continue
            if all(x is HOLE or y is HOLE or same(x, y) for x, y in zip(self.vecs[a.name], vec)):
                self.shorts[a.name].add(slot.short)
                self.types[a.name].add(slot.type)
                self.defaults[a.name].append(slot.default)
                return a.name
        return None

    def fresh(self, vec, present: list, slot: Slot) -> str:
        common = max(present, key=lambda v: sum(1 for p in present if same(p, v)))
        filled = tuple(common if v is HOLE else v for v in vec)  # an item not built takes any value
        name = self.ctor_name(vec) if len(present) < len(vec) else None
        if name is not None:  # ... and the constructor's, where a parameter carried the others
            filled = tuple(m.ctor[name] for m, _ in self.members)
        arg = self.new(slot, filled)
        if len(present) < len(vec) and arg.default is REQUIRED and name is None:
            arg.default = canon(common)  # so that the instances without the item need not give it
        return self.add(arg, filled, slot)

    def flag(self, hint: str, vec) -> str:
        """The bool argument that says whether an optional part is built."""
        for a in self.args:
            if a.type == "bool" and self.vecs[a.name] == vec:
                return a.name
        common = max((False, True), key=lambda v: (vec.count(v), v is False))
        arg = Arg(identifier(hint, self.taken), "bool", common)
        self.add(arg, vec, Slot(common, "bool", hint, common))
        return arg.name

    def ctor_flag(self, vec) -> str | None:
        """A bool constructor parameter that says whether the part is built (``project``)."""
        name = self.ctor_name(vec)
        if name is None:
            return None
        default = self.members[0][0].defaults.get(name, REQUIRED)
        return self.add(Arg(name, "bool", default if isinstance(default, bool) else REQUIRED), vec,
                        Slot(vec[0], "bool", name, REQUIRED))

    def condition(self, vec, own: str) -> str | None:
        """An expression over the arguments and in_channels true exactly where the part is built:
        a test of an argument the part's own numbers use (``expand_ratio != 1``), two widths equal
        (``in_channels == out``, with ``stride == 1 and`` where the block has a stride: a shortcut
        needs both), any argument against a value, then two of these together."""
        values = {a.name: self.vecs[a.name] for a in self.args
                  if a.type != "bool" and all(v is not HOLE for v in self.vecs[a.name])}
        atoms = self._atoms(values, vec, set(re.findall(r"\w+", own)))
        exact = [t for t, truth in atoms if truth == vec]
        if not exact:
            return _conjunction(atoms, vec)
        if re.fullmatch(r"\w+ == [A-Za-z_]\w*", exact[0]):  # a shortcut's widths: and its stride
            stride = next((n for n in values if "stride" in self.shorts[n]), None)
            if stride is not None and all(same(v, 1) for v, b in zip(values[stride], vec) if b):
                return f"{stride} == 1 and {exact[0]}"
        return exact[0]

    def _atoms(self, values: dict, vec, used: set) -> list:
        """The tests ``condition`` tries, in order: [(text, truth per instance)]."""
        widths = [("in_channels", self.inch)] if self.inch is not None else []
        widths += [(n, v) for n, v in values.items() if self.shorts[n] & WIDTHS and all(_positive(x) for x in v)]
        atoms = [t for n in values if n in used for t in _value_tests(n, values[n], vec)]
        atoms += _width_tests(widths)
        return atoms + [t for n in values if n not in used for t in _value_tests(n, values[n], vec)]

    def add(self, arg: Arg, vec, slot: Slot) -> str:
        self.taken.add(arg.name)
        self.args.append(arg)
        self.vecs[arg.name] = vec
        self.types[arg.name] = {slot.type}
        self.defaults[arg.name] = [slot.default]
        self.shorts[arg.name] = {slot.short}
        return arg.name

    def derived(self, vec, bases: list | None = None) -> str | None:
        """``planes * 4`` (ResNet's expansion), ``kernel // 2`` (a 'same' padding): another argument
        (or ``bases``: [(name, its values)]) and a constant."""
        if not all(v is HOLE or _positive(v) for v in vec):
            return None
        for name, values in bases if bases is not None else [(a.name, self.vecs[a.name]) for a in self.args]:
            pairs = [(v, b) for v, b in zip(vec, values) if v is not HOLE]
            if all(_positive(b) for _, b in pairs):
                for k in range(2, 65):
                    if all(v == b * k for v, b in pairs):
                        return f"{name} * {k}"
                    if all(v == b // k for v, b in pairs) and (k <= 8 or all(v * k == b for v, b in pairs)):
                        return f"{name} // {k}"
        return None

    def carried(self, vec) -> bool:
        """Whether a constructor parameter carried these numbers (then it names an argument)."""
        return self.ctor_name(vec) is not None

    def ctor_name(self, vec) -> str | None:
        for p in self.members[0][0].ctor:
            if p in self.taken or identifier(p, self.taken) != p:
                continue
            if all(p in m.ctor and (v is HOLE or same(m.ctor[p], v)) for (m, _), v in zip(self.members, vec)):
                return p
        return None

    def new(self, slot: Slot, vec) -> Arg:
        """Named after the constructor parameter that carried these numbers, else after the slot."""
        first = self.members[0][0]
        name = self.ctor_name(vec)
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
        ctor = list(self.members[0][0].ctor)
        ordered = sorted(self.args, key=lambda a: ctor.index(a.name) if a.name in ctor else len(ctor))  # as the class
        return [a for a in ordered if a.default is REQUIRED] + [a for a in ordered if a.default is not REQUIRED]


def _conjunction(atoms: list, vec) -> str | None:
    """Two tests, each true wherever the part is built, together true exactly there."""
    holds = [(t, truth) for t, truth in atoms if all(x for x, b in zip(truth, vec) if b)]
    for i, (p, pt) in enumerate(holds):
        for q, qt in holds[i + 1:]:
            if tuple(x and y for x, y in zip(pt, qt)) == vec:
                return f"{p} and {q}"
    return None


def _width_tests(widths: list) -> list:
    """``p == q`` and ``p != q`` for two widths: [(text, truth per instance)]."""
    out = []
    for i, (p, pv) in enumerate(widths):
        for q, qv in widths[i + 1:]:
            eq = tuple(same(x, y) for x, y in zip(pv, qv))
            out += [(f"{p} == {q}", eq), (f"{p} != {q}", tuple(not e for e in eq))]
    return out


def _value_tests(name: str, values, vec) -> list:
    """``name != v`` (v its value wherever the part is absent), ``name == v`` (wherever present)."""
    out = []
    for want, op in ((False, "!="), (True, "==")):
        seen = {canon(v) for v, b in zip(values, vec) if b is want}
        if len(seen) == 1 and isinstance(next(iter(seen)), (int, float, tuple)):
            v = next(iter(seen))
            truth = tuple((not same(x, v)) if op == "!=" else same(x, v) for x in values)
            out.append((f"{name} {op} {lit(v)}", truth))
    return out


def _positive(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


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
    projected = [(m, project(group.template, t)) for m, t in group.members]
    members = [(m, slots(t)) for m, (t, _) in projected]
    args = Arguments(members, _classes_slot(group, num_classes))
    group.texts = [args.text(j) for j in range(len(members[0][1]))]
    index = {id(s): j for j, s in enumerate(slots(group.template))}
    for k, (part, set_cond, hint) in enumerate(optionals(group.template)):
        vec = tuple(flags[k] for _, (_, flags) in projected)
        own = " ".join(group.texts[index[id(s)]] for s in slots(part))
        set_cond(args.ctor_flag(vec) or args.condition(vec, own) or args.flag(hint, vec))
    group.args = args.finish()
    for i, (m, _) in enumerate(members):
        params = [(a.name, Slot(args.vecs[a.name][i], a.type, a.name, a.default)) for a in group.args]
        calls[id(m)] = TCall(group, params)


def _classes_slot(group: Group, num_classes: int | None) -> int | None:
    """The index of the slot that gives the classes, in a block whose last op is a linear with
    num_classes outputs in every instance (a classifier head), else None."""
    call = tail_call(group.template)
    if num_classes is None or call is None or call.callee != "linear":
        return None
    tail = dict(call.params)["out_features"]
    j = next(i for i, s in enumerate(slots(group.template)) if s is tail)
    return j if all(slots(t)[j].value == num_classes for _, t in group.members) else None


def preorder(root: Mod, aux_mods: list) -> dict:
    """id(Mod) -> its position in the model, parents before children."""
    order: dict = {}
    stack = [root] + list(aux_mods)
    todo = list(reversed(stack))
    while todo:
        mod = todo.pop()
        order.setdefault(id(mod), len(order))
        kids = list(children(mod.body)) if mod.kind == "block" else list(mod.entries) if mod.kind == "seq" else []
        todo.extend(reversed(kids))
    return order


def build_groups(root: Mod, aux_mods: list, stock=None, num_classes: int | None = None) -> tuple:
    """(Templates with every block instance's call, the groups in order of appearance)."""
    t = Templates()
    mods = instances(root, aux_mods)
    order = preorder(root, aux_mods)
    groups = []
    for h in sorted({height(m) for m in mods}):
        level: list = []
        for m in (m for m in mods if height(m) == h):
            tmpl = t.items(m.body)
            matched = stock.match(tmpl, m) if stock is not None else None
            if matched is not None:
                t.calls[id(m)] = matched
            else:
                _join(level, m, tmpl, order)
        for g in level:
            define(g, t.calls, num_classes)
        groups += level
    return t, sorted(groups, key=lambda g: g.order)


def _join(groups: list, m: Mod, tmpl: list, order: dict) -> None:
    """Into the first group of its class whose template it can share, else a group of its own."""
    for g in groups:
        if g.cls == m.cls:
            u = tmpl if shape_of(tmpl) == shape_of(g.template) else union(g.template, tmpl)
            if u is not None:
                g.template = u
                g.members.append((m, tmpl))
                g.order = min(g.order, order.get(id(m), 0))
                return
    groups.append(Group(m.cls, m.short, [(m, tmpl)], tmpl, order=order.get(id(m), 0)))


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

