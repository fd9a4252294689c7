"""Stage 5, lint: the graph is well formed before anything is measured.

One input; acyclic; every node reaches the output or an aux head's output; merges have at least
two inputs; module paths are unique and legal. ``lower`` adds every node after its inputs; lint
checks that this holds, which makes insertion order a topological order (what ``analyse`` walks)
and proves the graph acyclic, so no general graph algorithm is needed here (archspec/graph.py).
"""
from __future__ import annotations

from .errors import LintError, raise_all
from .exprs import is_identifier
from .graph import Graph, is_topological


def lint(g: Graph) -> Graph:
    errors = []
    inputs = [n for n, d in g.nodes(data=True) if d["op"] == "input"]
    if len(inputs) != 1:
        errors.append(LintError(f"the graph must have exactly one input, found {len(inputs)}"))
    outputs = [g.graph["output"], *g.graph["aux"].values()]
    live = set(outputs)  # the outputs and their ancestors
    if is_topological(g):  # one backward sweep of insertion order
        for node in reversed(list(g)):
            if node in live:
                live.update(g.predecessors(node))
    else:  # never for a graph lower built: networkx finds the cycle and the ancestors
        import networkx as nx

        dag = g.nx
        if not nx.is_directed_acyclic_graph(dag):
            cycle = nx.find_cycle(dag)
            errors.append(LintError(f"the graph has a cycle through {cycle[0][0]}", g.nodes[cycle[0][0]]["loc"]))
        for out in outputs:
            live |= nx.ancestors(dag, out)
    for node, data in g.nodes(data=True):
        if node not in live:
            errors.append(LintError(f"'{node}' does not reach the output or an aux head", data["loc"], node))
        if data["op"] in ("concat", "add") and len(data["inputs"]) < 2:
            errors.append(LintError(f"{data['op']} in {data['path'] or 'the model'} needs at least two inputs", data["loc"], node))
    for path, entry in g.graph["modules"].items():
        if path and not all(is_identifier(p) or p.isdigit() for p in path.split(".")):
            errors.append(LintError(f"illegal module path '{path}'", entry["loc"], path))
    raise_all(errors)
    return g
