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


# `use: stock:lib/basic.yaml`, `extends: stock:inception_v3`: a file of the stock specs, from any folder.
STOCK_PREFIX = "stock:"


def stock_file(name: str) -> str | None:
    """The stock spec a bare name means, as the command line and the Python API take it
    (``googlenet``, ``inception_v3.yaml``, ``specs/resnet50.yaml``: its last component), or None
    when there is no such stock spec."""
    base = os.path.basename(name)
    if not base or base.startswith("."):
        return None
    stock = stock_dir()
    path = os.path.join(stock, base if base.endswith((".yaml", ".yml")) else base + ".yaml")
    return path if os.path.isfile(path) else None


def stock_ref(ref: str) -> str | None:
    """The file ``stock:PATH`` names (``stock:lib/basic.yaml``, ``stock:inception_v3``; ``.yaml`` may be
    left out), or None when PATH is not a file of the stock specs (or leaves their directory)."""
    rel = ref[len(STOCK_PREFIX):].strip()
    if not rel or os.path.isabs(rel) or "\x00" in rel:
        return None
    stock = os.path.realpath(stock_dir())
    for candidate in (rel, rel + ".yaml") if not rel.endswith((".yaml", ".yml")) else (rel,):
        path = os.path.normpath(os.path.join(stock, candidate))
        if os.path.commonpath([os.path.realpath(path), stock]) == stock and os.path.isfile(path):
            return path
    return None


def stock_names() -> tuple:
    """(stock specs, stock libraries) as ``stock:`` names them: ``googlenet``, ``lib/basic.yaml``."""
    stock = stock_dir()
    specs, libs = [], []
    for dirpath, dirnames, filenames in os.walk(stock):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if f.endswith((".yaml", ".yml")):
                rel = os.path.relpath(os.path.join(dirpath, f), stock).replace(os.sep, "/")
                (libs if rel.startswith("lib/") else specs).append(rel if rel.startswith("lib/") else rel[:-5])
    return sorted(specs), sorted(libs)


def missing_message(name: str) -> str:
    """No such file; for a bare name, the stock spec it may have meant and the list of them."""
    import difflib

    message = f"no such file: {name}"
    if os.sep in name or (os.altsep and os.altsep in name) or "/" in name:
        return message
    specs, _ = stock_names()
    names = [os.path.basename(s) for s in specs]
    close = difflib.get_close_matches(os.path.splitext(name)[0], names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{message}, nor a stock spec{hint} (stock specs: {', '.join(names)})"


def not_stock_message(ref: str) -> str:
    """``stock:PATH`` that names no stock file: what there is."""
    import difflib

    specs, libs = stock_names()
    rel = ref[len(STOCK_PREFIX):].strip()
    close = difflib.get_close_matches(rel, [*specs, *libs], n=1, cutoff=0.6)
    hint = f"; did you mean {STOCK_PREFIX}{close[0]}?" if close else ""
    return (f"'{ref}' is not a stock spec or library{hint} (stock specs: {', '.join(specs)}; "
            f"libraries: {', '.join(libs)})")
