"""Stage 4, lower: the module tree -> a ``Graph`` (networkx's interface, archspec/graph.py) with
one node per primitive op, added in forward order: every node after its inputs.

Edges are tensors. Each node records its op, attributes, module path, the part it belongs to
(``main`` or an aux head's name), its source location and its ordered inputs (concat order
matters). ``graph.graph["modules"]`` maps every module path to the nodes that enter and leave it,
which is how analysis reports per-module shapes and how aux heads find the tensor they read.
"""
from __future__ import annotations

from .expand import Absent, Apply, Expanded, Func, Merge, Module
from .graph import Graph


class _Lowerer:
    def __init__(self, g: Graph):
        self.g = g
        self.counters: dict = {}
        self.modules: dict = g.graph["modules"]

    def add(self, node_id: str, inputs: list, **attrs) -> str:
        self.g.add_node(node_id, inputs=list(inputs), **attrs)
        for src in dict.fromkeys(inputs):
            self.g.add_edge(src, node_id)
        return node_id

    def fresh(self, owner: str, stem: str) -> str:
        key = (owner, stem)
        n = self.counters.get(key, 0)
        self.counters[key] = n + 1
        base = f"{owner}/{stem}" if owner else f"/{stem}"
        return base if n == 0 else f"{base}_{n}"

    def module(self, mod: Module, x: str) -> str:
        entry = {"type": mod.type, "kind": mod.kind, "input": x, "output": x, "part": mod.part, "loc": mod.loc, "module": mod}
        self.modules[mod.path] = entry
        if mod.kind == "op":
            out = self.add(mod.path, [x], op=mod.type, attrs=mod.args, path=mod.path, module=True,
                           part=mod.part, loc=mod.loc)
        else:
            out = self.steps(mod.body, x, mod)
        entry["output"] = out
        return out

    def steps(self, steps: list, x: str, owner: Module) -> str:
        for step in steps:
            x = self.step(step, x, owner)
        return x

    def step(self, step, x: str, owner: Module) -> str:
        if isinstance(step, Apply):
            return self.module(step.module, x)
        if isinstance(step, Func):
            node = self.fresh(owner.path, step.op)
            self.g.graph["step_nodes"][id(step)] = node
            return self.add(node, [x], op=step.op, attrs=step.attrs, path=owner.path, module=False,
                            part=owner.part, loc=step.loc)
        if isinstance(step, Merge):
            outs = [self.steps(branch, x, owner) for branch in step.branches]
            node = self.fresh(owner.path, step.kind)
            self.g.graph["step_nodes"][id(step)] = node
            return self.add(node, outs, op=step.kind, attrs={}, path=owner.path, module=False,
                            part=owner.part, loc=step.loc, labels=step.labels, owner_type=owner.type)
        if isinstance(step, Absent):
            return x
        raise TypeError(step)


def lower(ex: Expanded) -> Graph:
    """Build the dataflow graph of the main network and its aux heads."""
    g = Graph(name=ex.name, input=ex.input, modules={}, aux={}, loss_weights={}, step_nodes={})
    lw = _Lowerer(g)
    lw.add("input", [], op="input", attrs={"shape": ex.input}, path="", module=False, part="main",
           loc=ex.model.loc)
    g.graph["modules"][""] = {"type": ex.model.type, "kind": "model", "input": "input", "output": None,
                               "part": "main", "loc": ex.model.loc, "module": ex.model}
    out = lw.steps(ex.model.body, "input", ex.model)
    g.graph["modules"][""]["output"] = out
    g.graph["output"] = out
    for head in ex.aux:
        source = g.graph["modules"][head.source]["output"]
        g.graph["aux"][head.name] = lw.module(head.module, source)
        g.graph["loss_weights"][head.name] = head.loss_weight
    if ex.aux:  # present modules in registration order: aux heads where they are registered
        modules = g.graph["modules"]
        g.graph["modules"] = {m.path: modules[m.path] for m in ex.model.walk() if m.path in modules}
    return g
