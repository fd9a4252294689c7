"""A traced model -> the spec document (plain data for write.dump): blocks, layers, aux heads,
the outputs' layout and the totals ``check`` verifies."""
from __future__ import annotations

from ..ops import OPS
from ..ops import REQUIRED
from .blocks import Group, build_groups, name_groups
from .render import fill, render_items, render_value
from .template import TCall, TFn, TMarked, lit, tail_slot
from .write import Commented

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's (Szegedy et al. 2015); a model does not say how it was trained


def _block(g: Group) -> dict:
    out = {"doc": f"{g.cls} ({len(g.members)} instance{'s' if len(g.members) > 1 else ''} in the model)."}
    if g.args:
        out["args"] = {a.name: a.type if a.default is REQUIRED else f"{a.type} = {lit(a.default)}" for a in g.args}
    out["layers"] = render_items(fill(g.template, g.texts))
    return out


def _aux_module(mod, t, num_classes: int):
    """The head's module: a block call whose argument carries num_classes says so."""
    value = t.value(mod, mod.path)
    if isinstance(value, TCall) and not isinstance(value.callee, str) and isinstance(value.callee, Group):
        tail = tail_slot(fill(value.callee.template, value.callee.texts))
        value = fill(value)
        for name, s in value.params:
            if tail is not None and tail.text == name and s.value == num_classes:
                s.text = "num_classes"
        return render_value(value)
    value = fill(value)
    tail = tail_slot([TFn(value)])
    if tail is not None and tail.value == num_classes:
        tail.text = "num_classes"
    return render_value(value)


def _outputs(traced) -> dict | None:
    if traced.outputs is None:
        return None
    type_name, pairs = traced.outputs
    default = [("logits", "main")] + [(a.name, a.name) for a in traced.aux]
    if type_name is None and pairs == default:
        return None
    out = {"type": type_name} if type_name else {}
    out["fields"] = {f: s for f, s in pairs}
    return out


def document(traced, name: str, description: str, input_shape, stock=None) -> dict:
    """The spec as plain data, in the order a spec is read."""
    root = traced.root
    t, groups = build_groups(root, [a.mod for a in traced.aux], stock, traced.num_classes)
    taken = set(OPS) | (stock.names() if stock is not None else set()) | {root.short}
    name_groups(groups, taken)
    layers = fill(t.items(root.body)) if root.kind == "block" else [TFn(TMarked(root.problem))]
    tail = tail_slot(layers)
    if tail is not None and tail.value == traced.num_classes:
        tail.text = "num_classes"
    doc = {"archspec": 1, "name": name}
    if root.short.isidentifier() and not root.short.startswith("_") and root.short != name:
        doc["class_name"] = root.short
    doc.update({"description": description, "input": list(input_shape), "num_classes": traced.num_classes})
    if stock is not None and stock.used():
        doc["use"] = stock.used()
    if groups:
        doc["blocks"] = {g.name: _block(g) for g in groups}
    doc["layers"] = render_items(layers)
    if traced.aux:
        doc["aux"] = {a.name: _aux(a, t, traced.num_classes) for a in traced.aux}
    outputs = _outputs(traced)
    if outputs:
        doc["outputs"] = outputs
    if not traced.problems:
        tot = traced.totals
        doc["expect"] = {k: tot[k] for k in ("params", "params_eval", "buffers", "macs", "output")}
    return doc


def _aux(a, t, num_classes: int) -> dict:
    out = {"from": a.source}
    if a.after != a.source:
        out["after"] = a.after
    out["loss_weight"] = Commented(AUX_LOSS_WEIGHT, "archspec import's default: the model does not say; edit it")
    out["module"] = _aux_module(a.mod, t, num_classes)
    return out
