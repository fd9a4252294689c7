"""archspec: an architecture-spec compiler for deep vision networks.

The public API is small (``load``, ``check``, ``build``, ``diff``); everything else is internal.

>>> import archspec
>>> c = archspec.check("specs/googlenet.yaml")          # doctest: +SKIP
>>> c.analysis.totals.params_eval
6624904
"""
from __future__ import annotations

import sys
import types

__all__ = ["load", "check", "build", "diff", "ArchspecError"]

from .errors import ArchspecError
from .version import __version__  # noqa: F401


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
    from .pipeline import compile_spec

    compiled = compile_spec(path)
    if deploy:
        from .deploy import generate_deploy

        return generate_deploy(compiled)
    from .generate import generate

    return generate(compiled)


def diff(a: str, b: str, code: bool = False):
    """Compare two specs after analysis."""
    from .pipeline import diff_specs

    return diff_specs(a, b, code)


_API = {"load": load, "build": build, "diff": diff}


class _Package(types.ModuleType):
    """Importing the stage modules archspec.load, .build and .diff binds each over the public
    function of the same name. Keep both working: the module becomes callable as the function."""

    def __setattr__(self, name, value):
        func = _API.get(name)
        if func is not None and isinstance(value, types.ModuleType) and not callable(value):
            value.__class__ = type(f"_Callable_{name}", (types.ModuleType,),
                                   {"__call__": lambda self, *a, **k: func(*a, **k)})
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
