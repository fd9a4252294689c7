"""The graph ``lower`` builds: typed nodes, a directed graph with networkx's interface, and where
each module sits in it.

A ``Node`` is one primitive op of the network, as torch.fx's Node is one call: what it computes
(``op``, ``attrs``), what it reads (``inputs``, other nodes, in order), where it comes from
(``path``, ``owner``, ``loc``, ``part``) and a ``meta`` dict that analysis fills (shape, params,
buffers, MACs, receptive field, tensors), as fx's ShapeProp fills ``node.meta``. A ``Span`` says
which node a module reads and which holds its output.

``archspec check`` spends most of its time starting up, and ``import networkx`` alone costs about
as much as the rest of a check (docs/performance.md). So the graph is this small class: the part
of ``networkx.DiGraph``'s interface that archspec uses (iteration, ``nodes``, ``edges``,
``successors``, ``predecessors``), whose nodes are ``Node`` objects and whose node attribute dicts
are their ``meta`` dicts. Graph algorithms still come from networkx: ``graph.nx`` is the same graph
as a ``networkx.DiGraph`` (built on first use, the ``meta`` dicts shared, not copied), and any
other attribute of ``networkx.DiGraph`` is looked up there. The checking stages need no general
algorithm: ``lower`` adds every node after its inputs, so insertion order is a topological order
(``lint`` verifies this, which also proves the graph acyclic), and reachability and the longest
path are one sweep over that order. tests/test_graph.py checks them against networkx on every spec.

>>> g = Graph("tiny", (3, 8, 8))
>>> x = g.add(Node("input", "input", {"shape": (3, 8, 8)}, "", []))
>>> relu = g.add(Node("/relu", "relu", {}, "", [x]))
>>> list(g), list(g.successors(x)), g.node("/relu") is relu
([Node('input', input), Node('/relu', relu)], [Node('/relu', relu)], True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errors import Loc
    from .expand import Module


@dataclass(eq=False, slots=True)
class Node:
    """One primitive op: a registered module (``Mixed_5b.branch1x1.conv``), a functional op or a
    merge inside a module (``Mixed_5b/concat``), or the network's input (``input``).

    Nodes compare by identity; ``name`` is unique in its graph.
    """

    name: str
    op: str  # a name in the op catalog (archspec/ops.py)
    attrs: dict  # the op's attributes, evaluated
    path: str  # module path of the module it belongs to ("" for the model)
    inputs: list  # the Nodes it reads, in order (concat order matters)
    part: str = "main"  # "main" or the name of the aux head it belongs to
    loc: Loc | None = None  # where the spec writes it
    owner: Module | None = None  # the expanded module it belongs to (a registered op's own module)
    labels: list | tuple = ()  # a merge's branch names, for messages
    meta: dict = field(default_factory=dict)  # filled by analysis: shape, params, buffers, macs, rf, tensors

    @property
    def is_module(self) -> bool:
        """Whether it is a registered module (``self.conv``), not a functional op or a merge."""
        return self.owner is not None and self.owner.kind == "op"

    def __repr__(self) -> str:  # the inputs would print every ancestor
        return f"Node({self.name!r}, {self.op})"


@dataclass(slots=True)
class Span:
    """Where a module sits in the graph: the node it reads and the node holding its output."""

    module: Module
    input: Node
    output: Node | None = None

    def __repr__(self) -> str:  # the module would print its whole subtree
        return f"Span({self.module.path!r}: {self.input.name} -> {self.output.name if self.output else None})"


class Graph:
    """The lowered network: nodes in insertion order; ``nx`` gives the networkx view of it.

    ``modules`` maps every module path, in registration (state_dict) order, to its ``Span``;
    ``output`` is the main network's output node, ``aux`` each aux head's, ``loss_weights`` each
    aux head's loss weight.
    """

    __slots__ = ("name", "input_shape", "output", "aux", "loss_weights", "modules", "_nodes", "_succ", "_nx")

    def __init__(self, name: str, input_shape: tuple):
        self.name = name
        self.input_shape = tuple(input_shape)
        self.output: Node | None = None
        self.aux: dict = {}  # aux head name -> its output node
        self.loss_weights: dict = {}  # aux head name -> loss weight
        self.modules: dict = {}  # module path -> Span
        self._nodes: dict = {}  # name -> Node, in insertion order
        # Successors as lists: a network of 1,000 Inception blocks has 26,000 edges.
        self._succ: dict = {}  # Node -> [Node, ...]
        self._nx = None

    # -- building --
    def add(self, node: Node) -> Node:
        """Add a node, with an edge from each of its inputs (``lower`` adds the inputs first;
        ``lint`` checks that it did)."""
        if node.name in self._nodes:
            raise ValueError(f"duplicate node name {node.name!r}")
        self._nodes[node.name] = node
        self._succ.setdefault(node, [])
        for src in dict.fromkeys(node.inputs):
            self._succ.setdefault(src, []).append(node)
        self._nx = None
        return node

    def node(self, name: str) -> Node:
        """The node called ``name`` (KeyError if there is none)."""
        return self._nodes[name]

    # -- reading, as networkx.DiGraph --
    def __iter__(self):
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node) -> bool:
        return self._nodes.get(getattr(node, "name", None)) is node

    @property
    def nodes(self) -> "_NodeView":
        return _NodeView(self)

    @property
    def edges(self) -> "_EdgeView":
        return _EdgeView(self)

    def successors(self, node: Node):
        return iter(self._succ[node])

    def predecessors(self, node: Node):
        return iter(dict.fromkeys(node.inputs))

    def number_of_nodes(self) -> int:
        return len(self._nodes)

    def number_of_edges(self) -> int:
        return sum(len(s) for s in self._succ.values())

    def is_directed(self) -> bool:
        return True

    def is_multigraph(self) -> bool:
        return False

    # -- networkx --
    @property
    def nx(self):
        """This graph as a ``networkx.DiGraph`` (imports networkx); the ``meta`` dicts are shared."""
        if self._nx is None:
            import networkx

            g = networkx.DiGraph(name=self.name)
            g.add_nodes_from(self)
            for node in self:
                g._node[node] = node.meta  # share, so that analysis metadata written later is seen
            g.add_edges_from(self.edges)
            self._nx = g
        return self._nx

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.nx, name)  # the rest of networkx.DiGraph's interface


def is_topological(g: Graph) -> bool:
    """Whether every node comes after its inputs in insertion order (always, for the graphs
    ``lower`` builds: then insertion order is a topological order and the graph is acyclic)."""
    seen: set = set()
    for node in g:
        for p in node.inputs:
            if p not in seen:
                return False
        seen.add(node)
    return True


def topological_order(g: Graph) -> list:
    """Insertion order when it is topological, else networkx's order (raises on a cycle)."""
    if is_topological(g):
        return list(g)
    import networkx

    return list(networkx.topological_sort(g.nx))


class _NodeView:
    """``g.nodes`` as networkx has it: iteration, ``len``, ``in``, ``g.nodes[node]`` (its attribute
    dict, which is its ``meta``) and ``g.nodes(data=True)``."""

    __slots__ = ("_g",)

    def __init__(self, g: Graph):
        self._g = g

    def __iter__(self):
        return iter(self._g)

    def __len__(self) -> int:
        return len(self._g)

    def __contains__(self, node) -> bool:
        return node in self._g

    def __getitem__(self, node: Node) -> dict:
        if node not in self._g:
            raise KeyError(node)
        return node.meta

    def __call__(self, data=False, default=None):
        if data is False:
            return iter(self._g)
        if data is True:
            return ((n, n.meta) for n in self._g)
        return ((n, n.meta.get(data, default)) for n in self._g)


class _EdgeView:
    """``g.edges`` / ``g.edges()``: the (u, v) pairs in networkx's order, ``len``, ``in``."""

    __slots__ = ("_g",)

    def __init__(self, g: Graph):
        self._g = g

    def __call__(self):
        return iter(self)

    def __iter__(self):
        return ((u, v) for u, s in self._g._succ.items() for v in s)

    def __len__(self) -> int:
        return self._g.number_of_edges()

    def __contains__(self, edge) -> bool:
        u, v = edge
        return u in self._g._succ and v in self._g._succ[u]
