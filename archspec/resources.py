"""Package data: the templates and the stock specs.

In a source checkout (or an editable install) they are the top-level ``templates/`` and ``specs/``
beside the package; an installed wheel carries them inside it (``archspec/templates``,
``archspec/specs``; see pyproject.toml).
"""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def data_dir(name: str, probe: str) -> str | None:
    """The directory ``name`` inside or beside the package that holds the file ``probe``."""
    for candidate in (os.path.join(_HERE, name), os.path.join(os.path.dirname(_HERE), name)):
        if os.path.isfile(os.path.join(candidate, probe)):
            return candidate
    return None


def stock_dir() -> str:
    """The stock specs."""
    return data_dir("specs", "googlenet.yaml") or os.path.join(_HERE, "specs")
