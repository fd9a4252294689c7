"""Instances of one class that differ only in named items some of them lack (torchvision's ResNet
blocks with and without ``downsample``, Inception-ResNet's last ``Block8`` without its ReLU) are one
block: the items only some have carry ``if: flag`` (docs/spec.md, ``if:``), the flag a bool
argument of the block. Anything else that differs makes another block (a variant, ``Name2``).

``union`` aligns two templates item by item (named items by name, merges branch by branch);
``project`` lays one instance's template over the union, a missing item's slots holding ``HOLE``
(any value will do: the item is not built), and says which optional items the instance has.
"""
from __future__ import annotations

from dataclasses import replace

from .template import TMerge, TNamed, shape_of, walk

OPTIONAL = "?"  # the cond of an item only some instances have, until its flag is named
HOLE = object()  # the value of a slot inside an item an instance lacks


def _names(items: list) -> set:
    return {it.name for it in items if isinstance(it, TNamed)}


def union(a: list, b: list) -> list | None:
    """The items of both, those in only one optional; None when they differ otherwise."""
    out: list = []
    i = j = 0
    while i < len(a) or j < len(b):
        x = a[i] if i < len(a) else None
        y = b[j] if j < len(b) else None
        merged = _merge(x, y) if x is not None and y is not None else None
        if merged is not None:
            out.append(merged)
            i, j = i + 1, j + 1
        elif isinstance(x, TNamed) and x.name not in _names(b[j:]):
            out.append(replace(x, cond=OPTIONAL))
            i += 1
        elif isinstance(y, TNamed) and y.name not in _names(a[i:]):
            out.append(replace(y, cond=OPTIONAL))
            j += 1
        else:
            return None
    return out


def _merge(x, y):
    if isinstance(x, TNamed) and isinstance(y, TNamed):
        same = x.name == y.name and x.cond in (None, OPTIONAL) and shape_of(x.value) == shape_of(y.value)
        return x if same else None
    if isinstance(x, TMerge) and isinstance(y, TMerge):
        if x.kind != y.kind or repr(x.split) != repr(y.split) or len(x.branches) != len(y.branches):
            return None
        branches = [union(p, q) for p, q in zip(x.branches, y.branches)]
        return None if any(b is None for b in branches) else replace(x, branches=branches)
    if type(x) is type(y) and not isinstance(x, TNamed) and shape_of(x) == shape_of(y):
        return x
    return None


def optionals(items: list) -> list:
    """The optional items of a union, in the order ``project`` gives their flags."""
    out = []
    for it in items:
        if isinstance(it, TNamed) and it.cond == OPTIONAL:
            out.append(it)
        elif isinstance(it, TMerge):
            for b in it.branches:
                out.extend(optionals(b))
    return out


def project(u: list, t: list) -> tuple:
    """(``t`` in the shape of the union ``u``, [whether ``t`` has each optional item])."""
    out, flags = [], []
    j = 0
    for x in u:
        y = t[j] if j < len(t) else None
        if isinstance(x, TNamed) and x.cond == OPTIONAL:
            has = isinstance(y, TNamed) and y.name == x.name
            flags.append(has)
            out.append(replace(y, cond=OPTIONAL) if has else walk(x, lambda s: replace(s, value=HOLE)))
            j += 1 if has else 0
            continue
        j += 1
        if isinstance(x, TMerge):
            branches = []
            for bu, bt in zip(x.branches, y.branches):
                items, more = project(bu, bt)
                branches.append(items)
                flags += more
            y = replace(y, branches=branches)
        out.append(y)
    return out, flags
