"""The spec document as YAML text, in the block style the stock specs use (docs/spec.md's
flow-style pitfall: calls are never put inside brackets), with comments where the import has
something to say: the unsupported parts (``--partial``), the defaults a user should edit."""
from __future__ import annotations

import json
import os
import re

import yaml

from .render import Marked

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_ (),.=!<>*/+'\-]*(:[A-Za-z0-9_./\-]+)*\Z")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "y", "n", "~"}
_SECTIONS = ("use", "args", "blocks", "layers", "aux", "outputs", "expect")


class Commented:
    """A scalar with a comment after it."""

    def __init__(self, value, comment: str):
        self.value = value
        self.comment = comment


def scalar(value) -> str:
    if isinstance(value, Commented):
        return f"{scalar(value.value)}  # {value.comment}"
    if isinstance(value, Marked):
        p = value.problem
        where = f" ({_shown(p.where.file)}:{p.where.line})" if p.where is not None and p.where.line else ""
        return f"identity  # UNSUPPORTED{where}: {_one_line(p.reason)}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)


def _shown(file: str) -> str:
    """A file under the working directory by its relative path, others as they are."""
    rel = os.path.relpath(file)
    return file if rel.startswith("..") else rel


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _flow(value) -> bool:
    """A value safe inside YAML's flow brackets: a number, or a word with no comma nor bracket."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_:./\-]*", value) is not None


def _is_scalar(value) -> bool:
    return not isinstance(value, (dict, list))


def _mapping(d: dict, indent: int) -> list:
    pad = " " * indent
    lines = []
    for key, value in d.items():
        if _is_scalar(value):
            lines.append(f"{pad}{key}: {scalar(value)}")
        elif not value:
            lines.append(f"{pad}{key}: {'[]' if isinstance(value, list) else '{}'}")
        elif isinstance(value, list) and all(_flow(v) for v in value):  # [3, 224, 224], [stock:lib/basic.yaml]
            lines.append(f"{pad}{key}: [{', '.join(scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}:")
            lines += _sequence(value, indent + 2) if isinstance(value, list) else _mapping(value, indent + 2)
    return lines


def _sequence(items: list, indent: int) -> list:
    pad = " " * indent
    lines = []
    for item in items:
        if _is_scalar(item):
            lines.append(f"{pad}- {scalar(item)}")
        elif not item:
            lines.append(f"{pad}- {'[]' if isinstance(item, list) else '{}'}")
        else:
            inner = _sequence(item, indent + 2) if isinstance(item, list) else _mapping(item, indent + 2)
            lines.append(f"{pad}- {inner[0][indent + 2:]}")
            lines += inner[1:]
    return lines


def dump(doc: dict, header: list) -> str:
    """The document as YAML; ``header``: comment lines at the top."""
    lines = [f"# {_one_line(h)}" if h else "#" for h in header]
    for key, value in doc.items():
        if key in _SECTIONS:
            lines.append("")
        if key == "blocks" and value:
            lines.append("blocks:")
            for i, (name, block) in enumerate(value.items()):
                if i:
                    lines.append("")
                lines += _mapping({name: block}, 2)
        else:
            lines += _mapping({key: value}, 0)
    return "\n".join(lines) + "\n"
