"""Declarative rewrites (``transforms:`` in a spec), applied to the validated spec before expansion.

A rewrite changes block definitions and layer items, so the expanded tree, the analysis and
the generated code all show it. Two factorization rules exist (factorize.py); each transform
runs on the analysed spec as: rewrite the items (rewrite.py) -> analyse the rewritten spec (the
pipeline's analysis stages, passed in) -> compare every rewritten instance's output shape and
receptive field, and total what changed (record.py).

>>> from archspec.pipeline import compile_spec
>>> c = compile_spec("specs/googlenet_factorized.yaml")        # doctest: +SKIP
>>> c.rewrites[0].weights                                       # doctest: +SKIP
(25, 18)

See docs/transforms.md for the spec syntax and the naming rule.
"""
from __future__ import annotations

from dataclasses import replace

from ..errors import ArchspecError, Loc, flatten, raise_all
from ..load import LDict, LList
from .factorize import RULES
from .record import Analysed, Rewrite, account
from .rewrite import Rewriter
from .sites import TransformError

__all__ = ["apply_transforms", "Rewrite", "TransformError", "RULES"]


def _where(resolved, index: int):
    """loc(field) of transforms[index] in the spec (the field's value, or the entry itself)."""
    data = resolved.data
    raw = data.get("transforms") if isinstance(data, dict) else None
    entry = raw[index] if isinstance(raw, list) and index < len(raw) else None
    base = raw.loc_of(index) if isinstance(raw, LList) else Loc(resolved.file)
    path = f"transforms[{index}]"

    def where(field: str | None = None) -> Loc:
        if field and isinstance(entry, LDict) and field in entry:
            return entry.loc_of(field).at(f"{path}.{field}")
        return base.at(path)

    return where


def apply_transforms(compiled, analysed):
    """Apply a compiled spec's transforms in order; returns the last one's compiled spec, with a
    ``Rewrite`` record per change in ``rewrites``.

    ``analysed(resolved)`` compiles a rewritten spec (``archspec.pipeline.analysed``). The caller's
    spec is not changed. Raises TransformError (or an ErrorList of them) when a transform cannot
    apply or would change an output shape or receptive field.
    """
    resolved = compiled.resolved
    records: list = []
    before = Analysed(compiled.expanded, compiled.analysis)
    for index, t in enumerate(resolved.spec.transforms):
        what = f"factorize {t.factorize} (transforms[{index}])"
        where = _where(resolved, index)
        rule = RULES[t.factorize]
        if t.kernel is not None and (problem := rule.kernel_problem(t.kernel)):
            raise TransformError(f"{what}: {problem}", where("kernel"))
        rewriter = Rewriter(resolved, t, what, where)
        rewritten = rewriter.run()
        if not rewriter.changes:
            only = f" with a {t.kernel}x{t.kernel} kernel" if t.kernel is not None else ""
            raise TransformError(f"{what}: no convolution{only} to rewrite", where())
        try:
            compiled = analysed(rewritten)
        except ArchspecError as exc:
            raise_all([TransformError(f"{what}: the rewritten network fails: {e.message}", e.loc, e.node) for e in flatten(exc)])
        after = Analysed(compiled.expanded, compiled.analysis)
        errors = []
        for change in rewriter.changes:
            try:
                records.append(account(index, rule, change, before, after, what))
            except TransformError as exc:
                errors.append(exc)
        raise_all(errors)
        resolved, before = rewritten, after
    return replace(compiled, rewrites=records)
