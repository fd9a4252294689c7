"""archspec/graph.py: the pipeline's graph keeps networkx's interface, and what the checking stages
compute without networkx (topological order, reachability, depth) equals networkx's algorithms."""
from __future__ import annotations

import copy
import os

import networkx as nx
import pytest

from conftest import ROOT, SPECS

from archspec.errors import ArchspecError
from archspec.graph import Graph, is_topological, topological_order
from archspec.lint import lint
from archspec.ops import OPS
from archspec.pipeline import spec_files

ALL_SPECS = [os.path.relpath(p, ROOT) for p in spec_files(str(SPECS))]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_insertion_order_depth_and_reachability_agree_with_networkx(compiled, spec):
    c = compiled(spec)
    g = c.graph
    dag = nx.DiGraph(g.nx)  # a copy: the weights below must not reach the compiled graph
    assert nx.is_directed_acyclic_graph(dag)
    position = {n: i for i, n in enumerate(g)}
    assert all(position[u] < position[v] for u, v in dag.edges)
    assert is_topological(g) and topological_order(g) == list(g)
    # depth: networkx's longest path, each edge weighted by the main-network layer it enters
    for u, v in dag.edges:
        d = g.nodes[v]
        dag.edges[u, v]["w"] = int(d["part"] == "main" and OPS[d["op"]].weight_layer)
    path = nx.dag_longest_path(dag, weight="w")
    assert sum(dag.edges[u, v]["w"] for u, v in zip(path, path[1:])) == c.analysis.totals.depth
    # lint found every node live: every node is an output or an ancestor of one
    outputs = [g.graph["output"], *g.graph["aux"].values()]
    assert set(outputs).union(*(nx.ancestors(dag, o) for o in outputs)) == set(g)


def test_networkx_view_shares_the_graph(compiled):
    g = compiled("specs/googlenet.yaml").graph
    view = g.nx
    assert isinstance(view, nx.DiGraph) and view is g.nx
    assert view.graph is g.graph and view.nodes["conv1.conv"] is g.nodes["conv1.conv"]
    assert list(view.nodes) == list(g) and sorted(view.edges) == sorted(g.edges)
    assert view.number_of_edges() == g.number_of_edges() == len(g.edges)
    assert g.in_degree("input") == 0 and g.out_degree("input") == 1  # the rest of DiGraph's interface


def test_graph_interface():
    g = Graph(name="tiny")
    g.add_node("input", op="input")
    g.add_node("conv", op="conv2d")
    g.add_edge("input", "conv", w=1)
    g.add_edge("conv", "relu")
    assert list(g) == ["input", "conv", "relu"] and len(g) == 3 and "conv" in g and "x" not in g
    assert list(g.nodes(data=True))[0] == ("input", {"op": "input"})
    assert list(g.nodes(data="op")) == [("input", "input"), ("conv", "conv2d"), ("relu", None)]
    assert list(g.edges) == [("input", "conv"), ("conv", "relu")]
    assert list(g.edges(data=True))[0] == ("input", "conv", {"w": 1}) and g.edges["input", "conv"] == {"w": 1}
    assert ("conv", "relu") in g.edges and list(g.predecessors("relu")) == ["conv"]
    assert g.graph == {"name": "tiny"} and g.number_of_nodes() == 3
    copy.deepcopy(g)  # private names are not looked up in networkx
    with pytest.raises(AttributeError):
        g._missing


def _looped() -> Graph:
    g = Graph(output="b", aux={}, modules={})
    for n, inputs in (("input", []), ("a", ["input", "b"]), ("b", ["a"])):
        g.add_node(n, op="input" if n == "input" else "relu", inputs=inputs, path="", loc=None)
        for i in inputs:
            g.add_edge(i, n)
    return g


def test_lint_reports_a_cycle_through_networkx():
    g = _looped()
    assert not is_topological(g)
    with pytest.raises(ArchspecError, match="the graph has a cycle through a"):
        lint(g)
    with pytest.raises(nx.NetworkXUnfeasible):
        topological_order(g)


def test_bench_synthetic_spec_compiles_with_hand_computed_totals(tmp_path):
    """bench/run.py's scaling spec: InceptionA blocks (31 layers, 23 graph nodes each) on 192x35x35."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "synthetic_3.yaml"
    path.write_text(bench.synthetic_spec(3))
    from archspec.pipeline import compile_spec

    c = compile_spec(str(path))
    # per block: 208 x in_channels (the four convolutions reading the input) + 215,968 (the rest,
    # BatchNorm affine included); in_channels 192, then 256; fc 256 x 1000 + 1000
    assert c.analysis.totals.params == (208 * 192 + 215_968) + 2 * (208 * 256 + 215_968) + 257_000
    assert c.graph.number_of_nodes() == 23 * 3 + 4 and c.analysis.output == (1000,)
