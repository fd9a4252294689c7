"""Instances of one class that differ only in parts some of them lack are one block, each such
part written with ``if:`` (docs/spec.md, ``if:``): a named item (ResNet's ``downsample``), an
entry of a Sequential (MobileNet v2's expansion 1x1, ``{if: ..., body: [...]}``), or the identity
branch of a merge around items the others have bare (the residual shortcut that exists only where
the shapes agree: ``add: [[...], {if: ..., body: []}]``). blocks.py writes each condition as an
expression over the block's arguments where one separates the instances, else as a bool flag.
Anything else that differs makes another block (a variant, ``Name2``).

``union`` aligns two templates (``_align``: the alignment with the fewest optional parts, then the
fewest differing numbers, so that a 1x1 expansion is not taken for the 3x3 depthwise that follows
it); ``project`` lays one instance's template over the union with the same alignment, a missing
part's slots holding ``HOLE`` (any value will do: the part is not built), and says which optional
parts the instance has, in the order of ``optionals``.
"""
from __future__ import annotations

from dataclasses import replace

from .template import TMerge, TNamed, TOpt, TSeq, shape_of, slots, walk

OPTIONAL = "?"  # the cond of a part only some instances have, until its condition is written
HOLE = object()  # the value of a slot inside a part an instance lacks
_ABSENT = 1000  # the cost of an optional part, against 1 a differing number
_NONE = (float("inf"), None, None)


def union(a: list, b: list) -> list | None:
    """The items of both, those in only one optional; None when they differ otherwise. The parts
    made optional come from one side only (a part where the other has a different one is no
    variant of one block)."""
    best = min((_align(a, b, side, False) for side in ("a", "b")), key=lambda r: r[0])
    return best[1]


def project(u: list, t: list) -> tuple:
    """(``t`` in the shape of the union ``u``, [whether ``t`` has each optional part])."""
    _, out, flags = _align(u, t, None, False)
    assert out is not None, "an instance does not fit its group's union"
    return out, flags


def optionals(items: list) -> list:
    """The optional parts of a union, in the order ``project`` gives their flags: [(the part (a
    branch's items for a branch), a function that sets its condition's text, a name for a flag)]."""
    out: list = []
    for it in items:
        out += _optionals_in(it)
    return out


def _optionals_in(it, hint: str = "") -> list:
    out: list = []
    if isinstance(it, (TNamed, TOpt)) and it.cond == OPTIONAL:
        out.append((it, lambda c, it=it: setattr(it, "cond", c), it.name if isinstance(it, TNamed) else hint))
    if isinstance(it, (TNamed, TOpt)):
        out += _optionals_in(it.value, it.name if isinstance(it, TNamed) else hint)
    elif isinstance(it, TSeq):
        for k, e in enumerate(it.entries):
            out += _optionals_in(e, f"{hint}_{k}" if hint else f"entry{k}")
    elif isinstance(it, TMerge):
        for k, b in enumerate(it.branches):
            if it.conds and it.conds[k] == OPTIONAL:
                out.append((b, lambda c, it=it, k=k: it.conds.__setitem__(k, c), "shortcut" if not b else "branch"))
            out += optionals(b)
    return out


def _holed(x) -> tuple:
    """(``x`` with every slot a HOLE, False for each optional part in it): a part not built."""
    return walk(x, lambda s: replace(s, value=HOLE)), [False] * len(_optionals_in(x))


def _shortcut(m) -> int | None:
    """The index of the empty branch of a two-branch merge without split around other items."""
    if not isinstance(m, TMerge) or m.split is not None or len(m.branches) != 2:
        return None
    empty = [k for k, b in enumerate(m.branches) if not b]
    return empty[0] if len(empty) == 1 else None


def _align(a: list, b: list, side, seq: bool) -> tuple:
    """(cost, items, flags) of the cheapest alignment of ``a`` and ``b``; items None if none.

    Union (``side`` "a" or "b": the side whose parts may become optional): items are the union.
    Projection (``side`` None): ``a`` is a union and ``b`` one of its instances, laid out in
    ``a``'s shape (``b`` must fit with nothing left over); flags say which optional parts of ``a``
    it has. ``seq``: the lists are a Sequential's entries."""
    proj = side is None
    memo: dict = {}

    def rest(i: int, j: int) -> tuple:
        if (i, j) not in memo:
            memo[(i, j)] = (0, [], []) if i == len(a) and j == len(b) else _NONE
            best = memo[(i, j)]
            for (cost, item, flags), ni, nj in _steps(a, b, i, j, side, seq):
                r = rest(ni, nj)  # every step consumes something: no cycles
                if r[1] is not None and cost + r[0] < best[0]:
                    best = (cost + r[0], [item] + r[1], flags + r[2])
            memo[(i, j)] = best
        return memo[(i, j)]

    return rest(0, 0)


def _steps(a: list, b: list, i: int, j: int, side, seq: bool):
    """The ways to go on from ``a[i]`` and ``b[j]``: ((cost, item, flags), next i, next j)."""
    x = a[i] if i < len(a) else None
    y = b[j] if j < len(b) else None
    if x is not None and y is not None:
        m = _match(x, y, side, seq)
        if m is not None:
            yield m, i + 1, j + 1
    if x is not None and _optional(x, side in (None, "b"), seq, b[j:]):
        out, flags = _holed(x) if side is None else (_opt(x), [])
        yield (_ABSENT, out, flags), i + 1, j
    if side is not None and y is not None and _optional(y, side == "a", seq, a[i:]):
        yield (_ABSENT, _opt(y), []), i, j + 1
    if seq:
        return
    for k in _wrap_ends(x, b, j, side in (None, "b")):
        m = _wrap(x, b[j:k], side)
        if m is not None:
            yield m, i + 1, k
    for k in _wrap_ends(y, a, i, side == "a") if side is not None else ():
        m = _wrap(y, a[i:k], "a" if side == "b" else "b")  # the branch is b's: the sides swap
        if m is not None:
            yield m, k, j + 1


def _optional(x, old_only: bool, seq: bool, other: list) -> bool:
    """Whether ``x`` may be absent on the other side (``old_only``: if it is optional already)."""
    if old_only:
        return isinstance(x, (TNamed, TOpt)) and x.cond == OPTIONAL
    if seq:
        return not isinstance(x, TOpt) or x.cond == OPTIONAL
    # a named item only some have: unless the other side has one of that name further on
    return isinstance(x, TNamed) and x.cond in (None, OPTIONAL) and all(
        not (isinstance(o, TNamed) and o.name == x.name) for o in other)


def _opt(x):
    return replace(x, cond=OPTIONAL) if isinstance(x, (TNamed, TOpt)) else TOpt(x, OPTIONAL)


def _wrap_ends(m, other: list, j: int, old_only: bool) -> range:
    """Where the run of ``other`` from ``j`` that ``m``'s non-empty branch may stand for ends."""
    k = _shortcut(m)
    if k is None or (old_only and not (m.conds and m.conds[k] == OPTIONAL)):
        return range(0)
    return range(j + 1, len(other) + 1)


def _wrap(m: TMerge, run: list, side):
    """``m``, a merge with an identity branch, against items that lack it: the branch optional."""
    k = _shortcut(m)
    cost, items, flags = _align(m.branches[1 - k], run, side, False)
    if items is None:
        return None
    branches = [[], items] if k == 0 else [items, []]
    if side is None:
        conds = m.conds
        flags = [False] + flags if k == 0 else flags + [False]
    else:
        conds = [OPTIONAL if i == k else (m.conds[i] if m.conds else None) for i in range(2)]
    return cost + _ABSENT, replace(m, branches=branches, conds=conds), flags


def _match(x, y, side, seq: bool):
    """(cost, the matched item, flags) for two parts in one place, or None."""
    if isinstance(x, TOpt) or isinstance(y, TOpt):
        return _match_entry(x, y, side) if seq else None
    if isinstance(x, TNamed) and isinstance(y, TNamed):
        return _match_named(x, y, side)
    if isinstance(x, TSeq) and isinstance(y, TSeq):
        cost, entries, flags = _align(x.entries, y.entries, side, True)
        return None if entries is None else (cost, TSeq(entries), flags)
    if isinstance(x, TMerge) and isinstance(y, TMerge):
        return _match_merge(x, y, side)
    if type(x) is type(y) and not isinstance(x, (TNamed, TSeq, TMerge)) and shape_of(x) == shape_of(y):
        out = y if side is None else x
        return sum(1 for s, t in zip(slots(x), slots(y)) if s.value != t.value), out, []
    return None


def _match_entry(x, y, side):
    """An optional Sequential entry and an entry in its place."""
    inner = _match(x.value if isinstance(x, TOpt) else x, y.value if isinstance(y, TOpt) else y, side, True)
    if inner is None:
        return None
    cost, item, flags = inner
    if side is None:  # x is the union's optional entry, present here
        return cost, TOpt(item, x.cond), [True] + flags if x.cond == OPTIONAL else flags
    return cost, TOpt(item, OPTIONAL), flags


def _match_named(x: TNamed, y: TNamed, side):
    if x.name != y.name or y.cond not in (None, OPTIONAL) or x.cond not in (None, OPTIONAL):
        return None
    inner = _match(x.value, y.value, side, False)
    if inner is None:
        return None
    cost, value, flags = inner
    if side is None:
        return cost, replace(y, value=value, cond=x.cond), ([True] + flags if x.cond == OPTIONAL else flags)
    return cost, replace(x, value=value, cond=OPTIONAL if OPTIONAL in (x.cond, y.cond) else None), flags


def _match_merge(x: TMerge, y: TMerge, side):
    if x.kind != y.kind or repr(x.split) != repr(y.split) or len(x.branches) != len(y.branches):
        return None
    n = len(x.branches)
    xc, yc = x.conds or [None] * n, y.conds or [None] * n
    cost, branches, flags = 0, [], []
    for k, (p, q) in enumerate(zip(x.branches, y.branches)):
        c, items, fl = _align(p, q, side, False)
        if items is None:
            return None
        cost, flags = cost + c, flags + ([True] if side is None and xc[k] == OPTIONAL else []) + fl
        branches.append(items)
    if side is None:
        return cost, replace(y, branches=branches, conds=x.conds), flags
    conds = [OPTIONAL if OPTIONAL in (xc[k], yc[k]) else None for k in range(n)]
    return cost, replace(x, branches=branches, conds=conds if OPTIONAL in conds else None), flags
