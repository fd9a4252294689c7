"""diff, locations compacted: inception{3a,3b}.branch3.1.conv."""
from __future__ import annotations


def compact(paths: list) -> list:
    """Fold paths that differ in one dotted component into brace patterns, keeping first-seen order.

    >>> compact(["inception3a.branch3.1.conv", "inception3b.branch3.1.conv", "conv1.bn"])
    ['inception3{a,b}.branch3.1.conv', 'conv1.bn']
    """
    pats = [tuple((p,) for p in path.split(".")) for path in paths]
    changed = True
    while changed:
        changed = False
        for pos in reversed(range(max((len(p) for p in pats), default=0))):
            # key -> (the first pattern, the values at pos in first-seen order): a dict, so that
            # folding 100,000 paths into one pattern is linear (bench/scale.py)
            merged: dict = {}
            for p in pats:
                if len(p) <= pos:
                    merged.setdefault(("short", p), (p, None))
                    continue
                key = (len(p), p[:pos], p[pos + 1:])
                if key in merged:
                    merged[key][1].update(dict.fromkeys(p[pos]))
                    changed = True
                else:
                    merged[key] = (p, dict.fromkeys(p[pos]))
            pats = [p if values is None else p[:pos] + (tuple(values),) + p[pos + 1:] for p, values in merged.values()]
    return [".".join(_braces(c) for c in p) for p in pats]


def _braces(values: tuple) -> str:
    if len(values) == 1:
        return values[0]
    pre = _common(values)
    suf = _common([v[len(pre):][::-1] for v in values])[::-1]
    while suf and suf[0].isalnum():  # a suffix starts at a separator: {2a,2b}_3x3, not {relu_,pool_s}2
        suf = suf[1:]
    mid = [v[len(pre):len(v) - len(suf)] for v in values]
    if any(not m for m in mid):
        pre, suf, mid = "", "", list(values)
    return pre + "{" + ",".join(mid) + "}" + suf


def _common(values) -> str:
    out = []
    for chars in zip(*values):
        if len(set(chars)) != 1:
            break
        out.append(chars[0])
    return "".join(out)
