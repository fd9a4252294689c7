"""``archspec build``, the decisions: every spec compiled and generated in memory, whether every
file can be written, and the state of each file it would write.

If any spec fails, nothing is written (``cli.cmd_build`` writes), and nothing is written either
unless every output can be: two specs writing one file, a file name the file system refuses, a
directory where a file goes, an output directory that cannot be made or written are found before
the first write (``preflight``). A file whose body no longer matches the hash in its header was
edited by hand and is only replaced with ``--force``. Files are written all or none
(archspec/files.py), so a failed or interrupted build leaves the previous files intact.
"""
from __future__ import annotations

import os

from .errors import ArchspecError, GenerateError, Loc
from .files import directory_problem, length_problem, read_bounded, target_problem

MAX_GENERATED_BYTES = 64 * 1024 * 1024  # an existing output file larger than this is not one archspec wrote


def output_name(compiled, deploy: bool = False) -> str:
    return f"{compiled.name}_deploy.py" if deploy else f"{compiled.name}.py"


def plan(files: list, input_shape=None, num_classes=None, deploy: bool = False, output: str = "generated") -> tuple:
    """Compile and generate every spec in memory: ([(compiled, filename, text, parameters of the
    generated module)], [errors]). A spec named twice (``specs/net.yaml net.yaml``) is built once."""
    from .generate import generate
    from .pipeline import compile_spec

    results, errors = [], []
    for file in _distinct(files):
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


def _distinct(files: list) -> list:
    seen: set = set()
    out = []
    for file in files:
        try:
            key = os.path.realpath(file)
        except (OSError, ValueError):
            key = file
        if key not in seen:
            seen.add(key)
            out.append(file)
    return out


def preflight(results: list, out_dir: str, writing: bool = True) -> list:
    """Every reason the files of ``results`` cannot all be written into ``out_dir``, found before
    the first is: [GenerateError]. With ``writing`` False (``build --check``) the directory is
    not tried with a test file."""
    errors = clashes(results, out_dir)
    problem = length_problem(out_dir or ".") or directory_problem(out_dir, probe=writing)
    if problem:
        errors.append(GenerateError(problem))
        return errors  # the files' own checks would repeat it
    for compiled, name, *_ in results:
        path = os.path.join(out_dir, name)
        if problem := length_problem(path):
            errors.append(GenerateError(f"{problem} (shorten the spec's name)", _name_loc(compiled)))
        elif problem := target_problem(path):
            errors.append(GenerateError(problem))
    return errors


def clashes(results: list, out_dir: str) -> list:
    """Two specs of one build that would write the same file (or, on a file system that ignores
    case, the same file: net.py and Net.py)."""
    first: dict = {}
    errors = []
    for compiled, name, *_ in results:
        other = first.setdefault(name.casefold(), (compiled, name))
        if other[0] is compiled:
            continue
        a, b = os.path.join(out_dir, other[1]), os.path.join(out_dir, name)
        what = f"both write {b}" if a == b else f"write {a} and {b}, one file where case is ignored (macOS, Windows)"
        at = _name_loc(compiled)
        if at.file != compiled.file:  # a variant without a name: of its own
            hint = f"{compiled.file} takes the name '{compiled.name}' from the spec it extends: give it a name: of its own"
            at = Loc(compiled.file)
        else:
            hint = "give one of them another name:"
        errors.append(GenerateError(f"{other[0].file} and {compiled.file} would {what}; {hint}", at))
    return errors


def _name_loc(compiled) -> Loc:
    """Where the spec's name is written: its ``name:`` key, in the spec or the one it extends."""
    data = compiled.resolved.data
    return getattr(data, "value_locs", {}).get("name", Loc(compiled.file))


def status(path: str, text: str) -> str:
    """'missing', 'current', 'stale' (generated from an older spec) or 'edited' (changed by hand,
    or a file archspec cannot read back: too large, unreadable, not UTF-8)."""
    from .emit import is_hand_edited

    if not os.path.exists(path):
        return "missing"
    try:
        existing = read_bounded(path, MAX_GENERATED_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return "edited"
    if existing == text:
        return "current"
    return "edited" if is_hand_edited(existing) else "stale"
