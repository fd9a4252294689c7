"""``archspec build``: write generated modules, atomically, without losing anyone's work.

Every spec is compiled and generated in memory first; if any fails, nothing is written. A file
whose body no longer matches the hash in its header was edited by hand and is only replaced with
``--force``. Files are written atomically (archspec/files.py), so an interrupted build leaves the
previous file intact.
"""
from __future__ import annotations

import json
import os
import sys

from .errors import ArchspecError, GenerateError, Loc, flatten
from .files import write_atomic

EXIT_OK, EXIT_SPEC = 0, 1


def output_name(compiled, deploy: bool = False) -> str:
    return f"{compiled.name}_deploy.py" if deploy else f"{compiled.name}.py"


def plan(files: list, input_shape=None, num_classes=None, deploy: bool = False) -> tuple:
    """Compile and generate every spec in memory: ([(compiled, filename, text)], [errors])."""
    from .generate import generate
    from .pipeline import compile_spec

    results, errors = [], []
    for file in files:
        try:
            compiled = compile_spec(file, input_shape, num_classes)
            if deploy:
                from .deploy import generate_deploy

                text = generate_deploy(compiled)
            else:
                text = generate(compiled)
            results.append((compiled, output_name(compiled, deploy), text))
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


class _Out:
    """Per-file results: text lines as they happen, or one JSON list at the end (--format json)."""

    def __init__(self, args):
        self.json = getattr(args, "format", "text") == "json"
        self.records: list = []

    def file(self, path: str, state: str, text: str, stream=None) -> None:
        if self.json:
            self.records.append({"file": path, "status": state})
        else:
            print(f"{path}: {text}", file=stream or sys.stdout)

    def note(self, text: str, stream=None) -> None:
        if not self.json:
            print(text, file=stream or sys.stdout)

    def close(self, code: int) -> int:
        if self.json:
            print(json.dumps({"files": self.records, "ok": code == EXIT_OK}, indent=2))
        return code


_STALE_TEXT = {"missing": "missing", "stale": "stale (the spec or archspec changed; run archspec build)",
               "edited": "edited by hand (archspec build --force replaces it)"}


def run_build(args, files: list, report_error) -> int:
    out = _Out(args)
    deploy = getattr(args, "deploy", False)
    results, errors = plan(files, args.input, args.num_classes, deploy)
    for exc in errors:
        report_error(exc, args)
    if errors:
        out.note(f"archspec: {len(errors)} spec(s) failed; nothing was written", sys.stderr)
        return out.close(EXIT_SPEC)
    out_dir = args.output
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        report_error(GenerateError(f"output path {out_dir} exists and is not a directory"), args)
        return out.close(EXIT_SPEC)
    states = [(c, os.path.join(out_dir, name), text, status(os.path.join(out_dir, name), text))
              for c, name, text in results]
    if args.check_only:
        bad = [(path, st) for _, path, _, st in states if st != "current"]
        for _, path, _, st in states:
            if st != "current":
                out.file(path, st, _STALE_TEXT[st], sys.stderr)
            elif out.json:
                out.file(path, st, "")
        if not bad:
            out.note(f"{len(states)} generated file(s) up to date")
        return out.close(EXIT_SPEC if bad else EXIT_OK)
    edited = [path for _, path, _, st in states if st == "edited"]
    if edited and not args.force:
        for path in edited:
            report_error(GenerateError(f"{path} was edited by hand; not overwritten (use --force to replace it)",
                                       Loc(path)), args)
        return out.close(EXIT_SPEC)
    for compiled, path, text, st in states:
        if st != "current":
            write_atomic(path, text)
        state = "unchanged" if st == "current" else "written"
        out.file(path, state, f"{state} ({compiled.analysis.totals.params:,} params)")
    if getattr(args, "verify", False):
        return out.close(_verify_all(states, args, report_error, out))
    return out.close(EXIT_OK)


def _verify_all(states, args, report_error, out: _Out) -> int:
    from .verify import verify_file

    failed = 0
    for compiled, path, _, _ in states:
        try:
            verify_file(compiled, path)
            out.file(path, "verified", "verified (params, every module's output shape and MACs match the analysis)")
        except ArchspecError as exc:
            failed += 1
            out.file(path, "differs", "differs from the analysis", sys.stderr)
            for e in flatten(exc):
                report_error(e, args)
    return EXIT_SPEC if failed else EXIT_OK
