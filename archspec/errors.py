"""One error tree for every stage.

Every error a user can cause is an ``ArchspecError`` carrying where it happened: file, line,
column (1-based, from PyYAML's node marks), the YAML path and, once the graph exists, the node.
The CLI prints them as ``file:line:col: error: message`` followed by the offending source line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .files import read_bounded


# Exit statuses of the command line: one table for every command (README.md, docs/cli.md).
EXIT_OK = 0  # success; diff: the two networks are the same
EXIT_SPEC = 1  # a spec error; build --check: a file not current; build --verify: a difference
EXIT_DIFFERENT = 1  # diff: the two networks differ
EXIT_USAGE = 2  # a usage error
EXIT_TROUBLE = 2  # diff: a spec error too, as diff(1) reports trouble, since 1 means "different"
EXIT_INTERNAL = 3  # a bug in archspec
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class Loc:
    """A position in a spec file; line and column are 1-based."""

    file: str
    line: int = 0
    col: int = 0
    path: str = ""  # YAML path, e.g. blocks.Inception.layers[0]

    def at(self, path: str) -> "Loc":
        return Loc(self.file, self.line, self.col, path)

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


class ArchspecError(Exception):
    """Root of every error a user's input can cause."""

    stage = "archspec"

    def __init__(self, message: str, loc: Loc | None = None, node: str | None = None):
        message = printable(message)
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.node = node

    def to_dict(self) -> dict:
        loc = self.loc
        return {
            "stage": self.stage,
            "message": self.message,
            "file": loc.file if loc else None,
            "line": loc.line if loc and loc.line else None,
            "column": loc.col if loc and loc.line else None,
            "yaml_path": loc.path if loc and loc.path else None,
            "node": self.node,
        }

    def format(self, with_source: bool = True) -> str:
        head = f"{printable(str(self.loc))}: error: {self.message}" if self.loc else f"error: {self.message}"
        if not (with_source and self.loc):
            return head
        lines = [head]
        if self.loc.path:
            lines.append(f"  in {printable(self.loc.path)}")
        text = source_line(self.loc.file, self.loc.line)
        if text is not None:
            col = len(printable(text[:max(self.loc.col - 1, 0)])) + 1
            text, col = _window(printable(text), col)
            gutter = f"{self.loc.line:>5} | "
            lines.append(gutter + text)
            lines.append(" " * (len(gutter) - 2) + "| " + " " * max(col - 1, 0) + "^")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format(with_source=False)


class UsageError(ArchspecError):
    """Bad command-line usage (exit status 2)."""

    stage = "usage"


class LoadError(ArchspecError):
    """The file cannot be read or is not acceptable YAML."""

    stage = "load"


class SpecError(ArchspecError):
    """The YAML does not follow the spec language."""

    stage = "validate"


class ExpandError(ArchspecError):
    """A block call, argument or expression cannot be resolved."""

    stage = "expand"


class StructureError(ExpandError):
    """An item that is wrong whatever the arguments' values (an unknown op or block, an argument it
    does not have, a stateful op without a name): an error under an ``if:`` that is false too."""


class LintError(ArchspecError):
    """The lowered graph is malformed."""

    stage = "lint"


class ShapeError(ArchspecError):
    """Static analysis found an impossible shape."""

    stage = "analyse"


class ExpectError(ArchspecError):
    """An ``expect:`` value does not match the analysis."""

    stage = "expect"


class GenerateError(ArchspecError):
    """Code generation or writing failed."""

    stage = "generate"


class VerifyError(ArchspecError):
    """The generated module disagrees with the static analysis."""

    stage = "verify"


class InterpretError(ArchspecError):
    """The reference interpreter cannot run a graph (an op without a rule, a missing state tensor)."""

    stage = "interpret"


class ImportModelError(ArchspecError):
    """``archspec import``: a model, or a part of it, that cannot be written as a spec; located in
    the model's Python source where that is known."""

    stage = "import"


class ErrorList(ArchspecError):
    """Several errors found at once; ``errors`` keeps them in source order."""

    def __init__(self, errors: list[ArchspecError]):
        errors = sorted(errors, key=_order)
        super().__init__(errors[0].message if errors else "", errors[0].loc if errors else None)
        self.errors = errors
        self.stage = errors[0].stage if errors else "archspec"

    def format(self, with_source: bool = True) -> str:
        return "\n".join(e.format(with_source) for e in self.errors)


def _order(e: ArchspecError):
    loc = e.loc
    return (loc.file if loc else "", loc.line if loc else 0, loc.col if loc else 0)


def flatten(err: ArchspecError) -> list[ArchspecError]:
    return list(err.errors) if isinstance(err, ErrorList) else [err]


def raise_all(errors: list[ArchspecError]) -> None:
    """Raise nothing, the single error, or an ErrorList."""
    # A repeated or reused block repeats its errors word for word: report each once.
    seen: set = set()
    errors = [e for e in errors if not ((key := (type(e), e.message, e.loc)) in seen or seen.add(key))]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ErrorList(errors)


def printable(text: str) -> str:
    """Escape control and format characters, so that a string from a spec can neither forge extra
    error lines (a newline) nor drive the terminal (ESC) or reorder what it shows (U+202E)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


SHOWN_WIDTH = 120  # a longer source line is shown as a window around the column


def _window(text: str, col: int) -> tuple[str, int]:
    """Cut a long source line (a minified spec, a bomb) to the part around the column."""
    if len(text) <= SHOWN_WIDTH:
        return text, col
    start = max(0, min(col - 1 - SHOWN_WIDTH // 2, len(text) - SHOWN_WIDTH))
    head = "..." if start else ""
    tail = "..." if start + SHOWN_WIDTH < len(text) else ""
    return head + text[start:start + SHOWN_WIDTH] + tail, col - start + len(head)


_SOURCE_CACHE: dict[tuple, list[str]] = {}
SOURCE_BYTES = 4 * 1024 * 1024  # a bigger file is not shown (specs are refused above 1 MB anyway)


def source_line(file: str, line: int) -> str | None:
    """Line ``line`` of ``file`` as editors number lines (only \\n, \\r\\n and \\r end one), or None."""
    if line <= 0:
        return None
    try:
        st = os.stat(file)
    except (OSError, ValueError):
        return None
    key = (file, st.st_mtime_ns, st.st_size)  # a file rewritten in the same process is read again
    lines = _SOURCE_CACHE.get(key)
    if lines is None:
        try:
            text = read_bounded(file, SOURCE_BYTES).decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return None
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":  # the end of the last line, not a line
            lines.pop()
        _SOURCE_CACHE[key] = lines
    if line > len(lines):
        return None
    return lines[line - 1].rstrip()
