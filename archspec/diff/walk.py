"""diff, the walk: one compiled spec seen unit by unit (a registered module, a functional op or a
merge), with what each unit costs, what it hands on, its structure and its words."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..expand import Apply, Func, Merge, Module, flat_steps
from ..graph import Node
from ..ops import OPS
from ..words import POOLS, call_text, runs, short_op, value_text


@dataclass
class Unit:
    """One step of a module's forward: a registered module, a functional op or a merge."""

    kind: str  # module | func | merge
    path: str  # module path, or the graph node name of a functional op / merge
    op: str  # op or block type ("Sequential"), or the merge kind
    args: dict
    node: Node  # graph node holding its output
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

    def units(self, owner: Module) -> list:
        if owner.path not in self._units:
            self._units[owner.path] = self._steps(owner, owner.body)
        return self._units[owner.path]

    def _steps(self, owner: Module, steps: list) -> list:
        out = []
        for step in flat_steps(steps):
            if isinstance(step, Apply):
                out.append(self.module_unit(step.module, named=owner.kind != "sequential"))
            elif isinstance(step, Func):
                out.append(Unit("func", step.node.name, step.op, step.attrs, step.node, owner.part, named=False))
            elif isinstance(step, Merge):
                branches = [self._steps(owner, br) for br in step.branches]
                split = tuple(n.meta["shape"][0] for n in step.chunks) if step.split is not None else None
                out.append(Unit("merge", step.node.name, step.kind, {"split": split}, step.node, owner.part, named=False,
                                branches=branches, labels=list(step.labels)))
        return out

    def module_unit(self, m: Module, named: bool = True) -> Unit:
        return Unit("module", m.path, m.type, m.args, self.g.modules[m.path].output, m.part, named, m)

    # --- what a unit is and what it costs ---
    def params(self, u: Unit) -> int:
        return self._cost(u, "params")

    def macs(self, u: Unit) -> int:
        return self._cost(u, "macs")

    def _cost(self, u: Unit, key: str) -> int:
        if u.kind == "module":
            return self.mods[u.path][key]
        inside = sum(self._cost(x, key) for br in u.branches for x in br)  # a merge costs its branches
        return inside + u.node.meta[key]

    @staticmethod
    def out_shape(u: Unit):
        return u.node.meta["shape"]

    def in_shape(self, u: Unit):
        if u.kind == "module":
            return self.mods[u.path]["input_shape"]
        return u.node.inputs[0].meta["shape"]

    @staticmethod
    def cut(u: Unit, start: Node) -> tuple:
        """What a step hands on, measured from the stretch's input node ``start``: the shape and
        the growth of the receptive field (so that changes upstream do not hide a match)."""
        d, s = u.node.meta, start.meta
        rh, rw, jh, jw = d["rf"]
        sh, sw, sjh, sjw = s["rf"]
        return (d["shape"], rh - sh, rw - sw, jh / sjh, jw / sjw)

    def entry(self, u: Unit) -> Node:
        """The node a step reads."""
        if u.kind == "module":
            return self.g.modules[u.path].input
        if u.kind == "merge":
            for br in u.branches:
                if br:
                    return self.entry(br[0])
        return u.node.inputs[0]

    def sig(self, m: Module):
        """The structure of a module, its own name left out (renames keep it)."""
        key = id(m)
        if key not in self._sigs:
            if m.kind == "op":
                s = ("op", m.type, _frozen(m.args))
            else:
                s = (m.kind, m.type if m.kind == "block" else "", tuple(self._step_sig(st) for st in flat_steps(m.body)))
            self._sigs[key] = s
        return self._sigs[key]

    def _step_sig(self, step):
        if isinstance(step, Apply):
            return (step.module.name, self.sig(step.module))
        if isinstance(step, Func):
            return ("f", step.op, _frozen(step.attrs))
        if isinstance(step, Merge):
            return ("m", step.kind, tuple(n.meta["shape"][0] for n in step.chunks),
                    tuple(tuple(self._step_sig(s) for s in flat_steps(br)) for br in step.branches))
        return ("absent",)

    def unit_sig(self, u: Unit):
        if u.kind == "module":
            return self.sig(u.module)
        if u.kind == "func":
            return ("f", u.op, _frozen(u.args))
        return ("m", u.op, u.args.get("split"), tuple(tuple(self.unit_sig(x) for x in br) for br in u.branches))

    # --- words ---
    def text(self, u: Unit) -> str:
        """Exact description, channels included: ``BasicConv2d(32, kernel_size=5, padding=2)``."""
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
            return "Sequential(" + ", ".join(runs(inner)) + ")" if len(inner) <= 4 else f"Sequential({len(inner)} modules)"
        return self._block_call(m)

    def _block_call(self, m: Module) -> str:
        block = self.blocks.get(m.type)
        if block is None:
            return m.type
        args = []
        for i, a in enumerate(block.args):  # the first argument positional, as specs write them
            value = m.args.get(a.name)
            if i == 0 and a.required:
                args.append(value_text(value))
            elif a.required or value != a.default:
                args.append(f"{a.name}={value_text(value)}")
        return f"{m.type}({', '.join(args)})"


def _core(op: str) -> bool:
    return OPS[op].weight_layer or op in POOLS


def _frozen(args: dict) -> tuple:
    return tuple(sorted(args.items()))
