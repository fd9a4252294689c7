"""Call strings such as ``BasicConv2d(64, k=3, s=2)`` and the small expression language inside them.

Parsed with Python's own ``ast`` (never evaluated by Python): only numbers, booleans, names of
arguments, tuples/lists and + - * / // % are accepted. The parsed tree is kept so that code
generation can write the same expression back over the generated class's arguments.
"""
from __future__ import annotations

import ast
import copy
import keyword
import math
import operator
import re
from dataclasses import dataclass

from .errors import ArchspecError, ExpandError, Loc, SpecError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_WORD = re.compile(r"[a-z][a-z0-9_]{0,15}\Z")  # a string value: one of an op's choices (docs/spec.md)
_CONSTS = {"true": True, "false": False, "True": True, "False": False, "none": None, "None": None, "null": None}
_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
MAX_CALL_CHARS = 2000
MAX_INT = 10**15  # the largest magnitude of any integer written in or computed by a spec
MAX_EXPR_DEPTH = 32  # nesting of operators and tuples inside one argument


@dataclass(frozen=True)
class Call:
    """A parsed call: callee name, positional and keyword argument expressions."""

    name: str
    args: tuple  # of ast.expr
    kwargs: tuple  # of (name, ast.expr)
    text: str
    loc: Loc


def is_identifier(name) -> bool:
    return isinstance(name, str) and bool(_IDENT.match(name)) and not keyword.iskeyword(name)


def parse_call(text, loc: Loc) -> Call:
    """Parse ``name`` or ``name(arg, ..., key=value)``."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise SpecError(f"expected an op or block call such as 'relu' or 'conv2d(64, 3)', got {_show(text)}", loc)
    if len(text) > MAX_CALL_CHARS:
        raise SpecError(f"call longer than {MAX_CALL_CHARS} characters", loc)
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        col = (exc.offset or 1)
        hint = ""
        if text.count("(") != text.count(")"):
            hint = " (inside a YAML flow list [a, b] commas split items: quote the call or use a block list)"
        raise SpecError(f"cannot parse call '{text}': {exc.msg}{hint}", Loc(loc.file, loc.line, loc.col + col - 1, loc.path)) from None
    if isinstance(tree, ast.Name):
        name, args, kwargs = tree.id, (), ()
    elif isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name):
        name = tree.func.id
        for a in tree.args:
            if isinstance(a, ast.Starred):
                raise SpecError(f"'*' arguments are not allowed in '{text}'", loc)
        for k in tree.keywords:
            if k.arg is None:
                raise SpecError(f"'**' arguments are not allowed in '{text}'", loc)
        args = tuple(_check_expr(a, text, loc) for a in tree.args)
        kwargs = tuple((k.arg, _check_expr(k.value, text, loc)) for k in tree.keywords)
        seen = set()
        for k, _ in kwargs:
            if k in seen:
                raise SpecError(f"argument '{k}' given twice in '{text}'", loc)
            seen.add(k)
    else:
        raise SpecError(f"expected an op or block call such as 'relu' or 'conv2d(64, 3)', got '{text}'", loc)
    if not is_identifier(name) or name.startswith("__"):
        raise SpecError(f"'{name}' is not a valid op or block name", loc)
    return Call(name, args, kwargs, text.strip(), loc)


def _check_expr(node: ast.expr, text: str, loc: Loc, depth: int = 0) -> ast.expr:
    """Allow only the expression forms we evaluate and regenerate; rewrite true/false/null."""
    if depth > MAX_EXPR_DEPTH:
        raise SpecError(f"expression nested more than {MAX_EXPR_DEPTH} levels deep in '{_clip(text)}'", loc)
    if isinstance(node, ast.Constant):
        return _check_constant(node, text, loc)
    if isinstance(node, ast.Name):
        if node.id in _CONSTS:
            return ast.copy_location(ast.Constant(_CONSTS[node.id]), node)
        if not is_identifier(node.id) or node.id.startswith("__"):
            raise SpecError(f"'{node.id}' is not a valid name", loc)
        return node
    depth += 1
    if isinstance(node, (ast.Tuple, ast.List)):
        return ast.copy_location(ast.Tuple([_check_expr(e, text, loc, depth) for e in node.elts], ast.Load()), node)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return ast.copy_location(ast.BinOp(_check_expr(node.left, text, loc, depth), node.op,
                                           _check_expr(node.right, text, loc, depth)), node)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return ast.copy_location(ast.UnaryOp(node.op, _check_expr(node.operand, text, loc, depth)), node)
    raise SpecError(f"unsupported expression '{ast.unparse(node)}' in '{text}' (allowed: numbers, booleans, argument names, tuples, + - * / // %)", loc)


def _check_constant(node: ast.Constant, text: str, loc: Loc) -> ast.Constant:
    value = node.value
    if isinstance(value, float) and not math.isfinite(value):
        raise SpecError(f"{ast.get_source_segment(text.strip(), node) or value} is not a finite number in '{_clip(text)}'", loc)
    if isinstance(value, int) and abs(value) > MAX_INT:
        raise SpecError(f"number too large in '{_clip(text)}' (numbers in a spec are at most 10^15)", loc)
    if isinstance(value, (bool, int, float)) or value is None:
        return node
    if isinstance(value, str) and _WORD.match(value):  # a choice of an op: gelu(approximate='tanh')
        return node
    raise SpecError(f"only numbers, booleans and short words are allowed as values in '{text}', not {node.value!r}", loc)


def evaluate(node: ast.expr, env: dict, loc: Loc, what: str = ""):
    """Evaluate a checked expression with the block's argument values."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            known = ", ".join(sorted(env)) or "none"
            raise ExpandError(f"unknown name '{node.id}'{what} (arguments in scope: {known})", loc)
        return env[node.id]
    if isinstance(node, ast.Tuple):
        return tuple(evaluate(e, env, loc, what) for e in node.elts)
    if isinstance(node, ast.UnaryOp):
        value = evaluate(node.operand, env, loc, what)
        _need_number(value, node, loc)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        left = evaluate(node.left, env, loc, what)
        right = evaluate(node.right, env, loc, what)
        _need_number(left, node, loc)
        _need_number(right, node, loc)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ExpandError(f"division by zero in '{ast.unparse(node)}'", loc)
        if isinstance(node.op, ast.Mult) and abs(left) > MAX_INT and abs(right) > 1:
            raise ExpandError(f"number too large in '{ast.unparse(node)}'", loc)
        result = _BINOPS[type(node.op)](left, right)
        if isinstance(result, int) and abs(result) > MAX_INT:
            raise ExpandError(f"number too large in '{ast.unparse(node)}'", loc)
        if isinstance(result, float) and not math.isfinite(result):
            raise ExpandError(f"number too large in '{ast.unparse(node)}'", loc)
        return result
    raise ExpandError(f"cannot evaluate '{ast.unparse(node)}'", loc)


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[:width] + "..."


def _need_number(value, node, loc):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpandError(f"arithmetic on a non-number in '{ast.unparse(node)}'", loc)


def _show(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# --- argument types shared by ops and blocks ---------------------------------------------------

TYPES = ("int", "float", "bool", "size", "number")
OP_TYPES = ("str", "ints")  # attribute types of ops only: a word (one of the op's choices), a tuple of ints


def check_type(value, type_: str):
    """Return the value converted to the declared type, or None if it does not fit."""
    if type_ == "int":
        return value if _is_int(value) else None
    if type_ == "float" or type_ == "number":
        if _is_int(value) or isinstance(value, float):
            return float(value) if type_ == "float" else value
        return None
    if type_ == "bool":
        return value if isinstance(value, bool) else None
    if type_ in OP_TYPES:
        return _check_op_type(value, type_)
    if type_ == "size":
        if _is_int(value) or (isinstance(value, tuple) and len(value) == 2 and all(_is_int(v) for v in value)):
            return value
        return None
    raise ValueError(type_)


def _check_op_type(value, type_: str):
    if type_ == "str":
        return value if isinstance(value, str) else None
    if _is_int(value):
        return (value,)
    if isinstance(value, tuple) and all(_is_int(v) for v in value):
        return value
    return None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is an int in Python, not here


def describe(value) -> str:
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, tuple):
        return f"tuple {value}"
    if value is None:
        return "none"
    return f"{type(value).__name__} {value!r}"


TYPE_WORDS = {"int": "an int", "float": "a number", "number": "a number", "bool": "a boolean", "size": "an int or a pair of ints",
              "str": "a quoted word such as 'tanh'", "ints": "an int or a tuple of ints"}


# --- rewriting and printing expressions (code generation writes them back over a class's arguments) ---

def fold(node: ast.expr) -> ast.expr:
    """Constant-fold arithmetic, so that channel sums read as numbers where they are numbers."""
    if isinstance(node, ast.BinOp):
        left, right = fold(node.left), fold(node.right)
        if isinstance(left, ast.Constant) and isinstance(right, ast.Constant):
            try:
                return ast.Constant(evaluate(ast.BinOp(left, node.op, right), {}, None))
            except ArchspecError:  # division by zero, too large: keep it written out, analysis reports it
                pass
        if isinstance(node.op, ast.Add):
            if isinstance(right, ast.Constant) and right.value == 0:
                return left
            if isinstance(left, ast.Constant) and left.value == 0:
                return right
        return ast.BinOp(left, node.op, right)
    if isinstance(node, ast.UnaryOp):
        operand = fold(node.operand)
        if isinstance(operand, ast.Constant) and isinstance(operand.value, (int, float)):
            return ast.Constant(-operand.value if isinstance(node.op, ast.USub) else operand.value)
        return ast.UnaryOp(node.op, operand)
    if isinstance(node, ast.Tuple):
        return ast.Tuple([fold(e) for e in node.elts], ast.Load())
    return node


def unparse(node: ast.expr) -> str:
    """Python source of a checked expression, constants folded."""
    return ast.unparse(fold(node))


def substitute(node: ast.expr, mapping: dict) -> ast.expr:
    """A copy of ``node`` with each name in ``mapping`` replaced by its expression."""

    class _Replace(ast.NodeTransformer):
        def visit_Name(self, n):
            return mapping.get(n.id, n)

    return _Replace().visit(copy.deepcopy(node))


def constant(value) -> ast.expr:
    if isinstance(value, tuple):
        return ast.Tuple([ast.Constant(v) for v in value], ast.Load())
    return ast.Constant(value)


def names(node: ast.expr) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def sum_of(nodes: list):
    """The folded sum of expressions, or None if any is unknown (None)."""
    if any(n is None for n in nodes):
        return None
    out = nodes[0]
    for n in nodes[1:]:
        out = ast.BinOp(out, ast.Add(), n)
    return fold(out)
