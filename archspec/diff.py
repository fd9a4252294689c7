"""diff: two compiled specs -> the changes between them, grouped, with exact deltas.

The two module trees are walked together. Registered modules are matched by path (a named
attribute by its name, an ``nn.Sequential`` entry by position); functional ops and merges are
aligned in order inside their module. Where the two bodies part ways, the stretch is cut at the
points where both sides produce the same tensor (same shape and receptive field): a stretch that
ends at such a point is a rewrite (``5x5 conv -> two 3x3``), reported as one *replaced* change.
A removed and an added module with the same structure are a *renamed* module.

Each change is one fact about one place: ``conv2d kernel 5x5 -> 3x3, padding 2 -> 1`` at
``inception3a.branch3.1.conv``. A leaf whose attributes differ in several independent ways gives
one change per way (geometry, bias, ...), and its parameter and MAC delta is split between them by
re-evaluating the op catalog step by step, so that the deltas of all changes add up to the
difference of the totals. Identical facts at several places form a group, which the report shows
as one line with its locations.

MACs follow the analysis convention (conv + linear multiply-adds, batch 1, eval); changes inside
aux heads move training-time MACs only and are marked as such.
"""
from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass, field

from .expand import Apply, Func, Merge, Module
from .ops import OPS, REQUIRED, OpShapeError

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2

# How attributes are named in a change, and which ones change together.
_ATTR_NAMES = {"kernel_size": "kernel", "out_channels": "channels", "out_features": "features",
               "output_size": "output size", "p": "rate"}
_GEOMETRY = ("kernel_size", "padding", "dilation")
_SQUARE = ("kernel_size", "output_size")  # shown as HxW even when square
_CHANNELS = ("out_channels", "out_features")
_POOLS = {"maxpool2d": "max", "avgpool2d": "avg", "adaptive_maxpool2d": "adaptive max",
          "adaptive_avgpool2d": "adaptive avg"}
_KINDS = ("changed", "replaced", "removed", "added", "renamed")


# --- values as a person writes them -----------------------------------------------------------

def _fmt(value, name: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        if len(value) == 2 and name in _SQUARE + _GEOMETRY + ("stride",):
            return f"{value[0]}x{value[1]}"
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    if isinstance(value, int) and name in _SQUARE:
        return f"{value}x{value}"
    return repr(value) if isinstance(value, float) else str(value)


def _shape(shape) -> list | None:
    return [1, *shape] if shape is not None else None


def _shape_text(shape) -> str:
    return str(_shape(shape)) if shape is not None else "--"


def _n(v: int) -> str:
    return f"{v:,}"


def _signed(v: int) -> str:
    return f"{v:+,}" if v else "0"


def call_text(op: str, attrs: dict, drop=()) -> str:
    """An op call in the spec's own syntax, defaults left out: ``maxpool2d(3, stride=2, ceil_mode=true)``."""
    spec = OPS[op]
    args, positional = [], True
    for a in spec.attrs:
        if a.name in drop or a.name not in attrs:
            if a.name in drop:
                positional = False
            continue
        value = attrs[a.name]
        if a.default is REQUIRED and positional:
            args.append(_fmt(value))
            continue
        positional = False
        if a.default is REQUIRED or value != a.default:
            args.append(f"{a.name}={_fmt(value)}")
    return f"{op}({', '.join(args)})" if args else op


def short_op(op: str, attrs: dict) -> str:
    """A channel-free description used to group the same change at several places: ``conv2d 5x5/2``."""
    if op in ("conv2d", "maxpool2d", "avgpool2d"):
        k = _fmt(attrs["kernel_size"], "kernel_size")
        stride = attrs.get("stride")
        text = f"{op} {k}" + (f"/{_fmt(stride)}" if stride not in (None, 1, attrs["kernel_size"]) else "")
        extra = [f"{n}={_fmt(attrs[n])}" for n in ("dilation", "groups") if attrs.get(n, 1) != 1]
        return text + (f" ({', '.join(extra)})" if extra else "")
    if op.startswith("adaptive"):
        return f"{op} {_fmt(attrs['output_size'], 'output_size')}"
    return call_text(op, attrs, drop=_CHANNELS)


# --- the walk ---------------------------------------------------------------------------------

@dataclass
class Unit:
    """One step of a module's forward: a registered module, a functional op or a merge."""

    kind: str  # module | func | merge
    path: str  # module path, or the graph node of a functional op / merge
    op: str  # op or block type ("Sequential"), or the merge kind
    args: dict
    node: str  # graph node holding its output
    part: str
    named: bool = True  # a named attribute (False: an nn.Sequential entry or a functional op)
    module: Module | None = None
    branches: list = field(default_factory=list)  # merge: unit lists
    labels: list = field(default_factory=list)

    @property
    def leaf(self) -> bool:
        return self.kind == "func" or (self.kind == "module" and self.module.kind == "op")


class _Side:
    """One compiled spec, seen unit by unit."""

    def __init__(self, compiled):
        self.c = compiled
        self.g = compiled.graph
        self.mods = compiled.analysis.modules
        self._units: dict = {}
        self._sigs: dict = {}
        self.blocks = compiled.resolved.blocks

    # Graph node names of functional ops and merges, as lowering gives them: owner/op, owner/op_1 ...
    def units(self, owner: Module) -> list:
        if owner.path not in self._units:
            counters: dict = {}
            self._units[owner.path] = self._steps(owner, owner.body, counters)
        return self._units[owner.path]

    def _fresh(self, owner: Module, stem: str, counters: dict) -> str:
        n = counters.get(stem, 0)
        counters[stem] = n + 1
        base = f"{owner.path}/{stem}" if owner.path else f"/{stem}"
        node = base if n == 0 else f"{base}_{n}"
        if node not in self.g:  # lowering names nodes differently: a bug here, not the user's
            raise RuntimeError(f"diff: no graph node '{node}'")
        return node

    def _steps(self, owner: Module, steps: list, counters: dict) -> list:
        out = []
        for step in steps:
            if isinstance(step, Apply):
                out.append(self.module_unit(step.module, named=owner.kind != "sequential"))
            elif isinstance(step, Func):
                node = self._fresh(owner, step.op, counters)
                out.append(Unit("func", node, step.op, step.attrs, node, owner.part, named=False))
            elif isinstance(step, Merge):
                branches = [self._steps(owner, br, counters) for br in step.branches]
                node = self._fresh(owner, step.kind, counters)
                out.append(Unit("merge", node, step.kind, {}, node, owner.part, named=False,
                                branches=branches, labels=list(step.labels)))
        return out

    def module_unit(self, m: Module, named: bool = True) -> Unit:
        entry = self.g.graph["modules"][m.path]
        return Unit("module", m.path, m.type, m.args, entry["output"], m.part, named, m)

    # --- what a unit is and what it costs ---
    def params(self, u: Unit) -> int:
        return self._cost(u, "params")

    def macs(self, u: Unit) -> int:
        return self._cost(u, "macs")

    def _cost(self, u: Unit, key: str) -> int:
        if u.kind == "module":
            return self.mods[u.path][key]
        inside = sum(self._cost(x, key) for br in u.branches for x in br)  # a merge costs its branches
        return inside + self.g.nodes[u.node][key]

    def out_shape(self, u: Unit):
        return self.g.nodes[u.node]["shape"]

    def in_shape(self, u: Unit):
        if u.kind == "module":
            return self.mods[u.path]["input_shape"]
        return self.g.nodes[self.g.nodes[u.node]["inputs"][0]]["shape"]

    def cut(self, u: Unit, start: str) -> tuple:
        """What a step hands on, measured from the stretch's input node ``start``: the shape and
        the growth of the receptive field (so that changes upstream do not hide a match)."""
        d, s = self.g.nodes[u.node], self.g.nodes[start]
        rh, rw, jh, jw = d["rf"]
        sh, sw, sjh, sjw = s["rf"]
        return (d["shape"], rh - sh, rw - sw, jh / sjh, jw / sjw)

    def entry(self, u: Unit) -> str:
        """The node a step reads."""
        if u.kind == "module":
            return self.g.graph["modules"][u.path]["input"]
        if u.kind == "merge":
            for br in u.branches:
                if br:
                    return self.entry(br[0])
        return self.g.nodes[u.node]["inputs"][0]

    def sig(self, m: Module):
        """The structure of a module, its own name left out (renames keep it)."""
        key = id(m)
        if key not in self._sigs:
            if m.kind == "op":
                s = ("op", m.type, _frozen(m.args))
            else:
                s = (m.kind, m.type if m.kind == "block" else "", tuple(self._step_sig(st) for st in m.body))
            self._sigs[key] = s
        return self._sigs[key]

    def _step_sig(self, step):
        if isinstance(step, Apply):
            return (step.module.name, self.sig(step.module))
        if isinstance(step, Func):
            return ("f", step.op, _frozen(step.attrs))
        if isinstance(step, Merge):
            return ("m", step.kind, tuple(tuple(self._step_sig(s) for s in br) for br in step.branches))
        return ("absent",)

    def unit_sig(self, u: Unit):
        if u.kind == "module":
            return self.sig(u.module)
        if u.kind == "func":
            return ("f", u.op, _frozen(u.args))
        return ("m", u.op, tuple(tuple(self.unit_sig(x) for x in br) for br in u.branches))

    # --- words ---
    def text(self, u: Unit) -> str:
        """Exact description, channels included: ``BasicConv2d(32, k=5, p=2)``."""
        return self.describe(u, exact=True)

    def abstract(self, u: Unit) -> str:
        """Channel-free description, to group the same change at places of different widths."""
        return self.describe(u, exact=False)

    def describe(self, u: Unit, exact: bool) -> str:
        if u.kind == "merge":
            return f"{u.op} of {len(u.branches)} branches"
        if u.leaf:
            return call_text(u.op, u.args) if exact else short_op(u.op, u.args)
        m = u.module
        if not exact:
            core = [short_op(x.type, x.args) for x in m.walk() if x.kind == "op" and _core(x.type)]
            return f"{m.type}({', '.join(core)})" if 0 < len(core) <= 3 else m.type
        if m.kind == "sequential":
            inner = [self.text(c) for c in self.units(m)]
            return "Sequential(" + ", ".join(_runs(inner)) + ")" if len(inner) <= 4 else f"Sequential({len(inner)} modules)"
        return self._block_call(m)

    def _block_call(self, m: Module) -> str:
        block = self.blocks.get(m.type)
        if block is None:
            return m.type
        args = []
        for i, a in enumerate(block.args):  # the first argument positional, as specs write them
            value = m.args.get(a.name)
            if i == 0 and a.required:
                args.append(_fmt(value))
            elif a.required or value != a.default:
                args.append(f"{a.name}={_fmt(value)}")
        return f"{m.type}({', '.join(args)})"


def _core(op: str) -> bool:
    return OPS[op].weight_layer or op in _POOLS


def _frozen(args: dict) -> tuple:
    return tuple(sorted(args.items()))


def _runs(texts: list) -> list:
    """['a', 'a', 'b'] -> ['2 x a', 'b']."""
    out = []
    for t in texts:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return [t if n == 1 else f"{n} x {t}" for t, n in out]


# --- changes ----------------------------------------------------------------------------------

@dataclass
class Change:
    """One fact about one place."""

    kind: str  # changed | replaced | removed | added | renamed
    summary: str  # exact words, channels included
    key: str  # words without per-place numbers: changes with the same key are grouped
    a: list  # on side A: [{path, type, text, output_shape, params, macs}], one per module or op
    b: list
    part: str
    params_delta: int = 0
    macs_delta: int = 0
    attrs: list = field(default_factory=list)  # [(attribute, value in A, value in B)]

    @property
    def location(self) -> str:
        pa = self.a[0]["path"] if self.a else None
        pb = self.b[0]["path"] if self.b else None
        if self.kind == "renamed":
            return f"{pa} -> {pb}"
        if self.kind == "replaced":
            a, b = [s["path"] for s in self.a], [s["path"] for s in self.b]
            return _span(b) if set(a) <= set(b) else f"{_span(a)} -> {_span(b)}"
        return pb if pb is not None else pa

    def to_json(self) -> dict:
        return {
            "kind": self.kind, "summary": self.summary, "location": self.location, "part": self.part,
            "attrs": [{"name": n, "a": _json_value(x), "b": _json_value(y)} for n, x, y in self.attrs],
            "params_delta": self.params_delta, "macs_delta": self.macs_delta,
            "a": self.a, "b": self.b,
        }


def _span(paths: list) -> str:
    folded = compact(paths)
    return folded[0] if len(folded) == 1 else ", ".join(paths)


def _json_value(v):
    if isinstance(v, tuple):
        return [_json_value(x) for x in v]
    return v


@dataclass
class Group:
    kind: str
    key: str
    changes: list

    @property
    def summary(self) -> str:
        texts = {c.summary for c in self.changes}
        return self.changes[0].summary if len(texts) == 1 else self.key

    @property
    def params_delta(self) -> int:
        return sum(c.params_delta for c in self.changes)

    @property
    def macs_delta(self) -> int:
        return sum(c.macs_delta for c in self.changes)

    @property
    def parts(self) -> list:
        return list(dict.fromkeys(c.part for c in self.changes))

    @property
    def locations(self) -> list:
        return list(dict.fromkeys(c.location for c in self.changes))

    def compact_locations(self) -> list:
        if self.kind == "renamed":
            a = compact([c.a[0]["path"] for c in self.changes])
            b = compact([c.b[0]["path"] for c in self.changes])
            if len(a) == 1 and len(b) == 1 and len(self.changes) > 1:
                return [f"{a[0]} -> {b[0]}"]
            return self.locations
        return compact(self.locations)

    def output_change(self) -> str | None:
        """'[1, 32, 28, 28] -> [1, 48, 28, 28]' when every place changes its output the same way."""
        pairs = set()
        for c in self.changes:
            if c.kind != "changed" or not c.a or not c.b:
                return None
            pairs.add((tuple(c.a[-1]["output_shape"] or ()), tuple(c.b[-1]["output_shape"] or ())))
        if len(pairs) != 1:
            return "output shapes change" if any(x != y for x, y in pairs) else None
        (x, y), = pairs
        return None if x == y else f"output {list(x)} -> {list(y)}"

    def to_json(self) -> dict:
        return {"kind": self.kind, "summary": self.summary, "count": len(self.changes),
                "locations": self.compact_locations(), "parts": self.parts,
                "params_delta": self.params_delta, "macs_delta": self.macs_delta,
                "changes": [c.to_json() for c in self.changes]}


class _Differ:
    def __init__(self, a, b):
        self.A, self.B = _Side(a), _Side(b)
        self.changes: list = []

    # --- records ---
    def _side(self, side: _Side, units: list) -> list:
        return [{"path": u.path, "type": u.op, "text": side.text(u), "output_shape": _shape(side.out_shape(u)),
                 "params": side.params(u), "macs": side.macs(u)} for u in units]

    def emit(self, kind, summary, key, ua: list, ub: list, params_delta=None, macs_delta=None, attrs=()):
        part = (ub or ua)[0].part
        if params_delta is None:
            params_delta = sum(self.B.params(u) for u in ub) - sum(self.A.params(u) for u in ua)
        if macs_delta is None:
            macs_delta = sum(self.B.macs(u) for u in ub) - sum(self.A.macs(u) for u in ua)
        self.changes.append(Change(kind, summary, key, self._side(self.A, ua), self._side(self.B, ub), part,
                                   params_delta, macs_delta, list(attrs)))

    def removed(self, u: Unit) -> None:
        self.emit("removed", self.A.text(u), self.A.abstract(u), [u], [])

    def added(self, u: Unit) -> None:
        self.emit("added", self.B.text(u), self.B.abstract(u), [], [u])

    def replaced(self, ua: list, ub: list) -> None:
        exact = f"{', '.join(_runs([self.A.text(u) for u in ua]))} -> {', '.join(_runs([self.B.text(u) for u in ub]))}"
        key = f"{', '.join(_runs([self.A.abstract(u) for u in ua]))} -> {', '.join(_runs([self.B.abstract(u) for u in ub]))}"
        self.emit("replaced", exact, key, ua, ub)

    # --- walking ---
    def run(self):
        ea, eb = self.A.c.expanded, self.B.c.expanded
        if tuple(ea.input) != tuple(eb.input):
            side = lambda shape: [{"path": "input", "type": "input", "text": "x".join(map(str, shape)),  # noqa: E731
                                   "output_shape": _shape(shape), "params": 0, "macs": 0}]
            self.changes.append(Change("changed", f"input {_shape_text(ea.input)} -> {_shape_text(eb.input)}",
                                       "input size", side(ea.input), side(eb.input), "main", 0, 0,
                                       [("input", tuple(ea.input), tuple(eb.input))]))
        self.align(self.A.units(ea.model), self.B.units(eb.model))
        self.aux_heads()
        self.find_renames()
        return self.changes

    def container(self, ma: Module, mb: Module) -> None:
        if ma.kind == "block" and mb.kind == "block" and ma.type != mb.type:
            ua, ub = self.A.module_unit(ma), self.B.module_unit(mb)
            words = f"block type {ma.type} -> {mb.type}"
            self.emit("changed", words, words, [ua], [ub],
                      0, 0, [("type", ma.type, mb.type)])
        self.align(self.A.units(ma), self.B.units(mb))

    def align(self, ua: list, ub: list) -> None:
        ka = [self._key(self.A, u) for u in ua]
        kb = [self._key(self.B, u) for u in ub]
        actions = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
            if tag == "equal":
                actions.extend(("pair", x, y) for x, y in zip(ua[i1:i2], ub[j1:j2]))
            else:
                actions.extend(self.region(ua[i1:i2], ub[j1:j2]))
        # A named module that moved within its owner is the same module.
        gone = {a.module.name: i for i, (t, a, *_) in enumerate(actions) if t == "remove" and a.kind == "module" and a.named}
        for j, act in enumerate(actions):
            if act[0] == "add" and act[1].kind == "module" and act[1].named and act[1].module.name in gone:
                i = gone.pop(act[1].module.name)
                actions[j] = ("pair", actions[i][1], act[1])
                actions[i] = ("skip",)
        for act in actions:
            if act[0] == "pair":
                self.pair(act[1], act[2])
            elif act[0] == "replace":
                self.replaced(act[1], act[2])
            elif act[0] == "remove":
                self.removed(act[1])
            elif act[0] == "add":
                self.added(act[1])

    def _key(self, side: _Side, u: Unit):
        if u.kind == "module" and u.named:
            return ("name", u.module.name)
        if u.kind == "merge":
            return ("merge", u.op, len(u.branches))
        return ("sig", side.unit_sig(u))

    def region(self, ra: list, rb: list) -> list:
        """A stretch where the two bodies differ, cut where both produce the same tensor."""
        if not ra or not rb:
            return [("remove", u) for u in ra] + [("add", u) for u in rb]
        sa, sb = self.A.entry(ra[0]), self.B.entry(rb[0])
        ka = [self.A.cut(u, sa) for u in ra]
        kb = [self.B.cut(u, sb) for u in rb]
        cuts = []
        for blk in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_matching_blocks():
            cuts.extend((blk.a + k, blk.b + k) for k in range(blk.size))
        actions, pi, pj = [], 0, 0
        for i, j in cuts:
            actions.extend(self.segment(ra[pi:i + 1], rb[pj:j + 1], at_cut=True))
            pi, pj = i + 1, j + 1
        actions.extend(self.segment(ra[pi:], rb[pj:], at_cut=False))
        return actions

    def segment(self, sa: list, sb: list, at_cut: bool) -> list:
        if not sa or not sb:
            return [("remove", u) for u in sa] + [("add", u) for u in sb]
        if len(sa) == len(sb):
            out = []
            for x, y in zip(sa, sb):
                if self._pairable(x, y):
                    out.append(("pair", x, y))
                else:
                    out.extend([("remove", x), ("add", y)])
            return out
        if at_cut:  # same tensor out of different steps: a rewrite such as 5x5 -> two 3x3
            return [("replace", sa, sb)]
        out = []
        ta, tb = [u.op for u in sa], [u.op for u in sb]
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes():
            if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
                out.extend(self.segment(sa[i1:i2], sb[j1:j2], at_cut=False))
            else:
                out.extend([("remove", u) for u in sa[i1:i2]] + [("add", u) for u in sb[j1:j2]])
        return out

    @staticmethod
    def _pairable(x: Unit, y: Unit) -> bool:
        if (x.kind == "merge") != (y.kind == "merge"):
            return False
        if x.kind == "module" and y.kind == "module" and x.named and y.named and x.module.name != y.module.name:
            return False  # a different name is a different module (unless renamed, found later)
        return True

    def pair(self, ua: Unit, ub: Unit) -> None:
        A, B = self.A, self.B
        same_cost = A.params(ua) == B.params(ub) and A.macs(ua) == B.macs(ub) and A.out_shape(ua) == B.out_shape(ub)
        if A.unit_sig(ua) == B.unit_sig(ub) and same_cost and ua.kind != "merge":  # a merge's cost is not its branches'
            if ua.kind == "module" and ua.path != ub.path:
                self.emit("renamed", "(same structure)", "(same structure)", [ua], [ub])
            return
        if ua.kind == "merge":
            self.merge(ua, ub)
        elif ua.leaf and ub.leaf:
            self.leaf(ua, ub)
        elif not ua.leaf and not ub.leaf:
            self.container(ua.module, ub.module)
        else:
            self.replaced([ua], [ub])

    def merge(self, ua: Unit, ub: Unit) -> None:
        if ua.op != ub.op:
            self.emit("changed", f"merge {ua.op} -> {ub.op}", f"merge {ua.op} -> {ub.op}", [ua], [ub],
                      attrs=[("merge", ua.op, ub.op)])
        if len(ua.branches) == len(ub.branches):
            pairs = list(zip(ua.branches, ub.branches))
        else:
            pairs = []
            sm = difflib.SequenceMatcher(None, ua.labels, ub.labels, autojunk=False)
            for tag, i1, i2, j1, j2 in sm.get_opcodes():
                if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
                    pairs.extend(zip(ua.branches[i1:i2], ub.branches[j1:j2]))
                else:
                    pairs.extend((br, []) for br in ua.branches[i1:i2])
                    pairs.extend(([], br) for br in ub.branches[j1:j2])
        for ba, bb in pairs:
            self.align(ba, bb)

    def leaf(self, ua: Unit, ub: Unit) -> None:
        """Attribute changes of one op, each with its share of the param and MAC delta."""
        A, B = self.A, self.B
        in_a, in_b = A.in_shape(ua), B.in_shape(ub)
        facets = []  # (summary, key, attrs, op, attrs after this facet)
        state = dict(ua.args)
        if ua.op != ub.op:
            if ua.op in _POOLS and ub.op in _POOLS:
                words = f"pooling kind {_POOLS[ua.op]} -> {_POOLS[ub.op]}: "
            else:
                words = ""
            text = f"{words}{call_text(ua.op, ua.args)} -> {call_text(ub.op, ub.args)}"
            key = f"{words}{short_op(ua.op, ua.args)} -> {short_op(ub.op, ub.args)}"
            facets.append((text, key, [("op", ua.op, ub.op)], ub.op, dict(ub.args)))
            state = dict(ub.args)
        else:
            names = [a.name for a in OPS[ua.op].attrs if ua.args.get(a.name) != ub.args.get(a.name)]
            geometry = [n for n in names if n in _GEOMETRY]
            steps = ([geometry] if geometry else []) + [[n] for n in names if n not in _GEOMETRY]
            for group in steps:
                for n in group:
                    state[n] = ub.args[n]
                words = ", ".join(f"{_ATTR_NAMES.get(n, n)} {_fmt(ua.args[n], n)} -> {_fmt(ub.args[n], n)}" for n in group)
                attrs = [(n, ua.args[n], ub.args[n]) for n in group]
                text = f"{ua.op} {words}"
                key = f"{ua.op} {_ATTR_NAMES[group[0]]} changed" if group[0] in _CHANNELS else text
                facets.append((text, key, attrs, ua.op, dict(state)))
        if (ua.kind == "func") != (ub.kind == "func"):
            how = "module -> functional" if ub.kind == "func" else "functional -> module"
            facets.append((f"{ub.op} {how}", f"{ub.op} {how}", [("form", ua.kind, ub.kind)], ub.op, dict(state)))
        # Share the delta out by re-evaluating the catalog after each facet (input of A throughout).
        prev = (A.params(ua), A.macs(ua))
        shares = []
        for _, _, _, op, attrs in facets:
            cost = _cost(op, in_a, attrs)
            cost = cost if cost is not None else prev
            shares.append((cost[0] - prev[0], cost[1] - prev[1]))
            prev = cost
        final = (B.params(ub), B.macs(ub))
        rest = (final[0] - prev[0], final[1] - prev[1])
        if in_a != in_b and rest != (0, 0):
            inferred = OPS[ub.op].inferred
            if inferred and in_a and in_b and in_a[0] != in_b[0]:
                text, key = f"{ub.op} {inferred} {in_a[0]} -> {in_b[0]}", f"{ub.op} {inferred} (follows the layer before)"
                attrs = [(inferred, in_a[0], in_b[0])]
            else:
                text, key = f"{ub.op} input {_shape_text(in_a)} -> {_shape_text(in_b)}", f"{ub.op} input size (follows the layer before)"
                attrs = [("input", in_a, in_b)]
            facets.append((text, key, attrs, ub.op, ub.args))
            shares.append(rest)
        elif shares:
            shares[-1] = (shares[-1][0] + rest[0], shares[-1][1] + rest[1])
        for (text, key, attrs, _, _), (dp, dm) in zip(facets, shares):
            self.emit("changed", text, key, [ua], [ub], dp, dm, attrs)

    def aux_heads(self) -> None:
        ha = {h.name: h for h in self.A.c.expanded.aux}
        hb = {h.name: h for h in self.B.c.expanded.aux}
        for name in [*ha, *(n for n in hb if n not in ha)]:
            a, b = ha.get(name), hb.get(name)
            if a is None:
                self.added(self.B.module_unit(b.module))
                continue
            if b is None:
                self.removed(self.A.module_unit(a.module))
                continue
            ua, ub = self.A.module_unit(a.module), self.B.module_unit(b.module)
            if a.loss_weight != b.loss_weight:
                self.emit("changed", f"aux loss_weight {a.loss_weight!r} -> {b.loss_weight!r}",
                          f"aux loss_weight {a.loss_weight!r} -> {b.loss_weight!r}", [ua], [ub], 0, 0,
                          [("loss_weight", a.loss_weight, b.loss_weight)])
            if a.source != b.source:
                self.emit("changed", f"aux head reads {a.source} -> {b.source}", "aux head reads another layer",
                          [ua], [ub], 0, 0, [("from", a.source, b.source)])
            self.pair(ua, ub)

    def find_renames(self) -> None:
        """A removed and an added module of the same structure and cost: one module, renamed."""
        added = [c for c in self.changes if c.kind == "added" and c.b[0]["path"] in self.B.mods]
        taken = set()
        for i, c in enumerate(self.changes):
            if c.kind != "removed" or c.a[0]["path"] not in self.A.mods:
                continue
            ma = self.A.g.graph["modules"][c.a[0]["path"]]["module"]
            for d in added:
                if id(d) in taken or d.b[0]["params"] != c.a[0]["params"] or d.b[0]["output_shape"] != c.a[0]["output_shape"]:
                    continue
                mb = self.B.g.graph["modules"][d.b[0]["path"]]["module"]
                if self.A.sig(ma) == self.B.sig(mb) and d.part == c.part:
                    taken.add(id(d))
                    self.changes[i] = Change("renamed", "(same structure)", "(same structure)", c.a, d.b, d.part, 0, 0)
                    break
        self.changes = [c for c in self.changes if id(c) not in taken]


def _cost(op: str, in_shape, attrs: dict):
    """(params, MACs) of an op from the catalog, or None when the intermediate state is not valid."""
    if in_shape is None:
        return None
    spec = OPS[op]
    try:
        out = spec.shape([tuple(in_shape)], attrs)
        return spec.params(tuple(in_shape), attrs), spec.macs(tuple(in_shape), tuple(out), attrs)
    except (OpShapeError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


# --- locations, compacted: inception{3a,3b}.branch3.1.conv ------------------------------------

def compact(paths: list) -> list:
    """Fold paths that differ in one dotted component into brace patterns, keeping first-seen order.

    >>> compact(["inception3a.branch3.1.conv", "inception3b.branch3.1.conv", "conv1.bn"])
    ['inception3{a,b}.branch3.1.conv', 'conv1.bn']
    """
    pats = [tuple((p,) for p in path.split(".")) for path in paths]
    changed = True
    while changed:
        changed = False
        for pos in reversed(range(max((len(p) for p in pats), default=0))):
            merged: dict = {}
            for p in pats:
                if len(p) <= pos:
                    merged.setdefault(("short", p), p)
                    continue
                key = (len(p), p[:pos], p[pos + 1:])
                if key in merged:
                    old = merged[key]
                    values = old[pos] + tuple(v for v in p[pos] if v not in old[pos])
                    merged[key] = old[:pos] + (values,) + old[pos + 1:]
                    changed = True
                else:
                    merged[key] = p
            pats = list(merged.values())
    return [".".join(_braces(c) for c in p) for p in pats]


def _braces(values: tuple) -> str:
    if len(values) == 1:
        return values[0]
    pre = _common(values)
    suf = _common([v[len(pre):][::-1] for v in values])[::-1]
    while suf and suf[0].isalnum():  # a suffix starts at a separator: {2a,2b}_3x3, not {relu_,pool_s}2
        suf = suf[1:]
    mid = [v[len(pre):len(v) - len(suf)] for v in values]
    if any(not m for m in mid):
        pre, suf, mid = "", "", list(values)
    return pre + "{" + ",".join(mid) + "}" + suf


def _common(values) -> str:
    out = []
    for chars in zip(*values):
        if len(set(chars)) != 1:
            break
        out.append(chars[0])
    return "".join(out)


# --- the result -------------------------------------------------------------------------------

@dataclass
class Diff:
    """Two analysed specs and the changes between them."""

    a: object  # Compiled
    b: object
    changes: list
    code: str | None = None  # unified diff of the generated modules (--code)

    @property
    def identical(self) -> bool:
        return not self.changes

    @property
    def groups(self) -> list:
        out: dict = {}
        for c in self.changes:
            out.setdefault((c.kind, c.key), Group(c.kind, c.key, [])).changes.append(c)
        return list(out.values())

    def totals(self) -> dict:
        """Each total in A and B, with the delta and the ratio B/A."""
        ta, tb = self.a.analysis.totals, self.b.analysis.totals
        rows = {}
        for name in ("params", "params_eval", "buffers", "macs", "flops", "depth"):
            x, y = getattr(ta, name), getattr(tb, name)
            rows[name] = {"a": x, "b": y, "delta": y - x, "ratio": round(y / x, 4) if x else None}
        parts = list(dict.fromkeys([*ta.params_by_part, *tb.params_by_part]))
        rows["params_by_part"] = {p: {"a": ta.params_by_part.get(p, 0), "b": tb.params_by_part.get(p, 0),
                                      "delta": tb.params_by_part.get(p, 0) - ta.params_by_part.get(p, 0)} for p in parts}
        rows["output"] = {"a": _shape(self.a.analysis.output), "b": _shape(self.b.analysis.output)}
        rows["input"] = {"a": _shape(self.a.expanded.input), "b": _shape(self.b.expanded.input)}
        return rows

    def modules(self) -> list:
        """Top-level modules (aux heads included) whose params, MACs or output shape differ."""
        ma, mb = self.a.analysis.modules, self.b.analysis.modules
        top = lambda mods: [p for p in mods if p and "." not in p]  # noqa: E731
        out = []
        for path in dict.fromkeys([*top(ma), *top(mb)]):
            x, y = ma.get(path), mb.get(path)
            row = {"path": path}
            for side, m in (("a", x), ("b", y)):
                row[side] = None if m is None else {"type": m["type"], "output_shape": _shape(m["output_shape"]),
                                                    "params": m["params"], "macs": m["macs"], "part": m["part"]}
            if x and y and row["a"] == {**row["b"], "type": row["a"]["type"]} and not self._touched(path):
                continue
            row["params_delta"] = (y["params"] if y else 0) - (x["params"] if x else 0)
            row["macs_delta"] = (y["macs"] if y else 0) - (x["macs"] if x else 0)
            out.append(row)
        return out

    def _touched(self, path: str) -> bool:
        for c in self.changes:
            for s in c.a + c.b:
                if s["path"] == path or s["path"].startswith(path + ".") or s["path"].startswith(path + "/"):
                    return True
        return False

    def notes(self) -> list:
        out = []
        if self.a.name != self.b.name:
            out.append(f"name {self.a.name} -> {self.b.name}")
        return out

    def to_json(self) -> dict:
        out = {
            "a": {"name": self.a.name, "spec": self.a.file},
            "b": {"name": self.b.name, "spec": self.b.file},
            "identical": self.identical,
            "totals": self.totals(),
            "groups": [g.to_json() for g in self.groups],
            "modules": self.modules(),
            "notes": self.notes(),
            "conventions": "MACs: conv+linear multiply-adds at batch 1 in eval mode (main network); "
                           "changes inside aux heads change training-time MACs only.",
        }
        if self.code is not None:
            out["code"] = self.code
        return out

    # --- text ---
    def text(self) -> str:
        a, b = self.a, self.b
        lines = [f"A: {a.name}  ({a.file})", f"B: {b.name}  ({b.file})", ""]
        groups = self.groups
        if not groups:
            lines.append("The two networks are identical" + (f" ({self.notes()[0]})." if self.notes() else "."))
        else:
            places = len({c.location for c in self.changes})
            lines.append(f"{len(self.changes)} change{'s' if len(self.changes) != 1 else ''} in {len(groups)} "
                         f"group{'s' if len(groups) != 1 else ''}, at {places} place{'s' if places != 1 else ''}:")
            for g in groups:
                lines.append("")
                lines.extend(self._group_lines(g))
        lines += ["", *self._totals_lines()]
        mods = self.modules()
        if mods and groups:
            lines += ["", *self._module_lines(mods)]
        lines += ["", *self._ratio_lines()]
        if self.code is not None:
            lines += ["", "Generated code (unified diff):", self.code.rstrip("\n") if self.code else "(identical)"]
        return "\n".join(lines) + "\n"

    def _group_lines(self, g: Group) -> list:
        mark = {"changed": "~", "replaced": ">", "removed": "-", "added": "+", "renamed": "="}[g.kind]
        n = len(g.locations)
        where = ", ".join(g.compact_locations())
        aux = [p for p in g.parts if p != "main"]
        in_aux = [c for c in g.changes if c.part != "main"]

        def delta(label, total, aux_share):
            text = f"{label} {_signed(total)}"
            if aux and len(aux) < len(g.parts) and aux_share:
                text += f" (aux heads {_signed(aux_share)})"
            return text

        cost = [delta("params", g.params_delta, sum(c.params_delta for c in in_aux)),
                delta("MACs", g.macs_delta, sum(c.macs_delta for c in in_aux))]
        if g.kind == "replaced":
            before = sum(s["params"] for c in g.changes for s in c.a)
            if before:
                cost[0] += f" ({g.params_delta / before:+.1%})"
        shape = g.output_change()
        if shape:
            cost.append(shape)
        if aux and len(aux) == len(g.parts):
            cost.append(f"(aux head{'s' if len(aux) > 1 else ''} {', '.join(aux)}: training only)")
        lines = [f"{mark} {g.kind} {g.summary}",
                 f"    at {n} places: {where}" if n > 1 else f"    at {where}",
                 "    " + "   ".join(cost)]
        if g.kind == "replaced" and n > 1:  # a rewrite: each place with its own saving
            for c in g.changes:
                pa, pb = sum(s["params"] for s in c.a), sum(s["params"] for s in c.b)
                pct = f" ({(pb - pa) / pa:+.1%})" if pa else ""
                lines.append(f"      {c.location}: {c.summary}   params {_n(pa)} -> {_n(pb)}{pct}   MACs {_signed(c.macs_delta)}")
        return lines

    def _totals_lines(self) -> list:
        t = self.totals()
        an, bn = self.a.name, self.b.name
        rows = [("", an, bn, "change", "B/A")]

        def add(label, row, fmt=_n):
            ratio = f"{row['ratio']:.3f}x" if row.get("ratio") is not None else ""
            rows.append((label, fmt(row["a"]), fmt(row["b"]), _signed(row["delta"]), ratio))

        add("params (training)", t["params"])
        if len(t["params_by_part"]) > 1:
            for part, row in t["params_by_part"].items():
                rows.append((f"  {part}", _n(row["a"]), _n(row["b"]), _signed(row["delta"]), ""))
        add("params (eval)", t["params_eval"])
        add("buffers", t["buffers"])
        add("MACs (eval)", t["macs"])
        add("depth", t["depth"], str)
        rows.append(("input", str(t["input"]["a"]), str(t["input"]["b"]), "", ""))
        rows.append(("output", str(t["output"]["a"]), str(t["output"]["b"]), "", ""))
        w = [max(len(r[i]) for r in rows) for i in range(5)]
        out = ["Totals:"]
        for r in rows:
            out.append(f"  {r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  {r[4]:>{w[4]}}".rstrip())
        return out

    def _module_lines(self, mods: list) -> list:
        rows = [("module", "output A", "output B", "params A", "params B", "change")]
        for m in mods:
            x, y = m["a"], m["b"]
            rows.append((m["path"] + ("" if (y or x)["part"] == "main" else " [aux]"),
                         str(x["output_shape"]) if x else "--", str(y["output_shape"]) if y else "--",
                         _n(x["params"]) if x else "--", _n(y["params"]) if y else "--", _signed(m["params_delta"])))
        w = [max(len(r[i]) for r in rows) for i in range(6)]
        out = ["Top-level modules that differ:"]
        for r in rows:
            out.append(f"  {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}  {r[4]:>{w[4]}}  {r[5]:>{w[5]}}".rstrip())
        return out

    def _ratio_lines(self) -> list:
        ta, tb = self.a.analysis.totals, self.b.analysis.totals
        an, bn = self.a.name, self.b.name
        rows = [("Parameters (eval, main network)", ta.params_eval, tb.params_eval, "parameters")]
        if ta.params != ta.params_eval or tb.params != tb.params_eval:
            rows.append(("Parameters (training, aux heads included)", ta.params, tb.params, "parameters"))
        rows.append(("MACs (eval)", ta.macs, tb.macs, "MACs"))
        return [f"{label}: {an} {_n(x)}, {bn} {_n(y)}; {bn}/{an} = {_ratio(y, x)}" for label, x, y, _ in rows]

    # --- markdown ---
    def markdown(self) -> str:
        a, b = self.a, self.b
        out = [f"## `{a.name}` -> `{b.name}`", "", f"A: `{a.file}`, B: `{b.file}`", ""]
        if not self.groups:
            out += ["The two networks are identical.", ""]
        else:
            out += ["| | change | where | params | MACs |", "|---|---|---|---:|---:|"]
            for g in self.groups:
                where = ", ".join(f"`{p}`" for p in g.compact_locations())
                n = len(g.locations)
                out.append(f"| {g.kind} | {_md(g.summary)} | {n} x {where} | {_signed(g.params_delta)} | {_signed(g.macs_delta)} |"
                           if n > 1 else f"| {g.kind} | {_md(g.summary)} | {where} | {_signed(g.params_delta)} | {_signed(g.macs_delta)} |")
            out.append("")
        t = self.totals()
        out += [f"| total | `{a.name}` | `{b.name}` | change | B/A |", "|---|---:|---:|---:|---:|"]
        for label, key in (("params (training)", "params"), ("params (eval)", "params_eval"), ("buffers", "buffers"),
                           ("MACs (eval)", "macs"), ("depth", "depth")):
            row = t[key]
            ratio = f"{row['ratio']:.3f}x" if row["ratio"] is not None else ""
            out.append(f"| {label} | {_n(row['a'])} | {_n(row['b'])} | {_signed(row['delta'])} | {ratio} |")
        out.append(f"| output | {t['output']['a']} | {t['output']['b']} | | |")
        out += ["", *(f"- {line}" for line in self._ratio_lines())]
        if self.code is not None:
            out += ["", "```diff", self.code.rstrip("\n"), "```"]
        return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _ratio(y: int, x: int) -> str:
    """'0.108 (9.22x fewer)', '0.947 (5.3% fewer)', '1.000 (equal)'."""
    if not x:
        return "--"
    r = y / x
    if y == x:
        return "1.000 (equal)"
    if not y:
        return "0.000"
    if 2 / 3 < r < 1.5:
        return f"{r:.3f} ({abs(1 - r):.1%} {'fewer' if r < 1 else 'more'})"
    return f"{r:.3f} ({x / y:.2f}x fewer)" if r < 1 else f"{r:.3f} ({r:.2f}x more)"


# --- entry points -----------------------------------------------------------------------------

def diff_compiled(a, b) -> Diff:
    """Compare two compiled specs (``archspec.pipeline.compile_spec`` results)."""
    return Diff(a, b, _Differ(a, b).run())


def diff_specs(a: str, b: str, code: bool = False) -> Diff:
    """Compile two spec files and compare them; raises ArchspecError on a spec error.

    >>> d = diff_specs("specs/googlenet_paper.yaml", "specs/googlenet.yaml")   # doctest: +SKIP
    >>> d.identical, d.totals()["params"]["delta"]                               # doctest: +SKIP
    (False, -373392)
    """
    from .errors import ErrorList, flatten
    from .pipeline import compile_spec

    compiled, errors = [], []
    for path in (a, b):
        try:
            compiled.append(compile_spec(path))
        except Exception as exc:  # noqa: BLE001 - only spec errors are collected
            from .errors import ArchspecError

            if not isinstance(exc, ArchspecError):
                raise
            errors.extend(flatten(exc))
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)
    result = diff_compiled(*compiled)
    if code:
        result.code = code_diff(*compiled)
    return result


def code_diff(a, b) -> str:
    """Unified diff of the two generated modules (text only; nothing is written)."""
    from .generate import generate, split_header

    left = split_header(generate(a))[1].splitlines(keepends=True)
    right = split_header(generate(b))[1].splitlines(keepends=True)
    return "".join(difflib.unified_diff(left, right, f"a/{a.name}.py", f"b/{b.name}.py"))


def run_diff(args) -> int:
    """``archspec diff A B``: 0 identical, 1 different, 2 trouble (ArchspecError is raised to the CLI)."""
    d = diff_specs(args.a, args.b, code=getattr(args, "code", False))
    if args.format == "json":
        print(json.dumps(d.to_json(), indent=2))
    elif args.format == "markdown":
        print(d.markdown(), end="")
    else:
        print(d.text(), end="")
    return EXIT_SAME if d.identical else EXIT_DIFFERENT
