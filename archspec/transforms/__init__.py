"""Declarative rewrites (``transforms:`` in a spec), applied to the expanded module tree."""
from __future__ import annotations


def apply_transforms(expanded):
    """Apply the spec's transforms in order; returns the new tree and a list of rewrite records."""
    if not expanded.resolved.spec.transforms:
        return expanded, []
    from .factorize import run

    return run(expanded)
