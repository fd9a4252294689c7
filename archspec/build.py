"""``archspec build``, the decisions: every spec compiled and generated in memory, and the state
of each file it would write.

If any spec fails, nothing is written (``cli.cmd_build`` writes). A file whose body no longer
matches the hash in its header was edited by hand and is only replaced with ``--force``. Files are
written atomically (archspec/files.py), so an interrupted build leaves the previous file intact.
"""
from __future__ import annotations

import os

from .errors import ArchspecError


def output_name(compiled, deploy: bool = False) -> str:
    return f"{compiled.name}_deploy.py" if deploy else f"{compiled.name}.py"


def plan(files: list, input_shape=None, num_classes=None, deploy: bool = False, output: str = "generated") -> tuple:
    """Compile and generate every spec in memory: ([(compiled, filename, text, parameters of the
    generated module)], [errors])."""
    from .generate import generate
    from .pipeline import compile_spec

    results, errors = [], []
    for file in files:
        try:
            compiled = compile_spec(file, input_shape, num_classes)
            if deploy:  # no aux heads and BatchNorm folded: its own parameter count
                from .deploy import deploy_module

                text, params = deploy_module(compiled, output)
            else:
                text, params = generate(compiled, output), compiled.analysis.totals.params
            results.append((compiled, output_name(compiled, deploy), text, params))
        except ArchspecError as exc:
            errors.append(exc)
    return results, errors


def status(path: str, text: str) -> str:
    """'missing', 'current', 'stale' (generated from an older spec) or 'edited' (changed by hand)."""
    from .emit import is_hand_edited

    if not os.path.exists(path):
        return "missing"
    try:
        with open(path, encoding="utf-8") as fh:
            existing = fh.read()
    except (OSError, UnicodeDecodeError):
        return "edited"
    if existing == text:
        return "current"
    return "edited" if is_hand_edited(existing) else "stale"
