"""archspec: an architecture-spec compiler for deep vision networks.

The public API is small; everything else is internal.

>>> import archspec
>>> c = archspec.check("specs/googlenet.yaml")          # doctest: +SKIP
>>> c.analysis.totals.params_eval
6624904
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load", "check", "build", "diff", "ArchspecError"]

from .errors import ArchspecError


def load(path: str):
    """Load and validate a spec file (with its use:/extends: files) -> a validated spec."""
    from .load import load as _load
    from .validate import validate

    return validate(_load(path), path)


def check(path: str, input_shape=None, num_classes=None):
    """Compile a spec and analyse it; raises ArchspecError on any problem."""
    from .pipeline import compile_spec

    return compile_spec(path, input_shape, num_classes)


def build(path: str, deploy: bool = False) -> str:
    """Return the generated PyTorch source for a spec (nothing is written)."""
    from .generate import generate
    from .pipeline import compile_spec

    return generate(compile_spec(path), deploy=deploy)


def diff(a: str, b: str):
    """Compare two specs after analysis."""
    from .diff import diff_specs

    return diff_specs(a, b)
