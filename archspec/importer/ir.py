"""What tracing a PyTorch model gives, without torch: one ``Mod`` per nn.Module instance, its body
as spec items, and the step that turns a module's dataflow graph into those items.

A body is what a block's ``layers:`` say: items run in order, and a merge's branches all read the
merge's input. ``decompose`` finds that form in a module's graph (a DAG from one input to one
output) with dominators: a merge's branches start at its immediate dominator, which is the fork
they all read. A graph that has no such form (a value read again beyond the merge that follows
it, as DenseNet's concatenated features are) is refused, naming the value.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Loc


@dataclass
class OpCall:
    """A catalog op (archspec/ops.py) with every attribute, normalised (sizes (3, 3) -> 3)."""

    op: str
    attrs: dict


@dataclass
class Problem:
    """Something that cannot be imported: why, the module path, where in the Python source."""

    path: str
    reason: str
    where: Loc | None = None
    owner: str = ""  # the class of the module at path


@dataclass(eq=False)
class Mod:
    """One nn.Module instance. ``kind``: ``op`` (a catalog op), ``seq`` (an nn.Sequential of
    numbered entries, or of named ones where a name is no identifier), ``block`` (its forward traced into ``body``) or ``unsupported``."""

    path: str
    cls: str  # qualified class name: torchvision.models.googlenet.Inception
    short: str  # the class's own name: Inception
    kind: str
    op: OpCall | None = None
    entries: list = field(default_factory=list)  # seq: [Mod]
    names: tuple | None = None  # seq: its entries' names where they are named (an OrderedDict's keys), else None
    body: list = field(default_factory=list)  # block: items
    ctor: dict = field(default_factory=dict)  # the constructor's arguments, as it was called
    defaults: dict = field(default_factory=dict)  # the constructor's parameters with defaults
    problem: Problem | None = None
    after: list = field(default_factory=list)  # op: ops it applies after its own, as functions [OpCall]
    in_channels: int | None = None  # the first dimension of its input, as measured (None: not known)


# --- items of a body ----------------------------------------------------------------------------

@dataclass
class Use:
    """``name: ...``: a submodule called once (its kind says how it is written)."""

    name: str
    mod: Mod


@dataclass
class Fn:
    """An anonymous functional op (``- relu``); ``problem`` set: an op outside the catalog."""

    op: OpCall | None
    problem: Problem | None = None


@dataclass
class Param:
    """``name: parameter(shape, init=v)``: a module's own nn.Parameter applied to the input."""

    name: str
    op: OpCall


@dataclass
class Merge:
    kind: str  # concat, add, mul
    branches: list  # of item lists; [] is the identity
    split: object = None  # N equal chunks or a tuple of sizes: branch i reads chunk i


@dataclass
class AuxHead:
    name: str
    mod: Mod
    source: str  # the top-level layer whose output it reads
    after: str  # the top-level layer it is registered after


@dataclass
class Traced:
    """A whole model as traced."""

    root: Mod
    aux: list
    outputs: tuple | None  # (namedtuple type name or None, [(field, "main" or an aux head)])
    state: list  # [(key, shape)] in state_dict order
    totals: dict  # params, params_eval, buffers, macs, output
    num_classes: int
    problems: list
    input_shape: tuple = (3, 224, 224)


# --- a module's graph and its decomposition into items --------------------------------------

@dataclass(eq=False)
class GNode:
    """One value of a module's dataflow graph. ``kind``: ``input``; ``item`` (``items`` applied to
    ``inputs[0]``; none: passes it on); ``merge`` (``merge``: concat/add/mul of ``inputs``);
    ``chunk`` (``split``: the input cut into channel chunks); ``piece`` (chunk ``index``)."""

    name: str
    kind: str
    inputs: list
    items: list = field(default_factory=list)
    merge: str = ""
    split: object = None
    index: int = 0
    where: Loc | None = None


class NotExpressible(Exception):
    def __init__(self, node: GNode, reason: str):
        super().__init__(reason)
        self.node = node
        self.reason = reason


def dominators(nodes: list) -> dict:
    """Immediate dominator of every node reachable from ``nodes[0]`` (the input); ``nodes`` are in
    topological order (fx's order)."""
    pos = {id(n): i for i, n in enumerate(nodes)}
    idom = {id(nodes[0]): nodes[0]}

    def meet(a, b):
        while a is not b:
            while pos[id(a)] > pos[id(b)]:
                a = idom[id(a)]
            while pos[id(b)] > pos[id(a)]:
                b = idom[id(b)]
        return a

    for n in nodes[1:]:
        preds = [p for p in n.inputs if id(p) in idom]
        if not preds or len(preds) != len(n.inputs):
            continue  # not reached from the input: decompose reports it where it is read
        d = preds[0]
        for p in preds[1:]:
            d = meet(d, p)
        idom[id(n)] = d
    return idom


def decompose(nodes: list, output: GNode) -> list:
    """The items that compute ``output`` from ``nodes[0]``; raises NotExpressible."""
    state = _Walk(dominators(nodes))
    items = state.seq(nodes[0], output)
    for n in nodes[1:]:
        if id(n) not in state.placed and n.kind == "item" and any(_stateful_item(i) for i in n.items):
            raise NotExpressible(n, "its output is never used")
    return items


def _stateful_item(item) -> bool:
    return isinstance(item, (Use, Param))


class _Walk:
    def __init__(self, idom: dict):
        self.idom = idom
        self.placed: set = set()

    def seq(self, start: GNode, end: GNode) -> list:
        """Items from ``start``'s value to ``end``'s, walking back from ``end``."""
        out: list = []
        n = end
        while n is not start:
            self.place(n)
            if n.kind == "item":
                out[0:0] = n.items
                n = n.inputs[0]
            elif n.kind == "merge":
                merge, n = self.merge(n)
                out.insert(0, merge)
            elif n.kind == "input":
                raise NotExpressible(n, "a branch reads a value from outside its merge")
            else:
                raise NotExpressible(n, "a chunk of a split is used outside a merge of the chunks")
        return out

    def place(self, n: GNode) -> None:
        if id(n) in self.placed:
            raise NotExpressible(n, "its value is read again after the merge that follows it (the spec's merges read "
                                    "one common input)")
        if id(n) not in self.idom:
            raise NotExpressible(n, "it does not depend on the module's input")
        self.placed.add(id(n))

    def merge(self, n: GNode):
        fork = self.idom[id(n)]
        if fork.kind != "chunk":
            return Merge(n.merge, _flat(n.merge, [self.seq(fork, i) for i in n.inputs])), fork
        pieces = {}
        for i in n.inputs:  # each branch back to its chunk
            p = i
            while not (p.kind == "piece" and p.inputs[0] is fork):
                p = p.inputs[0] if p.inputs else fork
                if p is fork:
                    raise NotExpressible(n, "a branch of the merge does not read a chunk of the split")
            pieces.setdefault(p.index, p)
        order = [self.piece_of(i, fork) for i in n.inputs]
        if order != list(range(len(n.inputs))) or len(pieces) != len(n.inputs):
            raise NotExpressible(n, "the merge's branches do not read the chunks of the split in order")
        branches = [self.seq(pieces[k], i) for k, i in enumerate(n.inputs)]
        for p in pieces.values():
            self.place(p)
        self.place(fork)
        return Merge(n.merge, branches, fork.split), fork.inputs[0]

    @staticmethod
    def piece_of(n: GNode, fork: GNode) -> int:
        while not (n.kind == "piece" and n.inputs[0] is fork):
            n = n.inputs[0]
        return n.index


def _flat(kind: str, branches: list) -> list:
    """``concat(concat(a, b), c)`` -> ``concat(a, b, c)``, as a person writes it. An add or a mul
    only when the inner one comes first: ``a + b + c`` is ``(a + b) + c`` to the last bit, not
    ``a + (b + c)``."""
    out = []
    for j, b in enumerate(branches):
        if (len(b) == 1 and isinstance(b[0], Merge) and b[0].kind == kind and b[0].split is None
                and (kind == "concat" or j == 0)):
            out.extend(b[0].branches)
        else:
            out.append(b)
    return out
