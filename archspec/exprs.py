"""Call strings such as ``BasicConv2d(64, kernel_size=3, stride=2)`` and the small expression language inside them.

Parsed with Python's own ``ast`` (never evaluated by Python): numbers, booleans, names of arguments,
tuples/lists, + - * / // %, comparisons, ``and``/``or``/``not``, ``a if c else b`` and calls of
the functions in ``FUNCTIONS`` (min, max, round, int, ceil, floor, make_divisible) are accepted;
no attribute access, no other call, no power. Evaluation follows Python's rules exactly (the
generated module computes the same expressions in Python) and is bounded: every number computed is
at most ``MAX_INT`` in magnitude, nesting is at most ``MAX_EXPR_DEPTH``. The parsed tree is kept so
that code generation can write the same expression back over the generated class's arguments.
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
# The functions an expression may call: name -> what it takes (for messages).
FUNCTIONS = {"min": "two or more numbers", "max": "two or more numbers", "round": "one number",
             "int": "one number", "ceil": "one number", "floor": "one number",
             "make_divisible": "a value, a divisor and optionally min_value"}
_ARITY = {"min": (2, 64, ()), "max": (2, 64, ()), "round": (1, 1, ()), "int": (1, 1, ()), "ceil": (1, 1, ()),
          "floor": (1, 1, ()), "make_divisible": (2, 3, ("min_value",))}
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
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


# A named nn.Sequential entry's name (torchvision's RegNet: `trunk_output.block1.block1-0`) may be
# more than an identifier: the generated module never reads it as an attribute, only as a key of the
# OrderedDict it builds the Sequential from. Letters, digits, _ and - only: PyTorch refuses '.' and
# '' (add_module), and no character needs quoting in generated source or in a path's text.
ENTRY_NAME = re.compile(r"[A-Za-z0-9_-]+\Z")


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
        args = tuple(_check_argument(a, text, loc) for a in tree.args)
        kwargs = tuple((k.arg, _check_argument(k.value, text, loc)) for k in tree.keywords)
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


def _check_argument(node: ast.expr, text: str, loc: Loc) -> ast.expr:
    """An argument of a call: an expression, or an op with its attributes (``act=leaky_relu(0.2)``), which
    only an argument of type op takes (``expand.bind`` says so otherwise)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in FUNCTIONS \
            and is_identifier(node.func.id) and not node.func.id.startswith("__"):
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise SpecError(f"'*' and '**' arguments are not allowed in '{_clip(text)}'", loc)
        return ast.copy_location(ast.Call(node.func, [_check_expr(a, text, loc, 1) for a in node.args],
                                          [ast.keyword(k.arg, _check_expr(k.value, text, loc, 1))
                                           for k in node.keywords]), node)
    return _check_expr(node, text, loc)


def parse_expr(text: str, loc: Loc) -> ast.expr:
    """One expression as a spec writes it after ``if:``, ``repeat:``, in a ``for:`` table or a default."""
    if len(text) > MAX_CALL_CHARS:
        raise SpecError(f"expression longer than {MAX_CALL_CHARS} characters", loc)
    try:
        tree = ast.parse(f"({text.strip()})", mode="eval").body  # parenthesised: `a\nb` is one expression or an error
    except SyntaxError as exc:
        raise SpecError(f"cannot parse expression '{_clip(text)}': {exc.msg}", loc) from None
    return _check_expr(tree, text.strip(), loc)


_FORMS = ("allowed: numbers, booleans, argument names, tuples, + - * / // %, comparisons, and, or, not, "
          "a if c else b, and the functions " + ", ".join(FUNCTIONS))


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
    rule = _CHECKS.get(type(node))
    checked = rule(node, lambda child: _check_expr(child, text, loc, depth + 1)) if rule is not None else None
    if checked is not None:
        return ast.copy_location(checked, node)
    if isinstance(node, ast.Call):
        return _check_function(node, text, loc, lambda child: _check_expr(child, text, loc, depth + 1))
    shown = _clip(ast.unparse(node))
    if isinstance(node, ast.Attribute):
        raise SpecError(f"attribute access '{shown}' is not part of the spec language in '{_clip(text)}' ({_FORMS})", loc)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        raise SpecError(f"powers ('{shown}') are not part of the spec language in '{_clip(text)}': "
                        "write the product (k * k)", loc)
    raise SpecError(f"unsupported expression '{shown}' in '{_clip(text)}' ({_FORMS})", loc)


# The forms an expression may take besides constants, names and calls: type -> (node, check) -> the
# checked node, or None when this node of that type is not allowed (a power, an `is`).
_CHECKS = {
    ast.Tuple: lambda n, sub: ast.Tuple([sub(e) for e in n.elts], ast.Load()),
    ast.List: lambda n, sub: ast.Tuple([sub(e) for e in n.elts], ast.Load()),
    ast.BinOp: lambda n, sub: ast.BinOp(sub(n.left), n.op, sub(n.right)) if type(n.op) in _BINOPS else None,
    ast.UnaryOp: lambda n, sub: ast.UnaryOp(n.op, sub(n.operand)) if isinstance(n.op, (ast.USub, ast.UAdd, ast.Not))
    else None,
    ast.Compare: lambda n, sub: ast.Compare(sub(n.left), n.ops, [sub(c) for c in n.comparators])
    if all(type(o) in _COMPARE for o in n.ops) else None,
    ast.BoolOp: lambda n, sub: ast.BoolOp(n.op, [sub(v) for v in n.values]),
    ast.IfExp: lambda n, sub: ast.IfExp(sub(n.test), sub(n.body), sub(n.orelse)),
}


def _check_function(node: ast.Call, text: str, loc: Loc, sub) -> ast.Call:
    """A call of one of ``FUNCTIONS`` with the arguments it takes (never an attribute, never another
    callee: an op as an argument's value is a name or a call at the top of the argument, see
    ``parse_call``)."""
    name = node.func.id if isinstance(node.func, ast.Name) else None
    if name not in FUNCTIONS:
        shown = name or _clip(ast.unparse(node.func))
        raise SpecError(f"'{shown}' is not a function of the spec language in '{_clip(text)}' "
                        f"(functions: {', '.join(FUNCTIONS)})", loc)
    low, high, keywords = _ARITY[name]
    if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg not in keywords for k in node.keywords):
        bad = next((f"'{k.arg}='" for k in node.keywords if k.arg not in keywords), "'*'")
        raise SpecError(f"{name}() takes no {bad} argument in '{_clip(text)}'", loc)
    count = len(node.args) + len(node.keywords)
    if not low <= count <= high or (name in ("min", "max") and node.keywords):
        takes = FUNCTIONS[name]
        raise SpecError(f"{name}() takes {takes}, got {count} argument{'s' if count != 1 else ''} in '{_clip(text)}'",
                        loc)
    return ast.copy_location(ast.Call(node.func, [sub(a) for a in node.args],
                                      [ast.keyword(k.arg, sub(k.value)) for k in node.keywords]), node)


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


@dataclass(frozen=True)
class Unknown:
    """A value of a scope that cannot be known: the height of a flat input (reading it is this
    error), or a block's input size after an error upstream (message None: reading it raises
    ``Cascade``, which the error upstream explains)."""

    message: str | None = None


class Cascade(ExpandError):
    """An expression read a size that an earlier error left unknown."""


def evaluate(node: ast.expr, env: dict, loc: Loc, what: str = ""):
    """Evaluate a checked expression with the block's argument values, as Python would."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise ExpandError(_unknown_name(node.id, env, what), loc)
        value = env[node.id]
        if isinstance(value, Unknown):
            if value.message is None:
                raise Cascade(f"'{node.id}'{what} is unknown after an error before it", loc)
            raise ExpandError(f"'{node.id}'{what}: {value.message}", loc)
        return value
    if isinstance(node, ast.Tuple):
        return tuple(evaluate(e, env, loc, what) for e in node.elts)
    rule = _RULES.get(type(node))
    if rule is None:
        raise ExpandError(f"cannot evaluate '{ast.unparse(node)}'", loc)
    return rule(node, lambda n: evaluate(n, env, loc, what), loc)


def _unknown_name(name: str, env: dict, what: str) -> str:
    known = ", ".join(sorted(env)) or "none"
    hint = ""
    if name in ("in_channels", "in_h", "in_w") and "in_channels" not in env:
        hint = "; in_channels, in_h and in_w are in scope inside a block (its input's size)"
    elif name in FUNCTIONS:
        hint = f"; {name} is a function: write {name}(...)"
    return f"unknown name '{name}'{what} (arguments in scope: {known}){hint}"


def _unary(node, ev, loc):
    value = ev(node.operand)
    if isinstance(node.op, ast.Not):
        return not _need_bool(value, node, loc, "not")
    _need_number(value, node, loc)
    return -value if isinstance(node.op, ast.USub) else +value


def _binary(node, ev, loc):
    left, right = ev(node.left), ev(node.right)
    _need_number(left, node, loc)
    _need_number(right, node, loc)
    if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
        raise ExpandError(f"division by zero in '{ast.unparse(node)}'", loc)
    if isinstance(node.op, ast.Mult) and abs(left) > MAX_INT and abs(right) > 1:
        raise ExpandError(f"number too large in '{ast.unparse(node)}'", loc)
    return _bounded(_BINOPS[type(node.op)](left, right), node, loc)


def _bounded(result, node, loc):
    """A computed number, refused beyond MAX_INT (ints) or when not finite (floats)."""
    if isinstance(result, int) and not isinstance(result, bool) and abs(result) > MAX_INT:
        raise ExpandError(f"number too large in '{_clip(ast.unparse(node))}' (numbers in a spec are at most 10^15)", loc)
    if isinstance(result, float) and not math.isfinite(result):
        raise ExpandError(f"number too large in '{_clip(ast.unparse(node))}'", loc)
    return result


def _compare(node, ev, loc):
    """``a < b <= c``: chained and short-circuited as in Python; order only between numbers."""
    left = ev(node.left)
    for op, right_node in zip(node.ops, node.comparators):
        right = ev(right_node)
        if not isinstance(op, (ast.Eq, ast.NotEq)):
            _need_number(left, node, loc, "comparison")
            _need_number(right, node, loc, "comparison")
        if not _COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _boolean(node, ev, loc):
    """``and``/``or`` over booleans, short-circuited (``b != 0 and a // b > 1`` never divides by 0)."""
    word = "and" if isinstance(node.op, ast.And) else "or"
    for value_node in node.values:
        value = _need_bool(ev(value_node), node, loc, word)
        if value != (word == "and"):
            return value
    return word == "and"


def _choice(node, ev, loc):
    """``a if c else b``: only the chosen side is evaluated."""
    test = _need_bool(ev(node.test), node, loc, "if")
    return ev(node.body) if test else ev(node.orelse)


def _call(node, ev, loc):
    name = node.func.id
    if name not in FUNCTIONS:  # an op as a value, where the argument is not of type op
        raise ExpandError(f"'{name}' is not a function of the spec language in '{_clip(ast.unparse(node))}' "
                          f"(functions: {', '.join(FUNCTIONS)})", loc)
    args = [ev(a) for a in node.args]
    kwargs = {k.arg: ev(k.value) for k in node.keywords}
    # None only as make_divisible's min_value (its default), never as a value or a divisor
    may_be_none = [i >= 2 for i in range(len(args))] + [k == "min_value" for k in kwargs]
    for value, optional in zip((*args, *kwargs.values()), may_be_none):
        if value is not None or not (optional and name == "make_divisible"):
            _need_number(value, node, loc, f"{name}()")
    if name == "make_divisible":
        return _bounded(_make_divisible(node, loc, *args, **kwargs), node, loc)
    if name in ("min", "max"):
        return (min if name == "min" else max)(args)
    (value,) = args
    if isinstance(value, float) and abs(value) > MAX_INT:  # int(1e300) would be a 300-digit number
        raise ExpandError(f"number too large in '{_clip(ast.unparse(node))}' (numbers in a spec are at most 10^15)", loc)
    return {"round": round, "int": int, "ceil": math.ceil, "floor": math.floor}[name](value)


def _make_divisible(node, loc, value, divisor, min_value=None) -> int:
    """torchvision's ``_make_divisible`` (models/_utils.py): the multiple of ``divisor`` nearest to
    ``value``, at least ``min_value`` (default: the divisor), and never more than 10% below ``value``."""
    if not _is_int(divisor) or divisor < 1 or (min_value is not None and not _is_int(min_value)):
        raise ExpandError(f"make_divisible needs a positive int divisor and an int min_value, in "
                          f"'{_clip(ast.unparse(node))}'", loc)
    if abs(value) > MAX_INT:
        raise ExpandError(f"number too large in '{_clip(ast.unparse(node))}' (numbers in a spec are at most 10^15)", loc)
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


_RULES = {ast.UnaryOp: _unary, ast.BinOp: _binary, ast.Compare: _compare, ast.BoolOp: _boolean, ast.IfExp: _choice,
          ast.Call: _call}


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[:width] + "..."


def _need_number(value, node, loc, what: str = "arithmetic"):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpandError(f"{what} on a non-number ({describe(value)}) in '{_clip(ast.unparse(node))}'", loc)


def _need_bool(value, node, loc, word: str) -> bool:
    if not isinstance(value, bool):
        raise ExpandError(f"'{word}' needs a boolean, got {describe(value)} in '{_clip(ast.unparse(node))}' "
                          "(write a comparison: n != 0)", loc)
    return value


def _show(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


# --- argument types shared by ops and blocks ---------------------------------------------------

TYPES = ("int", "float", "bool", "size", "number", "op")
OP_TYPES = ("str", "ints")  # attribute types of ops only: a word (one of the op's choices), a tuple of ints


@dataclass(frozen=True)
class OpValue:
    """An op as the value of an argument of type op (a block's activation or norm): the op's name
    and the attribute values given with it (``leaky_relu(0.2)``)."""

    name: str
    args: tuple = ()
    kwargs: tuple = ()  # ((attribute, value), ...)

    def __str__(self) -> str:
        parts = [_literal(v) for v in self.args] + [f"{k}={_literal(v)}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})" if parts else self.name

    def call(self, loc: Loc) -> Call:
        """The call this value stands for, as if written where it is used."""
        return Call(self.name, tuple(_constant(v) for v in self.args), tuple((k, _constant(v)) for k, v in self.kwargs),
                    str(self), loc)


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else repr(value)


def _constant(value) -> ast.expr:
    return ast.Tuple([ast.Constant(v) for v in value], ast.Load()) if isinstance(value, tuple) else ast.Constant(value)


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
    if type_ == "op":
        return value if isinstance(value, OpValue) else None
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


def float_hint(value, node: ast.expr) -> str:
    """Where an int was wanted and a float came: how to convert it (a float is never an int by itself)."""
    floats = isinstance(value, float) or (isinstance(value, tuple) and any(isinstance(v, float) for v in value))
    if not floats:
        return ""
    shown = "" if isinstance(node, ast.Constant) else f" (from '{_clip(ast.unparse(node), 40)}')"
    return f"{shown}; convert it explicitly: int(...), round(...), ceil(...) or make_divisible(..., 8)"


def describe(value) -> str:
    if isinstance(value, OpValue):
        return f"the op {value}"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    if isinstance(value, tuple):
        return f"tuple {value}"
    if value is None:
        return "none"
    return f"{type(value).__name__} {value!r}"


TYPE_WORDS = {"int": "an int", "float": "a number", "number": "a number", "bool": "a boolean", "size": "an int or a pair of ints",
              "str": "a quoted word such as 'tanh'", "ints": "an int or a tuple of ints",
              "op": "an op such as relu or leaky_relu(0.2)"}


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
        if isinstance(operand, ast.Constant):
            try:
                return ast.Constant(evaluate(ast.UnaryOp(node.op, operand), {}, None))
            except ArchspecError:  # not a number (not a boolean): kept written out, expansion reports it
                pass
        return ast.UnaryOp(node.op, operand)
    if isinstance(node, ast.Tuple):
        return ast.Tuple([fold(e) for e in node.elts], ast.Load())
    if isinstance(node, (ast.Call, ast.Compare, ast.BoolOp, ast.IfExp)):
        return _fold_other(node)
    return node


def _fold_other(node: ast.expr) -> ast.expr:
    """A function call, comparison, ``and``/``or`` or ``a if c else b``: its value when every part is
    a constant (a condition alone decides ``a if c else b``), else the expression with its parts folded."""
    if isinstance(node, ast.IfExp):
        test = fold(node.test)
        if isinstance(test, ast.Constant) and isinstance(test.value, bool):
            return fold(node.body if test.value else node.orelse)
        return ast.IfExp(test, fold(node.body), fold(node.orelse))
    if isinstance(node, ast.Call):
        node = ast.Call(node.func, [fold(a) for a in node.args], [ast.keyword(k.arg, fold(k.value)) for k in node.keywords])
        parts = [*node.args, *(k.value for k in node.keywords)]
    elif isinstance(node, ast.Compare):
        node = ast.Compare(fold(node.left), node.ops, [fold(c) for c in node.comparators])
        parts = [node.left, *node.comparators]
    else:
        node = ast.BoolOp(node.op, [fold(v) for v in node.values])
        parts = node.values
    if all(isinstance(p, ast.Constant) for p in parts):
        try:
            return ast.Constant(evaluate(node, {}, None))
        except ArchspecError:  # refused when evaluated: kept written out, expansion reports it
            pass
    return node


# How generated source writes the spec's functions: ceil and floor are math's (``import math``),
# make_divisible a function the generated file defines, the others Python's builtins.
PYTHON_FUNCTIONS = {"ceil": "math.ceil", "floor": "math.floor"}


def unparse(node: ast.expr) -> str:
    """Python source of a checked expression, constants folded."""
    tree = fold(node)
    if any(isinstance(n, ast.Call) and n.func.id in PYTHON_FUNCTIONS for n in ast.walk(tree)):
        class _Rename(ast.NodeTransformer):
            def visit_Call(self, n):
                self.generic_visit(n)
                if n.func.id in PYTHON_FUNCTIONS:
                    return ast.Call(ast.Name(PYTHON_FUNCTIONS[n.func.id], ast.Load()), n.args, n.keywords)
                return n

        tree = _Rename().visit(copy.deepcopy(tree))
    return ast.unparse(tree)


def functions(node: ast.expr) -> set:
    """The spec functions an expression calls."""
    return {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id in FUNCTIONS}


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
