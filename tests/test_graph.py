"""archspec/graph.py: the pipeline's graph keeps networkx's interface, and what the checking stages
compute without networkx (topological order, reachability, depth) equals networkx's algorithms."""
from __future__ import annotations

import copy
import os

import networkx as nx
import pytest

from conftest import ROOT, SPECS

from archspec.errors import ArchspecError
from archspec.graph import Graph, Node, is_topological, topological_order
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
        dag.edges[u, v]["w"] = int(v.part == "main" and OPS[v.op].weight_layer)
    path = nx.dag_longest_path(dag, weight="w")
    assert sum(dag.edges[u, v]["w"] for u, v in zip(path, path[1:])) == c.analysis.totals.depth
    # lint found every node live: every node is an output or an ancestor of one
    outputs = [g.output, *g.aux.values()]
    assert set(outputs).union(*(nx.ancestors(dag, o) for o in outputs)) == set(g)
    # every edge is an input of its target; every node's inputs came before it
    assert {(u, v) for u, v in g.edges} == {(i, n) for n in g for i in n.inputs}


def test_networkx_view_shares_the_node_metadata(compiled):
    g = compiled("specs/googlenet.yaml").graph
    view = g.nx
    conv = g.node("conv1.conv")
    assert isinstance(view, nx.DiGraph) and view is g.nx and view.name == "googlenet"
    assert view.nodes[conv] is conv.meta is g.nodes[conv] and conv.meta["shape"] == (64, 112, 112)
    assert list(view.nodes) == list(g) and list(view.edges) == list(g.edges)
    assert view.number_of_edges() == g.number_of_edges() == len(g.edges)
    x = g.node("input")
    assert g.in_degree(x) == 0 and g.out_degree(x) == 1  # the rest of DiGraph's interface


def test_step_nodes_are_the_graph_nodes(compiled):
    """lower attaches each functional op and merge of the module tree to its node."""
    c = compiled("specs/googlenet.yaml")
    block = next(m for m in c.expanded.model.walk() if m.path == "inception3a")
    (merge,) = block.body
    assert merge.node is c.graph.node("inception3a/concat") and merge.node.owner is block
    assert [c.graph.modules[b[-1].module.path].output for b in merge.branches] == merge.node.inputs
    assert merge.node.labels == ["branch1", "branch2", "branch3", "branch4"]
    flatten = next(s for s in c.expanded.model.body if getattr(s, "op", None) == "flatten")
    assert flatten.node is c.graph.node("/flatten") and flatten.node.meta["shape"] == (1024,)


def _tiny() -> Graph:
    g = Graph("tiny", (3, 8, 8))
    x = g.add(Node("input", "input", {"shape": (3, 8, 8)}, "", []))
    conv = g.add(Node("conv", "conv2d", {}, "", [x]))
    g.add(Node("relu", "relu", {}, "", [conv]))
    g.add(Node("/add", "add", {}, "", [conv, conv]))
    return g


def test_graph_interface():
    g = _tiny()
    x, conv, relu, add = g
    assert [n.name for n in g] == ["input", "conv", "relu", "/add"] and len(g) == 4 and conv in g
    assert Node("conv", "conv2d", {}, "", [x]) not in g  # nodes are compared by identity
    assert g.node("relu") is relu and repr(relu) == "Node('relu', relu)"
    conv.meta["shape"] = (8, 6, 6)
    assert g.nodes[conv] is conv.meta and list(g.nodes(data="shape")) == [(x, None), (conv, (8, 6, 6)), (relu, None), (add, None)]
    assert list(g.edges) == [(x, conv), (conv, relu), (conv, add)] and (conv, add) in g.edges and (x, add) not in g.edges
    assert list(g.successors(conv)) == [relu, add] and list(g.predecessors(add)) == [conv]
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 3
    with pytest.raises(ValueError, match="duplicate node name 'relu'"):
        g.add(Node("relu", "relu", {}, "", [conv]))
    copy.deepcopy(g)  # private names are not looked up in networkx
    with pytest.raises(AttributeError):
        g._missing


def _looped() -> Graph:
    g = Graph("looped", (3, 8, 8))
    x = g.add(Node("input", "input", {}, "", []))
    a = Node("a", "relu", {}, "", [x])
    b = Node("b", "relu", {}, "", [a])
    a.inputs.append(b)  # a reads b, which reads a
    g.add(a)
    g.add(b)
    g.output = b
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
