"""archspec: an architecture-spec compiler for deep vision networks.

The public API is small (``load``, ``check``, ``build``, ``diff``); everything else is internal.

>>> import archspec
>>> c = archspec.check("specs/googlenet.yaml")          # doctest: +SKIP
>>> c.analysis.totals.params_eval
6624904
"""
from __future__ import annotations

import os
import sys
import types

__all__ = ["load", "check", "build", "diff", "ArchspecError"]

from .errors import ArchspecError
from .version import __version__  # noqa: F401


def _spec_file(path: str) -> str:
    """A spec as the command line takes it: a file, else the stock spec a name means (``googlenet``)."""
    import os

    from .resources import stock_file

    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        stock = stock_file(os.fspath(path))
        if stock is not None:
            return stock
    return path


def load(path: str):
    """Load and validate a spec file (with its use:/extends: files) -> a validated spec."""
    from .errors import LoadError, Loc
    from .load import load as _load
    from .pipeline import missing_spec_message
    from .validate import validate

    file = _spec_file(path)
    if not os.path.exists(file):
        raise LoadError(missing_spec_message(file), Loc(file))
    return validate(_load(file), file)


def check(path: str, input_shape=None, num_classes=None):
    """Compile a spec (a file or a stock spec's name) and analyse it; raises ArchspecError on any problem."""
    from .pipeline import compile_spec

    return compile_spec(_spec_file(path), input_shape, num_classes)


def build(path: str, deploy: bool = False) -> str:
    """Return the generated PyTorch source for a spec (a file or a stock spec's name; nothing is written)."""
    from .pipeline import compile_spec

    compiled = compile_spec(_spec_file(path))
    if deploy:
        from .deploy import generate_deploy

        return generate_deploy(compiled)
    from .generate import generate

    return generate(compiled)


def diff(a: str, b: str, code: bool = False):
    """Compare two specs after analysis."""
    from .pipeline import diff_specs

    return diff_specs(_spec_file(a), _spec_file(b), code)


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
