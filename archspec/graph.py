"""The graph ``lower`` builds: a directed graph with networkx's interface, without importing networkx.

``archspec check`` spends most of its time starting up, and ``import networkx`` alone costs about
as much as the rest of a check (docs/performance.md). So the pipeline's graph is this small class:
the part of ``networkx.DiGraph``'s interface that archspec uses (``graph``, ``nodes[n]``,
``nodes(data=True)``, ``edges``, ``successors``, ``predecessors``, ``add_node``, ``add_edge``), with
networkx's storage layout (a dict of node attribute dicts, successor and predecessor dicts).

Graph algorithms still come from networkx: ``graph.nx`` is the same graph as a ``networkx.DiGraph``
(built on first use, node attribute dicts and the graph dict shared, not copied), and any other
attribute of ``networkx.DiGraph`` is looked up there. The checking stages need no general algorithm:
``lower`` adds every node after its inputs, so insertion order is a topological order (``lint``
verifies this, which also proves the graph acyclic), and reachability and the longest path are one
sweep over that order. tests/test_graph.py checks them against networkx on every spec.

>>> g = Graph(name="tiny")
>>> g.add_edge("input", "conv")
>>> list(g), list(g.successors("input")), g.nodes["conv"]
(['input', 'conv'], ['conv'], {})
"""
from __future__ import annotations


class _OverNodes:
    """Iteration, ``len`` and ``in`` over the nodes (of a graph or of its node view)."""

    __slots__ = ()

    def __iter__(self):
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __contains__(self, node) -> bool:
        return node in self._node


class Graph(_OverNodes):
    """A directed graph in insertion order; ``nx`` gives the networkx view of the same graph."""

    __slots__ = ("graph", "_node", "_succ", "_pred", "_edge", "_nx")

    def __init__(self, **attr):
        self.graph: dict = dict(attr)
        self._node: dict = {}  # node -> attribute dict
        # Adjacency as lists and edge attributes only where an edge has some: a network of 1,000
        # Inception blocks has 26,000 edges, and a dict each would be a tenth of its memory.
        self._succ: dict = {}  # node -> [successor, ...]
        self._pred: dict = {}  # node -> [predecessor, ...]
        self._edge: dict = {}  # (u, v) -> edge attribute dict, created on first use
        self._nx = None

    # -- building --
    def add_node(self, node, **attr) -> None:
        known = self._node.get(node)
        if known is None:
            self._node[node] = attr  # a fresh dict already: no copy
            self._succ[node] = []
            self._pred[node] = []
        else:
            known.update(attr)
        self._nx = None

    def add_edge(self, u, v, **attr) -> None:
        if u not in self._node:
            self.add_node(u)
        if v not in self._node:
            self.add_node(v)
        if v not in self._succ[u]:
            self._succ[u].append(v)
            self._pred[v].append(u)
        if attr:
            self.edge_data(u, v).update(attr)
        self._nx = None

    def edge_data(self, u, v) -> dict:
        """The attribute dict of edge (u, v) (KeyError if there is no such edge)."""
        data = self._edge.get((u, v))
        if data is None:
            if v not in self._succ[u]:
                raise KeyError((u, v))
            data = self._edge[(u, v)] = {}
        return data

    # -- reading, as networkx.DiGraph --
    @property
    def nodes(self) -> "_NodeView":
        return _NodeView(self._node)

    @property
    def edges(self) -> "_EdgeView":
        return _EdgeView(self)

    def successors(self, node):
        return iter(self._succ[node])

    def predecessors(self, node):
        return iter(self._pred[node])

    def number_of_nodes(self) -> int:
        return len(self._node)

    def number_of_edges(self) -> int:
        return sum(len(s) for s in self._succ.values())

    def is_directed(self) -> bool:
        return True

    def is_multigraph(self) -> bool:
        return False

    # -- networkx --
    @property
    def nx(self):
        """This graph as a ``networkx.DiGraph`` (imports networkx); attribute dicts are shared."""
        if self._nx is None:
            import networkx

            g = networkx.DiGraph()
            g.graph = self.graph
            g.add_nodes_from(self._node)
            for n, attrs in self._node.items():
                g._node[n] = attrs  # share, so that analysis metadata written later is seen
            for u, succ in self._succ.items():
                for v in succ:
                    g.add_edge(u, v)
                    g._succ[u][v] = g._pred[v][u] = self.edge_data(u, v)
            self._nx = g
        return self._nx

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.nx, name)  # the rest of networkx.DiGraph's interface


def is_topological(g: Graph) -> bool:
    """Whether every node comes after its predecessors in insertion order (always, for the graphs
    ``lower`` builds: then insertion order is a topological order and the graph is acyclic)."""
    seen: set = set()
    for node, preds in g._pred.items():
        for p in preds:
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


class _NodeView(_OverNodes):
    """``g.nodes[n]`` (the attribute dict), ``g.nodes(data=True)``, iteration, ``len``, ``in``."""

    __slots__ = ("_node",)

    def __init__(self, node: dict):
        self._node = node

    def __getitem__(self, node) -> dict:
        return self._node[node]

    def __call__(self, data=False, default=None):
        if data is False:
            return iter(self._node)
        if data is True:
            return iter(self._node.items())
        return ((n, d.get(data, default)) for n, d in self._node.items())


class _EdgeView:
    """``g.edges`` / ``g.edges()`` ((u, v) pairs), ``g.edges(data=True)``, ``g.edges[u, v]``."""

    __slots__ = ("_g",)

    def __init__(self, g: Graph):
        self._g = g

    def __call__(self, data=False, default=None):
        if data is False:
            return iter(self)
        if data is True:
            return ((u, v, self._g.edge_data(u, v)) for u, v in self)
        return ((u, v, self._g.edge_data(u, v).get(data, default)) for u, v in self)

    def __iter__(self):
        return ((u, v) for u, s in self._g._succ.items() for v in s)

    def __getitem__(self, edge) -> dict:
        return self._g.edge_data(*edge)

    def __len__(self) -> int:
        return self._g.number_of_edges()

    def __contains__(self, edge) -> bool:
        u, v = edge
        return u in self._g._succ and v in self._g._succ[u]
