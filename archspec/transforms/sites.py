"""Where a rewrite applies: conv2d calls and calls of conv unit blocks, read statically.

A *conv unit* is a block whose body is a flat list of calls with exactly one ``conv2d``, no
other block calls, and whose conv takes ``kernel_size`` from one of the block's arguments, and
``stride`` and ``padding`` from arguments too (or leaves them at their defaults); ``dilation`` and
``groups`` stay 1. ``BasicConv2d(out, k, s, p)`` is one. A unit is rewritten at its call sites
(the new pieces are calls of the same unit, or of the transform's ``unit:``), never inside.

Everything here works on the validated spec's call expressions, before any evaluation: the
kernel and the padding must be literals at the call site (or the unit's default), so that the
rewrite can be written back into the spec; the stride may be any expression, it moves unchanged.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from .. import exprs
from ..errors import ArchspecError
from ..ops import OPS, REQUIRED
from ..validate import Block, CallItem, ForItem, GroupItem, MergeItem, NamedItem, RepeatItem


class TransformError(ArchspecError):
    """A declared rewrite cannot be applied, or would change what the network computes in shape."""

    stage = "transform"


# --- conv units -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvUnit:
    """Which of a unit block's arguments feed its conv's out_channels, kernel, stride and padding."""

    block: str
    out: str | None  # None when out_channels is an expression, not a bare argument
    k: str
    s: str | None  # None: the conv keeps its default (stride 1)
    p: str | None  # None: padding 0


def op_params(name: str) -> list:
    return [(a.name, a.type, a.default) for a in OPS[name].attrs]


def block_params(block: Block) -> list:
    return [(a.name, a.type, a.default) for a in block.args]


def given_args(call: exprs.Call, params: list) -> dict:
    """The argument expressions a call gives, by parameter name (defaults left out)."""
    names = [p[0] for p in params]
    out = dict(zip(names, call.args))
    out.update(call.kwargs)
    return out


def _calls(items: list):
    """(call, item) for every call in an item list, nested lists included."""
    for item in items:
        if isinstance(item, CallItem):
            yield item.call, item
        elif isinstance(item, NamedItem):
            if item.seq is not None:
                yield from _calls(item.seq)
            else:
                yield item.call, item
        elif isinstance(item, MergeItem):
            for branch in item.branches:
                yield from _calls(branch)
        elif isinstance(item, (RepeatItem, ForItem, GroupItem)):
            yield from _calls(item.body)


def conv_unit(block: Block, blocks: dict):
    """The block's ConvUnit, or a sentence saying why it is not one."""
    problem = _not_straight(block.layers)
    if problem:
        return problem
    calls = [call for call, _ in _calls(block.layers)]
    nested = [c.name for c in calls if c.name in blocks]
    if nested:
        return f"it calls block '{nested[0]}'"
    convs = [c for c in calls if c.name == "conv2d"]
    if len(convs) != 1:
        return f"it has {len(convs)} conv2d calls, not one"
    given = given_args(convs[0], op_params("conv2d"))
    args = {a.name for a in block.args}

    def arg_name(attr: str, optional: bool):
        expr = given.get(attr)
        if expr is None and optional:
            return None
        if isinstance(expr, ast.Name) and expr.id in args:
            return expr.id
        shown = ast.unparse(expr) if expr is not None else "missing"
        raise _NotUnit(f"its conv2d's {attr} is '{shown}', not one of its arguments")

    try:
        for attr in ("dilation", "groups"):
            if attr in given and _literal(given[attr]) != 1:
                return f"its conv2d's {attr} is '{ast.unparse(given[attr])}', not 1"
        out = given.get("out_channels")
        return ConvUnit(block.name, out.id if isinstance(out, ast.Name) and out.id in args else None,
                        arg_name("kernel_size", False), arg_name("stride", True), arg_name("padding", True))
    except _NotUnit as exc:
        return str(exc)


def _not_straight(items: list) -> str | None:
    """Why a body is not a straight line of calls (None when it is)."""
    for item in items:
        if isinstance(item, (MergeItem, RepeatItem, ForItem, GroupItem)) or (isinstance(item, NamedItem)
                                                                             and item.seq is not None):
            return "its body has merges, Sequentials, loops or groups"
        if isinstance(item, NamedItem) and item.cond is not None:
            return "its body has an if: item"
    return None


class _NotUnit(Exception):
    pass


def _literal(expr):
    """An int, or a pair of ints, written literally; None otherwise."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int) and not isinstance(expr.value, bool):
        return expr.value
    if isinstance(expr, ast.Tuple) and len(expr.elts) == 2:
        values = [_literal(e) for e in expr.elts]
        if all(isinstance(v, int) for v in values):
            return tuple(values)
    return None


def reachable_blocks(layers: list, aux: list, blocks: dict) -> list:
    """Names of the blocks the network instantiates, in definition order."""
    seen: set = set()
    todo = [c.name for c, _ in _calls([*layers, *(a.module for a in aux)])]
    while todo:
        name = todo.pop()
        if name in blocks and name not in seen:
            seen.add(name)
            todo.extend(c.name for c, _ in _calls(blocks[name].layers))
    return [name for name in blocks if name in seen]


# --- one site ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """A convolution the rule rewrites, read from its call."""

    call: exprs.Call
    params: list  # the callee's (name, type, default)
    names: tuple  # argument names for (out, kernel, stride, padding) in the callee
    given: dict  # argument expressions the call gives
    kernel: int  # square kernel size
    padding: object  # int or pair, literal
    stride: object  # as written (an expression), or the default value


def _square(k):
    if isinstance(k, int):
        return k
    if isinstance(k, tuple) and k[0] == k[1]:
        return k[0]
    return None


def find_site(call: exprs.Call, blocks: dict, units: dict, rule, kernel: int | None, what: str):
    """The Site for this call, None when the rule leaves it alone; TransformError when it cannot rewrite it."""
    if call.name == "conv2d":
        params = op_params("conv2d")
        names = ("out_channels", "kernel_size", "stride", "padding")
    elif isinstance(units.get(call.name), ConvUnit):
        unit = units[call.name]
        params = block_params(blocks[call.name])
        names = (unit.out, unit.k, unit.s, unit.p)
    else:
        return None
    given = given_args(call, params)
    defaults = {p[0]: p[2] for p in params}
    _, k_name, s_name, p_name = names
    k_value, shown = _static(given, defaults, k_name)
    if k_value is None:
        raise TransformError(f"{what}: cannot read the kernel of '{call.text}': {k_name} is '{shown}', not a literal size "
                             "(write the kernel as a number where the conv is called)", call.loc)
    size = _square(k_value)
    if size is None or (kernel is not None and size != kernel) or not rule.applies(size):
        return None
    if call.name == "conv2d":
        for attr in ("dilation", "groups"):
            if attr in given and _literal(given[attr]) != 1:
                raise TransformError(f"{what}: cannot factorize '{call.text}': its {attr} is "
                                     f"'{ast.unparse(given[attr])}', not 1", call.loc)
    padding = 0
    if p_name is not None:
        padding, shown = _static(given, defaults, p_name)
        if padding is None:
            raise TransformError(f"{what}: cannot factorize '{call.text}': {p_name} is '{shown}', not a literal "
                                 "(the rewrite must split it over the new convolutions)", call.loc)
    stride = given.get(s_name, defaults.get(s_name, 1)) if s_name is not None else 1
    return Site(call, params, names, given, size, padding, stride)


def _static(given: dict, defaults: dict, name: str) -> tuple:
    """(value, as written) of an argument the rewrite must know statically: the literal given at the
    call, else the block's default; value None when it is an expression."""
    expr = given.get(name)
    if expr is None:
        return _default(defaults[name]), "not given"
    return _literal(expr), ast.unparse(expr)


def _default(value):
    if value is REQUIRED or value is None or isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, tuple) and len(value) == 2):
        return value
    return None


# --- writing the new calls --------------------------------------------------------------------

def _src(value) -> str:
    if isinstance(value, ast.AST):
        return ast.unparse(value)
    return repr(value)


def _is_default(value, default) -> bool:
    if isinstance(value, ast.AST) or default is REQUIRED or default is None:
        return False
    as_pair = (lambda v: tuple(v) if isinstance(v, tuple) else (v, v))
    return as_pair(value) == as_pair(default)


def same_callee(site: Site, kernel, padding, stride) -> str:
    """The original call with a new kernel, padding and stride; other arguments unchanged.

    Arguments given positionally stay positional and given keywords keep their place; a stride
    or padding the call did not give is added only when it differs from the default, and a
    given one set back to its default is left out.
    """
    _, k_name, s_name, p_name = site.names
    new = {k_name: kernel}
    if p_name is not None:
        new[p_name] = padding
    if s_name is not None:
        new[s_name] = stride
    defaults = {p[0]: p[2] for p in site.params}
    positional = [_src(new.get(name, expr)) for (name, _, _), expr in zip(site.params, site.call.args)]

    def keep(name) -> bool:
        return name == k_name or not _is_default(new[name], defaults[name])

    keywords = [f"{name}={_src(new.get(name, expr))}" for name, expr in site.call.kwargs
                if name not in new or keep(name)]
    keywords += [f"{name}={_src(new[name])}" for name, _, _ in site.params
                 if name in new and name not in site.given and keep(name)]
    return f"{site.call.name}({', '.join([*positional, *keywords])})"


def other_unit(site: Site, unit: ConvUnit, block: Block, kernel, padding, stride) -> str:
    """A call of ``unit`` doing the same convolution piece (the transform's ``unit:``)."""
    values = {unit.out: site.given[site.names[0]], unit.k: kernel}
    if unit.p is not None:
        values[unit.p] = padding
    if unit.s is not None:
        values[unit.s] = stride
    args = []
    for i, a in enumerate(block.args):
        if a.name not in values or (a.name != unit.k and _is_default(values[a.name], a.default)):
            continue
        text = _src(values[a.name])
        args.append(text if i == 0 else f"{a.name}={text}")
    return f"{block.name}({', '.join(args)})"
