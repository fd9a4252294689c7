"""diff: two compiled specs -> the changes between them, grouped, with exact deltas.

The two module trees are walked together. Registered modules are matched by path (a named
attribute by its name, an ``nn.Sequential`` entry by position); functional ops and merges are
aligned in order inside their module. Where the two bodies part ways, the stretch is cut at the
points where both sides produce the same tensor (same shape and receptive field): a stretch that
ends at such a point is a rewrite (``5x5 conv -> two 3x3``), reported as one *replaced* change.
A removed and an added module with the same structure are a *renamed* module.

Each change is one fact about one place: ``conv2d kernel 5x5 -> 3x3, padding 2 -> 1`` at
``inception3a.branch3.1.conv``. A leaf whose attributes differ in several independent ways gives
one change per way (geometry, bias, ...), and its parameter and MAC delta is split between them by
re-evaluating the op catalog step by step, so that the deltas of all changes add up to the
difference of the totals. Identical facts at several places form a group, which the report shows
as one line with its locations.

MACs follow the analysis convention (conv + linear multiply-adds, batch 1, eval); changes inside
aux heads move training-time MACs only and are marked as such.

The package is laid out in the order of the work: ``walk`` (one spec seen unit by unit),
``differ`` (the two walked together, changes found and costed), ``changes`` (Change and Group),
``locations`` (paths compacted to ``inception{3a,3b}.branch3.1.conv``), ``render`` (the Diff and its
text, markdown and JSON); values and ops are written as a spec writes them (archspec/words.py).
This module holds the entry points.
"""
from __future__ import annotations

import difflib

from ..emit import split_header
from .changes import Change, Group  # noqa: F401 - re-exported
from .differ import _Differ
from .locations import compact  # noqa: F401 - re-exported
from .render import Diff
from .walk import Unit  # noqa: F401 - re-exported


def diff_compiled(a, b) -> Diff:
    """Compare two compiled specs (``archspec.pipeline.compile_spec`` results); see
    ``archspec.pipeline.diff_specs`` for two spec files."""
    return Diff(a, b, _Differ(a, b).run())


def code_diff(a: tuple, b: tuple) -> str:
    """Unified diff of two generated modules, each given as (text, name), headers left out."""
    (text_a, name_a), (text_b, name_b) = a, b
    left = split_header(text_a)[1].splitlines(keepends=True)
    right = split_header(text_b)[1].splitlines(keepends=True)
    return "".join(difflib.unified_diff(left, right, f"a/{name_a}.py", f"b/{name_b}.py"))
