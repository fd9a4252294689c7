"""diff, matching: the two module trees walked together, unit against unit.

Where the two bodies part ways, the stretch is cut where both sides produce the same tensor; a leaf
whose attributes differ gives one change per facet, its delta shared out by re-evaluating the op
catalog step by step; removed and added modules of the same structure become renames.
"""
from __future__ import annotations

from ..expand import Module
from ..ops import OPS, OpShapeError
from .changes import Change
from .match import matching_blocks, opcodes
from .walk import Unit, _Side
from ..text import batched, batched_text, dims
from ..words import ATTR_NAMES, CHANNELS, GEOMETRY, POOLS, call_text, runs, short_op, value_text


class _Differ:
    def __init__(self, a, b):
        self.A, self.B = _Side(a), _Side(b)
        self.changes: list = []

    # --- records ---
    def _side(self, side: _Side, units: list) -> list:
        return [{"path": u.path, "type": u.op, "text": side.text(u), "output_shape": batched(side.out_shape(u)),
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
        exact = f"{', '.join(runs([self.A.text(u) for u in ua]))} -> {', '.join(runs([self.B.text(u) for u in ub]))}"
        key = f"{', '.join(runs([self.A.abstract(u) for u in ua]))} -> {', '.join(runs([self.B.abstract(u) for u in ub]))}"
        self.emit("replaced", exact, key, ua, ub)

    # --- walking ---
    def run(self):
        ea, eb = self.A.c.expanded, self.B.c.expanded
        if tuple(ea.input) != tuple(eb.input):
            side = lambda shape: [{"path": "input", "type": "input", "text": dims(shape),  # noqa: E731
                                   "output_shape": batched(shape), "params": 0, "macs": 0}]
            self.changes.append(Change("changed", f"input {batched_text(ea.input)} -> {batched_text(eb.input)}",
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
        for tag, i1, i2, j1, j2 in opcodes(ka, kb):
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
        for i, j, size in matching_blocks(ka, kb):
            cuts.extend((i + k, j + k) for k in range(size))
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
        for tag, i1, i2, j1, j2 in opcodes(ta, tb):
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
        split_a, split_b = ua.args.get("split"), ub.args.get("split")
        if split_a != split_b:  # which chunk of the channels each branch reads
            text = f"{ub.op} split: {_split_words(split_a)} -> {_split_words(split_b)}"
            self.emit("changed", text, text, [ua], [ub], 0, 0, attrs=[("split", split_a, split_b)])  # costs: the branches
        if len(ua.branches) == len(ub.branches):
            pairs = list(zip(ua.branches, ub.branches))
        else:
            pairs = []
            for tag, i1, i2, j1, j2 in opcodes(ua.labels, ub.labels):
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
        facets = _facets(ua, ub)
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
            facets.append((*_input_change(ub.op, in_a, in_b), ub.op, ub.args))
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
            ma = self.A.g.modules[c.a[0]["path"]].module
            for d in added:
                if id(d) in taken or d.b[0]["params"] != c.a[0]["params"] or d.b[0]["output_shape"] != c.a[0]["output_shape"]:
                    continue
                mb = self.B.g.modules[d.b[0]["path"]].module
                if self.A.sig(ma) == self.B.sig(mb) and d.part == c.part:
                    taken.add(id(d))
                    self.changes[i] = Change("renamed", "(same structure)", "(same structure)", c.a, d.b, d.part, 0, 0)
                    break
        self.changes = [c for c in self.changes if id(c) not in taken]


def _split_words(split) -> str:
    """A merge's ``split:`` as a spec writes it: ``2``, ``[16, 48]``, ``none``."""
    return "none" if split is None else str(list(split) if isinstance(split, tuple) else split)


def _facets(ua: Unit, ub: Unit) -> list:
    """What changed in a leaf, one facet per independent change:
    (summary, key, attrs, op, the op's attributes once this facet has changed)."""
    if ua.op != ub.op:
        if ua.op in POOLS and ub.op in POOLS:
            words = f"pooling kind {POOLS[ua.op]} -> {POOLS[ub.op]}: "
        else:
            words = ""
        text = f"{words}{call_text(ua.op, ua.args)} -> {call_text(ub.op, ub.args)}"
        key = f"{words}{short_op(ua.op, ua.args)} -> {short_op(ub.op, ub.args)}"
        facets = [(text, key, [("op", ua.op, ub.op)], ub.op, dict(ub.args))]
        state = dict(ub.args)
    else:
        facets, state = _attr_facets(ua, ub)
    if (ua.kind == "func") != (ub.kind == "func"):
        how = "module -> functional" if ub.kind == "func" else "functional -> module"
        facets.append((f"{ub.op} {how}", f"{ub.op} {how}", [("form", ua.kind, ub.kind)], ub.op, dict(state)))
    return facets


def _attr_facets(ua: Unit, ub: Unit) -> tuple:
    """The attributes of one op that differ: the geometry (kernel, padding, dilation) as one facet,
    every other attribute as its own; and the attributes after all of them."""
    state = dict(ua.args)
    facets = []
    names = [a.name for a in OPS[ua.op].attrs if ua.args.get(a.name) != ub.args.get(a.name)]
    geometry = [n for n in names if n in GEOMETRY]
    steps = ([geometry] if geometry else []) + [[n] for n in names if n not in GEOMETRY]
    for group in steps:
        for n in group:
            state[n] = ub.args[n]
        words = ", ".join(f"{ATTR_NAMES.get(n, n)} {value_text(ua.args[n], n)} -> {value_text(ub.args[n], n)}" for n in group)
        attrs = [(n, ua.args[n], ub.args[n]) for n in group]
        text = f"{ua.op} {words}"
        key = f"{ua.op} {ATTR_NAMES[group[0]]} changed" if group[0] in CHANNELS else text
        facets.append((text, key, attrs, ua.op, dict(state)))
    return facets, state


def _input_change(op: str, in_a, in_b) -> tuple:
    """(summary, key, attrs) of a leaf whose cost changed only because its input did."""
    inferred = OPS[op].inferred
    if inferred and in_a and in_b and in_a[0] != in_b[0]:
        return (f"{op} {inferred} {in_a[0]} -> {in_b[0]}", f"{op} {inferred} (follows the layer before)",
                [(inferred, in_a[0], in_b[0])])
    return (f"{op} input {batched_text(in_a)} -> {batched_text(in_b)}", f"{op} input size (follows the layer before)",
            [("input", in_a, in_b)])


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
