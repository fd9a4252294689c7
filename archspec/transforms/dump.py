"""A validated spec written back as stable YAML text, in the spec language's own forms.

Used by the golden-pair tests (tests/golden/transforms/): input spec -> this text after the
transforms. Calls keep their text as written (or as the rewrite wrote them); keys keep the
spec's order; nothing depends on paths or on the machine.
"""
from __future__ import annotations

import ast

import yaml

from ..validate import CallItem, ForItem, GroupItem, MergeItem, NamedItem, RepeatItem


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(_value(x) for x in v) + ")"
    return repr(v)


def _args(args: list) -> dict:
    return {a.name: a.type if a.required else f"{a.type} = {_value(a.default)}" for a in args}


def _item(item):
    if isinstance(item, CallItem):
        return item.call.text
    if isinstance(item, NamedItem):
        body = [_item(x) for x in item.seq] if item.seq is not None else item.call.text
        if not item.name:  # a nested Sequential inside a Sequential
            return body
        out = {item.name: body}
        if item.cond is not None:
            out["if"] = ast.unparse(item.cond)
        return out
    if isinstance(item, MergeItem):
        conds = item.conds or [None] * len(item.branches)
        return {item.kind: [[_item(x) for x in branch] if c is None else {"if": ast.unparse(c), "body": [_item(x) for x in branch]}
                            for branch, c in zip(item.branches, conds)]}
    return _construct(item)


def _construct(item) -> dict:
    """A loop or a conditional group."""
    body = [_item(x) for x in item.body]
    if isinstance(item, RepeatItem):
        count = item.count.value if isinstance(item.count, ast.Constant) else ast.unparse(item.count)
        return {"repeat": count, **({"as": item.var} if item.var else {}), "body": body}
    if isinstance(item, ForItem):
        return {"for": list(item.names), "in": [[ast.unparse(c) for c in row] for row in item.rows], "body": body}
    if isinstance(item, GroupItem):
        return {"if": ast.unparse(item.cond), "body": body}
    raise TypeError(item)


def _rewrite(r) -> dict:
    return {"transform": r.transform, "rule": r.rule, "site": r.site, "line": r.loc.line,
            "before": r.before, "after": list(r.after), "modules": list(r.paths),
            "weights_per_channel_pair": list(r.weights), "params": list(r.params), "macs": list(r.macs)}


def dump(resolved, rewrites=()) -> str:
    """The spec's blocks, layers and aux heads (and what each rewrite changed) as YAML text."""
    doc: dict = {"name": resolved.name}
    if resolved.args:
        doc["args"] = _args(resolved.args)
    doc["blocks"] = {name: {"args": _args(b.args), "layers": [_item(x) for x in b.layers]}
                     for name, b in resolved.blocks.items()}
    doc["layers"] = [_item(x) for x in resolved.layers]
    if resolved.aux:
        doc["aux"] = {a.name: {"from": a.source, "after": a.after, "loss_weight": a.loss_weight,
                               "module": _item(a.module)[a.name]} for a in resolved.aux}
    if rewrites:
        doc["rewrites"] = [_rewrite(r) for r in rewrites]
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
