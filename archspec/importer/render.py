"""Templates -> the plain data write.dump turns into YAML: calls as a spec writes them (required
attributes positional, defaults left out), Sequentials with their repeats folded (no torch)."""
from __future__ import annotations

import itertools
from dataclasses import replace

from ..ops import OPS, REQUIRED
from .ir import Problem
from .template import Slot, TCall, TFn, TNamed, TOpt, TSeq, lit, walk

class Marked:
    """An item that could not be imported (--partial): ``identity`` with the reason beside it."""

    def __init__(self, problem: Problem):
        self.problem = problem


def fill(tree, texts: list | None = None):
    """Slot texts: the group's (a block body), else each value as a literal (the model's layers)."""
    counter = itertools.count()

    def text(s: Slot) -> Slot:
        j = next(counter)
        return replace(s, text=texts[j] if texts is not None else (s.text or lit(s.value)))

    return walk(tree, text)


def call_text(call: TCall) -> str:
    callee = call.callee
    if isinstance(callee, str):
        attrs = OPS[callee].attrs
        parts, keywords = [], False
        for a, (name, s) in zip(attrs, call.params):
            if a.default is not REQUIRED and s.text == lit(a.default):
                keywords = True
                continue
            if (a.default is REQUIRED or len(attrs) == 1) and not keywords:
                parts.append(s.text)
            else:
                keywords = True
                parts.append(f"{name}={s.text}")
        return f"{callee}({', '.join(parts)})" if parts else callee
    return block_call(callee.name, callee.args, {n: s.text for n, s in call.params})


def block_call(name: str, args: list, texts: dict) -> str:
    required = [a for a in args if a.default is REQUIRED]
    all_positional = len(required) >= 4
    parts, keywords = [], False
    for i, a in enumerate(args):
        text = texts[a.name]
        if a.default is not REQUIRED and text == lit(a.default):
            keywords = True
            continue
        positional = a.default is REQUIRED and (all_positional or (i == 0 and (len(args) > 1 or text == a.name)))
        if positional and not keywords:
            parts.append(text)
        else:
            keywords = True
            parts.append(f"{a.name}={text}")
    return f"{name}({', '.join(parts)})" if parts else name


def render_items(items: list) -> list:
    return [render_item(it) for it in items]


def render_item(it):
    if isinstance(it, TNamed):
        out = {it.name: render_value(it.value)}
        if it.cond is not None:
            out["if"] = it.cond
        return out
    if isinstance(it, TFn):
        return render_value(it.value)
    conds = it.conds or [None] * len(it.branches)
    merged = {it.kind: [_branch(b) if c is None else {"if": c, "body": render_items(b)} for b, c in zip(it.branches, conds)]}
    if it.split is not None:
        merged["split"] = list(it.split) if isinstance(it.split, tuple) else it.split
    return merged


def _branch(b: list):
    if len(b) == 1 and isinstance(b[0], TNamed):
        return render_item(b[0])
    return render_items(b)


def render_value(v):
    if isinstance(v, TCall):
        return call_text(v)
    if isinstance(v, TSeq) and v.names is not None:  # named entries are written out, each its key
        return [{name: render_value(e)} for name, e in zip(v.names, v.entries)]
    if isinstance(v, TSeq):
        return runs([{"if": e.cond, "body": [render_value(e.value)]} if isinstance(e, TOpt) else render_value(e)
                     for e in v.entries])
    return Marked(v.problem)


def runs(entries: list) -> list:
    """Consecutive repeats of one or more entries as ``{repeat: N, body: [...]}`` (the numbering is
    unchanged: a repeat unrolls in place)."""
    out, i = [], 0
    while i < len(entries):
        best = (1, 1)  # (length, count)
        for length in range(1, min(8, (len(entries) - i) // 2) + 1):
            body = entries[i:i + length]
            count = 1
            while entries[i + count * length:i + (count + 1) * length] == body:
                count += 1
            if count > 1 and length * count > best[0] * best[1]:
                best = (length, count)
        length, count = best
        if count > 1 and not any(isinstance(e, Marked) for e in entries[i:i + length]):
            out.append({"repeat": count, "body": entries[i:i + length]})
        else:
            length, count = 1, 1
            out.append(entries[i])
        i += length * count
    return out
