"""The structure stays as drawn in README.md (Layout): which module may import which, and every
module listed there in the order data flows.

Read from the source with ``ast``; imports under ``if TYPE_CHECKING:`` are annotations, not
dependencies, and are left out.
"""
from __future__ import annotations

import ast
import re

from conftest import ROOT

PACKAGE = ROOT / "archspec"

# What each module may import from archspec, in the order data flows. The modules of a package
# (diff/, transforms/) are one entry and may import each other.
ALLOWED = {
    # shared helpers: the error tree, words and numbers, the graph, writing source and files
    "version": set(),
    "errors": set(),
    "text": set(),
    "resources": set(),
    "files": set(),
    "exprs": {"errors"},
    "ops": {"text"},
    "words": {"ops"},
    "graph": set(),
    "emit": {"errors", "resources", "version"},
    # the stages, each a function of the one before
    "load": {"errors", "exprs"},
    "validate": {"errors", "exprs", "load", "ops"},
    "transforms": {"errors", "exprs", "load", "ops", "text", "validate"},
    "expand": {"errors", "exprs", "ops", "validate"},
    "lower": {"expand", "graph"},
    "lint": {"errors", "exprs", "graph"},
    "analyse": {"errors", "graph", "ops", "text"},
    # what reads the compiled spec
    "report": {"text"},
    "generate": {"emit", "errors", "exprs", "ops", "text", "validate"},
    "deploy": {"emit", "errors", "graph", "ops", "text"},
    "diff": {"emit", "expand", "graph", "ops", "text", "words"},
    "draw": {"errors", "graph", "ops", "text", "words"},
    "schema": {"ops", "validate"},
    # composition: the stage table, the build, its check against torch, the command line
    "pipeline": {"analyse", "diff", "errors", "expand", "generate", "graph", "lint", "load", "lower", "transforms",
                 "validate"},
    "build": {"deploy", "emit", "errors", "generate", "pipeline"},
    "verify": {"analyse", "emit", "errors"},
    "cli": {"build", "draw", "errors", "files", "pipeline", "report", "resources", "schema", "verify"},
    "__init__": {"deploy", "errors", "generate", "load", "pipeline", "validate", "version"},
    "__main__": {"cli"},
}


def _modules() -> dict:
    """{module: its parsed source} for every file of the package; a subpackage's files are named
    package.module (diff.walk), its __init__ the package (diff)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(path.read_text())
    return out


def _runtime_imports(tree: ast.Module):
    """ImportFrom nodes outside ``if TYPE_CHECKING:`` blocks (functions' own imports included)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skip.update(id(n) for n in ast.walk(node))
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level and id(n) not in skip]


def _targets(module: str, node: ast.ImportFrom) -> list:
    """(archspec module imported, names imported) pairs; '' for the package __init__ itself."""
    is_package = module in ("__init__", "diff", "transforms")
    base = [] if module == "__init__" else module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    if node.module:
        return [(".".join(base + node.module.split(".")), [a.name for a in node.names])]
    return [(".".join(base + [a.name]), []) for a in node.names]


def _imports() -> dict:
    found = {name: set() for name in _modules()}
    for module, tree in _modules().items():
        for node in _runtime_imports(tree):
            found[module].update(target for target, _ in _targets(module, node))
    return found


def _entry(module: str) -> str:
    return module.split(".")[0]


def test_every_module_is_in_the_table():
    assert {_entry(m) for m in _modules()} == set(ALLOWED)


def test_imports_follow_the_table():
    wrong = []
    for module, targets in _imports().items():
        for target in targets:
            if _entry(target) != _entry(module) and _entry(target) not in ALLOWED[_entry(module)]:
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_no_module_imports_the_package_or_another_modules_internals():
    """``from . import __version__`` reads the package's __init__; ``from .diff.words import _fmt``
    reaches into another module. Both tie a module to what should be free to change."""
    modules = _modules()
    wrong = []
    for module, tree in modules.items():
        for node in _runtime_imports(tree):
            for target, names in _targets(module, node):
                if target == "" or (target not in modules and _entry(target) not in modules):
                    wrong.append(f"{module} imports {target or 'the package'}")
                private = [n for n in names if n.startswith("_") and not n.endswith("__")]
                if private and _entry(target) != _entry(module):
                    wrong.append(f"{module} imports {', '.join(private)} from {target}")
    assert wrong == []


def test_the_readme_lists_every_module_in_the_order_of_the_table():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.index("\n## ", 1)] if "\n## " in layout[1:] else layout
    named = [n.strip("/") for n in re.findall(r"`([\w/]+)`", layout)]
    listed = [n for n in dict.fromkeys(named) if n in ALLOWED]
    assert listed == [m for m in ALLOWED if not m.startswith("__")]
