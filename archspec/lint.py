"""Stage 5, lint: the graph is well formed before anything is measured.

One input; acyclic; every node reaches the output or an aux head's output; merges have at least
two inputs; module paths are unique and legal. ``lower`` adds every node after its inputs; lint
checks that this holds, which makes insertion order a topological order (what ``analyse`` walks)
and proves the graph acyclic, so no general graph algorithm is needed here (archspec/graph.py).
"""
from __future__ import annotations

from .errors import LintError, raise_all
from .exprs import ENTRY_NAME, is_identifier
from .graph import Graph, is_topological
from .ops import OPS


def lint(graph: Graph) -> Graph:
    errors = []
    inputs = [n for n in graph if n.op == "input"]
    if len(inputs) != 1:
        errors.append(LintError(f"the graph must have exactly one input, found {len(inputs)}"))
    outputs = [graph.output, *graph.aux.values()]
    live = set(outputs)  # the outputs and their ancestors
    if is_topological(graph):  # one backward sweep of insertion order
        for node in reversed(list(graph)):
            if node in live:
                live.update(node.inputs)
    else:  # never for a graph lower built: networkx finds the cycle and the ancestors
        import networkx as nx

        dag = graph.nx
        if not nx.is_directed_acyclic_graph(dag):
            first = nx.find_cycle(dag)[0][0]
            errors.append(LintError(f"the graph has a cycle through {first.name}", first.loc))
        for out in outputs:
            live |= nx.ancestors(dag, out)
    for node in graph:
        if node not in live:
            errors.append(LintError(f"'{node.name}' does not reach the output or an aux head", node.loc, node.name))
        if OPS[node.op].merge and len(node.inputs) < 2:
            errors.append(LintError(f"{node.op} in {node.path or 'the model'} needs at least two inputs", node.loc, node.name))
    for path, span in graph.modules.items():
        if path and not all(is_identifier(p) or ENTRY_NAME.match(p) for p in path.split(".")):
            errors.append(LintError(f"illegal module path '{path}'", span.module.loc, path))
    raise_all(errors)
    return graph
