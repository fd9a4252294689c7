"""diff, sequence alignment with bounded work: difflib's answer for the sizes networks have, and
a linear or n log n one for sequences of many thousand steps.

``difflib.SequenceMatcher`` finds the longest common block, then recurses on both sides of it;
when one key repeats (a Sequential of 2,000 ReLUs) each search is quadratic, and the whole takes
seconds for 2,000 steps and hours for 100,000. So: when ``len(a) * len(b)`` is at most ``SMALL``
(every stock network: its bodies have at most a few dozen steps) the answer is difflib's, byte for
byte as before; above it,

1. the common prefix and suffix are matched;
2. the middle is aligned by Myers' O((N + M) D) algorithm while its work stays under ``WORK``
   steps per element (a few insertions and removals, however long the sequences: D is small);
3. past that budget (many scattered differences), by the keys that occur once in each side,
   in order (patience diff: the longest increasing run of their positions, n log n), with the
   gaps between two such anchors aligned by difflib when they are small and left unmatched
   (a removal and an addition) when they are not.

Every step is linear in the lengths or n log n; ``bench/scale.py`` measures it.
"""
from __future__ import annotations

import bisect
import difflib
from collections import Counter

SMALL = 250_000  # len(a) * len(b) up to which difflib aligns, as it always did
GAP = 10_000  # a gap between two anchors that difflib still aligns
WORK = 20  # Myers' steps per element before the anchors take over


def opcodes(a: list, b: list) -> list:
    """As ``SequenceMatcher(None, a, b, autojunk=False).get_opcodes()``, with bounded work."""
    if len(a) * len(b) <= SMALL:
        return difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    out, i, j = [], 0, 0
    for ai, bj, size in matching_blocks(a, b):
        tag = "replace" if i < ai and j < bj else "delete" if i < ai else "insert" if j < bj else ""
        if tag:
            out.append((tag, i, ai, j, bj))
        i, j = ai + size, bj + size
        if size:
            out.append(("equal", ai, i, bj, j))
    return out


def matching_blocks(a: list, b: list) -> list:
    """(i, j, size) triples in order, ending with (len(a), len(b), 0), as difflib's."""
    n, m = len(a), len(b)
    if n * m <= SMALL:
        return [tuple(x) for x in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()]
    head = 0
    while head < min(n, m) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(n, m) - head and a[n - 1 - tail] == b[m - 1 - tail]:
        tail += 1
    mid_a, mid_b = a[head:n - tail], b[head:m - tail]
    middle = _myers(mid_a, mid_b, WORK * (len(mid_a) + len(mid_b)) + 1000)
    if middle is None:
        middle = _anchored(mid_a, mid_b)
    blocks = [(0, 0, head)] + [(i + head, j + head, k) for i, j, k in middle] + [(n - tail, m - tail, tail)]
    return _merged(blocks) + [(n, m, 0)]


def _merged(blocks: list) -> list:
    out: list = []
    for i, j, k in blocks:
        if not k:
            continue
        if out and out[-1][0] + out[-1][2] == i and out[-1][1] + out[-1][2] == j:
            out[-1] = (out[-1][0], out[-1][1], out[-1][2] + k)
        else:
            out.append((i, j, k))
    return out


def _myers(a: list, b: list, budget: int):
    """Matching blocks of a shortest edit script (Myers 1986), or None when it costs more than ``budget`` steps."""
    n, m = len(a), len(b)
    v = {1: 0}
    trace = []
    work = 0
    for d in range(n + m + 1):
        for k in range(-d, d + 1, 2):
            x = v[k + 1] if k == -d or (k != d and v[k - 1] < v[k + 1]) else v[k - 1] + 1
            y = x - k
            start = x
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[k] = x
            work += 1 + x - start
            if x >= n and y >= m:
                trace.append(dict(v))
                return _backtrack(trace, n, m)
        trace.append(dict(v))
        work += d
        if work > budget:
            return None
    return None  # not reached: d = n + m always ends


def _backtrack(trace: list, x: int, y: int) -> list:
    blocks = []
    for d in range(len(trace) - 1, 0, -1):
        v, k = trace[d - 1], x - y
        down = k == -d or (k != d and v[k - 1] < v[k + 1])
        prev_k = k + 1 if down else k - 1
        prev_x = v[prev_k]
        mid_x = prev_x if down else prev_x + 1
        if x > mid_x:
            blocks.append((mid_x, mid_x - k, x - mid_x))
        x, y = prev_x, prev_x - prev_k
    if x > 0:
        blocks.append((0, 0, x))
    return blocks[::-1]


def _anchored(a: list, b: list) -> list:
    """Blocks through the keys that occur once in each side, in the order both agree on."""
    count_a, count_b = Counter(a), Counter(b)
    where_b = {key: j for j, key in enumerate(b) if count_b[key] == 1}
    pairs = [(i, where_b[key]) for i, key in enumerate(a) if count_a[key] == 1 and key in where_b]
    # the longest run of pairs increasing in both positions (patience sorting, n log n)
    tops: list = []  # tops[h]: the smallest j ending a run of length h + 1
    ends: list = []  # ... and the index of its pair
    back = [-1] * len(pairs)
    for p, (_, j) in enumerate(pairs):
        h = bisect.bisect_left(tops, j)
        back[p] = ends[h - 1] if h else -1
        if h == len(tops):
            tops.append(j)
            ends.append(p)
        else:
            tops[h], ends[h] = j, p
    run, p = [], ends[-1] if ends else -1
    while p >= 0:
        run.append(pairs[p])
        p = back[p]
    blocks, i0, j0 = [], 0, 0
    for i, j in [*reversed(run), (len(a), len(b))]:
        blocks += _gap(a, b, i0, i, j0, j)
        if i < len(a):
            blocks.append((i, j, 1))
        i0, j0 = i + 1, j + 1
    return blocks


def _gap(a: list, b: list, i0: int, i1: int, j0: int, j1: int) -> list:
    """Blocks between two anchors: difflib's when the gap is small, else none."""
    if (i1 - i0) * (j1 - j0) > GAP or i1 <= i0 or j1 <= j0:
        return []
    found = difflib.SequenceMatcher(None, a[i0:i1], b[j0:j1], autojunk=False).get_matching_blocks()
    return [(i0 + x.a, j0 + x.b, x.size) for x in found if x.size]
