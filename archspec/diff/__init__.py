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
import json

from .changes import Change, Group  # noqa: F401 - re-exported
from .differ import _Differ
from .locations import compact  # noqa: F401 - re-exported
from .render import Diff
from .walk import Unit  # noqa: F401 - re-exported

EXIT_SAME, EXIT_DIFFERENT, EXIT_TROUBLE = 0, 1, 2


def diff_compiled(a, b) -> Diff:
    """Compare two compiled specs (``archspec.pipeline.compile_spec`` results)."""
    return Diff(a, b, _Differ(a, b).run())


def diff_specs(a: str, b: str, code: bool = False) -> Diff:
    """Compile two spec files and compare them; raises ArchspecError on a spec error.

    >>> d = diff_specs("specs/googlenet_paper.yaml", "specs/googlenet.yaml")   # doctest: +SKIP
    >>> d.identical, d.totals()["params"]["delta"]                               # doctest: +SKIP
    (False, -373392)
    """
    from ..errors import ErrorList, flatten
    from ..pipeline import compile_spec

    compiled, errors = [], []
    for path in (a, b):
        try:
            compiled.append(compile_spec(path))
        except Exception as exc:  # noqa: BLE001 - only spec errors are collected
            from ..errors import ArchspecError

            if not isinstance(exc, ArchspecError):
                raise
            errors.extend(flatten(exc))
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)
    result = diff_compiled(*compiled)
    if code:
        result.code = code_diff(*compiled)
    return result


def code_diff(a, b) -> str:
    """Unified diff of the two generated modules (text only; nothing is written)."""
    from ..emit import split_header
    from ..generate import generate

    left = split_header(generate(a))[1].splitlines(keepends=True)
    right = split_header(generate(b))[1].splitlines(keepends=True)
    return "".join(difflib.unified_diff(left, right, f"a/{a.name}.py", f"b/{b.name}.py"))


def run_diff(args) -> int:
    """``archspec diff A B``: 0 identical, 1 different, 2 trouble (ArchspecError is raised to the CLI)."""
    from ..pipeline import resolve_specs

    a, b = resolve_specs([args.a, args.b])  # a name may be a stock spec's
    d = diff_specs(a, b, code=getattr(args, "code", False))
    if args.format == "json":
        print(json.dumps(d.to_json(), indent=2))
    elif args.format == "markdown":
        print(d.markdown(), end="")
    else:
        print(d.text(), end="")
    return EXIT_SAME if d.identical else EXIT_DIFFERENT
