"""Declarative rewrites (``transforms:`` in a spec), applied to the validated spec before expansion.

A rewrite changes block definitions and layer items (so the generated code shows it), never the
expanded tree behind the generator's back.
"""
from __future__ import annotations


def apply_transforms(resolved):
    """Apply the spec's transforms in order; returns the rewritten spec and a list of rewrite records."""
    if not resolved.spec.transforms:
        return resolved, []
    raise NotImplementedError("transforms are not implemented yet")
