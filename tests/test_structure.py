"""The structure stays as drawn in README.md (Layout): which module may import which, every module
listed there in the order data flows, and no function too long or too branchy to read.

Read from the source with ``ast``; imports under ``if TYPE_CHECKING:`` are annotations, not
dependencies, and are left out. ``python tests/test_structure.py`` prints the largest functions.
"""
from __future__ import annotations

import ast
import re

from conftest import ROOT

PACKAGE = ROOT / "archspec"

MAX_LINES = 60  # a function, from its def to its last line
MAX_COMPLEXITY = 20  # McCabe's cyclomatic complexity, counted as below

# What each module may import from archspec, in the order data flows. The modules of a package
# (diff/, transforms/) are one entry and may import each other.
ALLOWED = {
    # shared helpers: the error tree, words and numbers, the graph, writing source and files
    "version": set(),
    "errors": {"files"},
    "text": set(),
    "resources": set(),
    "files": set(),
    "exprs": {"errors"},
    "ops": {"text"},
    "words": {"ops"},
    "graph": set(),
    "emit": {"errors", "ops", "resources", "version"},
    # the stages, each a function of the one before
    "load": {"errors", "exprs", "files", "resources"},
    "validate": {"errors", "exprs", "load", "ops"},
    "transforms": {"errors", "exprs", "load", "ops", "text", "validate"},
    "expand": {"errors", "exprs", "ops", "validate"},
    "lower": {"expand", "graph"},
    "lint": {"errors", "exprs", "graph", "ops"},
    "analyse": {"errors", "graph", "ops", "text"},
    # what reads the compiled spec
    "report": {"errors", "text"},
    "generate": {"emit", "errors", "expand", "exprs", "lower", "ops", "text", "validate"},
    "deploy": {"emit", "errors", "graph", "ops", "text"},
    "diff": {"emit", "errors", "expand", "graph", "ops", "text", "words"},
    "draw": {"errors", "graph", "ops", "text", "words"},
    "schema": {"ops", "validate"},
    "interpret": {"errors"},
    "memory": {"emit", "errors", "expand", "lower", "ops"},
    "roofline": {"errors", "memory", "ops", "resources"},
    # composition: the stage table, the build, its check against torch, the command line
    "pipeline": {"analyse", "diff", "errors", "expand", "generate", "graph", "lint", "load", "lower", "resources",
                 "transforms", "validate"},
    "build": {"deploy", "emit", "errors", "files", "generate", "pipeline"},
    "verify": {"analyse", "emit", "errors", "interpret", "ops"},
    "measure": set(),
    "importer": {"analyse", "errors", "exprs", "load", "ops", "pipeline", "resources", "validate", "version"},
    "cli": {"build", "draw", "errors", "exprs", "files", "importer", "memory", "pipeline", "report", "resources",
            "roofline", "schema", "verify", "version"},
    "__init__": {"deploy", "errors", "generate", "load", "pipeline", "resources", "validate", "version"},
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
    is_package = module in ("__init__", "diff", "transforms", "importer")
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


# --- function size -----------------------------------------------------------------------------

_BRANCHES = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.ExceptHandler, ast.Assert, ast.match_case)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def complexity(func) -> int:
    """McCabe's cyclomatic complexity as radon counts it: 1, plus 1 for each if, elif, conditional
    expression, loop, except, assert and match case, each for and if of a comprehension, and each
    extra operand of and/or, lambdas' included. A nested function or class is one of its own."""
    n = 1
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, _BRANCHES):
            n += 1
        elif isinstance(node, ast.comprehension):
            n += 1 + len(node.ifs)
        elif isinstance(node, ast.BoolOp):
            n += len(node.values) - 1
        stack.extend(ast.iter_child_nodes(node))
    return n


def functions() -> list:
    """(complexity, lines, 'archspec/file.py:line name') for every function and method."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                out.append((complexity(node), node.end_lineno - node.lineno + 1, where))
    return out


def test_complexity_counts_what_branches():
    tree = ast.parse("def f(a, b):\n"
                     "    if a and b or not a:\n"
                     "        return [x for x in a if x]\n"
                     "    for y in b:\n"
                     "        try:\n"
                     "            y = 1 if y else 2\n"
                     "        except ValueError:\n"
                     "            pass\n"
                     "    def g():\n"
                     "        if a: pass\n"
                     "    return g\n")
    f = tree.body[0]
    assert complexity(f) == 1 + (1 + 2) + (1 + 1) + 1 + 1 + 1 == 9  # if with 2 operators; comprehension; for; ifexp; except
    assert complexity(f.body[2]) == 2


def test_no_function_is_too_long_or_too_complex():
    big = [f"{where}: {lines} lines, complexity {cc}" for cc, lines, where in functions()
           if lines > MAX_LINES or cc > MAX_COMPLEXITY]
    assert big == []


if __name__ == "__main__":
    rows = functions()
    print(f"{len(rows)} functions in archspec/; limits: {MAX_LINES} lines, complexity {MAX_COMPLEXITY}")
    for title, key in (("most complex", lambda r: (r[0], r[1])), ("longest", lambda r: (r[1], r[0]))):
        print(f"\n{title}:\n  complexity  lines  function")
        for cc, lines, where in sorted(rows, key=key, reverse=True)[:8]:
            print(f"  {cc:>10}  {lines:>5}  {where}")
