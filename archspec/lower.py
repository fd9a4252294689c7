"""Stage 4, lower: the module tree -> a ``Graph`` of typed ``Node``s (archspec/graph.py), one per
primitive op, added in forward order: every node after its inputs.

Edges are tensors. Each node records its op, attributes, module path, the module it belongs to,
the part it belongs to (``main`` or an aux head's name), its source location and its ordered
inputs (concat order matters). A functional op or merge step of the module tree gets its node as
``step.node``; ``nodes_by_item`` gives the nodes each spec item became. ``graph.modules`` maps every module path to its ``Span`` (the nodes that enter and
leave it), which is how analysis reports per-module shapes and how aux heads find the tensor they
read.
"""
from __future__ import annotations

from .expand import Absent, Apply, Expanded, Func, Group, Loop, Merge, Module
from .graph import Graph, Node, Span


class _Lowerer:
    def __init__(self, g: Graph):
        self.g = g
        self.counters: dict = {}

    def fresh(self, owner: str, stem: str) -> str:
        key = (owner, stem)
        n = self.counters.get(key, 0)
        self.counters[key] = n + 1
        base = f"{owner}/{stem}" if owner else f"/{stem}"
        return base if n == 0 else f"{base}_{n}"

    def module(self, mod: Module, x: Node) -> Node:
        span = self.g.modules[mod.path] = Span(mod, x)
        if mod.kind == "op":
            out = self.g.add(Node(mod.path, mod.type, mod.args, mod.path, [x], mod.part, mod.loc, mod))
        else:
            out = self.steps(mod.body, x, mod)
        span.output = out
        return out

    def steps(self, steps: list, x: Node, owner: Module) -> Node:
        for step in steps:
            x = self.step(step, x, owner)
        return x

    def step(self, step, x: Node, owner: Module) -> Node:
        if isinstance(step, Apply):
            return self.module(step.module, x)
        if isinstance(step, Func):
            step.node = Node(self.fresh(owner.path, step.op), step.op, step.attrs, owner.path, [x], owner.part,
                             step.loc, owner)
            return self.g.add(step.node)
        if isinstance(step, Merge) and len(step.branches) == 1 and step.split is None:
            return self.steps(step.branches[0], x, owner)  # a merge whose other branches are absent: the branch
        if isinstance(step, Merge):
            heads = [x] * len(step.branches)
            if step.split is not None:  # branch i reads its chunk of the channels: one node per branch
                heads = [self.g.add(Node(self.fresh(owner.path, "split"), "split", {"split": step.split, "index": i},
                                         owner.path, [x], owner.part, step.loc, owner, [step.labels[i]]))
                         for i in range(len(step.branches))]
                step.chunks = heads
            outs = [self.steps(branch, head, owner) for branch, head in zip(step.branches, heads)]
            step.node = Node(self.fresh(owner.path, step.kind), step.kind, {}, owner.path, outs, owner.part, step.loc,
                             owner, step.labels)
            return self.g.add(step.node)
        if isinstance(step, Absent):
            return x
        if isinstance(step, Group):
            return self.steps(step.steps, x, owner)
        if isinstance(step, Loop):
            for iteration in step.iterations:
                x = self.steps(iteration.steps, x, owner)
            return x
        raise TypeError(step)


def lower(expanded: Expanded) -> Graph:
    """Build the dataflow graph of the main network and its aux heads."""
    model = expanded.model
    g = Graph(expanded.name, expanded.input)
    lw = _Lowerer(g)
    x = g.add(Node("input", "input", {"shape": expanded.input}, "", [], "main", model.loc, model))
    span = g.modules[""] = Span(model, x)
    span.output = g.output = lw.steps(model.body, x, model)
    for head in expanded.aux:
        g.aux[head.name] = lw.module(head.module, g.modules[head.source].output)
        g.loss_weights[head.name] = head.loss_weight
    if expanded.aux:  # present modules in registration order: aux heads where they are registered
        modules = g.modules
        g.modules = {m.path: modules[m.path] for m in model.walk() if m.path in modules}
    return g


def nodes_by_item(model, graph) -> dict:
    """id(spec item) -> the graph nodes its op became, in every instance of its block and every
    repetition of a loop; None among them where it follows a module whose ``if:`` is false, a
    conditional group or branch, or a loop in a body (its input is then what came before, which
    another configuration of the arguments would not share), or where an argument of type op holds
    it."""
    out: dict = {}
    for module in model.walk():
        if module.kind == "op":
            # an argument of type op is written as a call of the class it holds (``act()``): never in place
            via_argument = getattr(getattr(module.item, "call", None), "name", module.type) != module.type
            out.setdefault(id(module.item), []).append(None if via_argument else graph.node(module.path))
        _step_nodes(module.body, out, module.kind == "sequential")
    return out


def _step_nodes(steps: list, out: dict, in_sequential: bool, after: bool = False) -> bool:
    """Record the nodes of ``steps``; returns whether the step after them follows a construct whose
    configuration varies."""
    for step in steps:
        if isinstance(step, Func):
            out.setdefault(id(step.item), []).append(None if after else step.node)
        elif isinstance(step, Merge):
            for branch in step.branches:
                _step_nodes(branch, out, in_sequential)
        elif isinstance(step, Apply) and after and step.module.kind == "op":
            out.setdefault(id(step.module.item), []).append(None)
        elif isinstance(step, Group):
            _step_nodes(step.steps, out, in_sequential, after)
        elif isinstance(step, Loop):
            for iteration in step.iterations:
                after = _step_nodes(iteration.steps, out, in_sequential, after)
        after = isinstance(step, (Absent, Group)) or (isinstance(step, Merge) and step.present is not None) or \
            (isinstance(step, Loop) and not in_sequential)
    return after
