"""Stock library blocks (specs/lib/*.yaml) reused where a module instance is one of them.

Each stock block is read as a template whose slots are expressions over its arguments
(``conv2d(out, k, stride=s, padding=p, bias=false)``). An instance matches when the two templates
unify: the same items in the same places, an argument name binding the instance's value (the
same value wherever it appears), constants equal, other expressions (``planes * 4``) equal once
evaluated; a named item with ``if: flag`` binds ``flag`` to whether the instance has that item.
A parameterless op may be a named module on one side and a function on the other: both compute the
same thing and hold no state_dict key (torchvision's ResNet registers ``self.relu``, the stock
library applies ``relu``). The spec then says ``use: [stock:lib/....yaml]`` and calls the block.
"""
from __future__ import annotations

import ast
import os

import yaml

from .. import exprs
from ..errors import ArchspecError, Loc
from ..ops import OPS, REQUIRED
from ..resources import stock_dir
from ..validate import parse_args
from .blocks import Arg, canon, fits, same
from .template import Slot, TCall, TFn, TMerge, TNamed, TSeq

STOCK_PREFIX = "stock:"


class StockBlock:
    def __init__(self, name: str, lib: str, args: list, raw_layers):
        self.name = name
        self.lib = lib  # lib/basic.yaml
        self.args = args  # [Arg]
        self.raw = raw_layers
        self.template = None  # parsed once every block of every library is known


class Stock:
    """The stock libraries' blocks; ``match`` an instance's template against them."""

    def __init__(self, directory: str | None = None):
        self.blocks: dict = {}
        self.libs_used: list = []
        lib = os.path.join(directory or stock_dir(), "lib")
        files = sorted(f for f in os.listdir(lib) if f.endswith(".yaml")) if os.path.isdir(lib) else []
        for f in files:
            self._read(os.path.join(lib, f), f"lib/{f}")
        for b in list(self.blocks.values()):
            try:
                b.template = _Parser(self.blocks, b.lib).items(b.raw)
            except (ArchspecError, KeyError, ValueError, TypeError):
                del self.blocks[b.name]  # a block this reader cannot follow is not offered

    def _read(self, path: str, lib: str) -> None:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        for name, block in (data.get("blocks") or {}).items():
            if name in self.blocks:
                continue
            errors: list = []
            args = parse_args(block.get("args") or {}, Loc(path), errors, name)
            if errors:
                continue
            self.blocks[name] = StockBlock(name, lib, [
                Arg(a.name, a.type, REQUIRED if a.required else a.default) for a in args], block["layers"])

    @staticmethod
    def supported() -> bool:
        """Whether specs may say ``use: [stock:lib/...]`` (the spec language of issue 11, item 4)."""
        from .. import resources

        return hasattr(resources, "stock_ref")

    def names(self) -> set:
        return set(self.blocks)

    def used(self) -> list:
        return [STOCK_PREFIX + lib for lib in self.libs_used]

    def match(self, template: list, mod) -> TCall | None:
        for block in self.blocks.values():
            env = _unify(block, template)
            if env is not None:
                if block.lib not in self.libs_used:
                    self.libs_used.append(block.lib)
                params = [(a.name, Slot(env[a.name], a.type, a.name, a.default, short=a.name)) for a in block.args]
                return TCall(block, params)
        return None


class _Parser:
    """A stock block's layers -> a template of expressions (the forms the stock libraries use)."""

    def __init__(self, blocks: dict, lib: str):
        self.blocks = blocks
        self.loc = Loc(lib)

    def items(self, raw: list) -> list:
        return [self.item(r) for r in raw]

    def item(self, raw):
        if isinstance(raw, str):
            return TFn(self.call(raw))
        for kind in ("concat", "add", "mul"):
            if kind in raw:
                branches = [self.items(b) if isinstance(b, list) else [self.item(b)] for b in raw[kind]]
                split = raw.get("split")
                return TMerge(kind, tuple(split) if isinstance(split, list) else split, branches)
        (name,) = [k for k in raw if k != "if"]
        value = raw[name]
        parsed = TSeq([self.entry(e) for e in value]) if isinstance(value, list) else self.call(value)
        return TNamed(name, parsed, raw.get("if"))

    def entry(self, raw):
        if isinstance(raw, list):
            return TSeq([self.entry(e) for e in raw])
        if not isinstance(raw, str):
            raise ValueError("a repeat or a mapping in a stock Sequential")
        return self.call(raw)

    def call(self, text: str) -> TCall:
        c = exprs.parse_call(text, self.loc)
        if c.name in OPS:
            names = [(a.name, a.default, a.type) for a in OPS[c.name].attrs]
            callee = c.name
        else:
            callee = self.blocks[c.name]
            names = [(a.name, a.default, a.type) for a in callee.args]
        given = dict(zip([n for n, _, _ in names], c.args))
        given.update(dict(c.kwargs))
        params = []
        for name, default, type_ in names:
            node = given.get(name)
            if node is None:
                if default is REQUIRED:
                    raise ValueError(f"{text}: no {name}")
                node = ast.Constant(default)
            params.append((name, Slot(node, type_, name)))
        return TCall(callee, params)


# --- unification --------------------------------------------------------------------------------

class _Env:
    def __init__(self):
        self.bound: dict = {}
        self.later: list = []  # (expression, value): checked once every name is bound

    def expr(self, node, value) -> bool:
        if isinstance(node, ast.Constant):
            return same(node.value, value)
        if isinstance(node, ast.Name):
            if node.id in self.bound:
                return same(self.bound[node.id], value)
            self.bound[node.id] = canon(value)
            return True
        self.later.append((node, value))
        return True


def _unify(block: StockBlock, template: list) -> dict | None:
    env = _Env()
    if not _items(block.template, template, env):
        return None
    values = {}
    for a in block.args:
        if a.name in env.bound:
            if not fits(env.bound[a.name], a.type):
                return None
            values[a.name] = env.bound[a.name]
        elif a.default is REQUIRED:
            return None
        else:
            values[a.name] = a.default
    for node, value in env.later:
        try:
            if not same(exprs.evaluate(node, values, Loc(block.lib)), value):
                return None
        except ArchspecError:
            return None
    return values


def _items(pats: list, ours: list, env: _Env) -> bool:
    i = 0
    for p in pats:
        if isinstance(p, TNamed) and p.cond is not None:
            present = i < len(ours) and isinstance(ours[i], TNamed) and ours[i].name == p.name
            if not isinstance(p.cond, str) or not env.expr(ast.Name(p.cond), present):
                return False
            if not present:
                continue
            p = TNamed(p.name, p.value)
        if i >= len(ours) or not _item(p, ours[i], env):
            return False
        i += 1
    return i == len(ours)


def _stateless_op(v) -> bool:
    return isinstance(v, TCall) and isinstance(v.callee, str) and not OPS[v.callee].stateful


def _item(p, o, env: _Env) -> bool:
    if isinstance(p, TNamed) and isinstance(o, TNamed):
        return p.name == o.name and _value(p.value, o.value, env)
    if isinstance(p, (TNamed, TFn)) and isinstance(o, (TNamed, TFn)):  # relu as a module on one side only
        return _stateless_op(p.value) and _stateless_op(o.value) and _value(p.value, o.value, env)
    if isinstance(p, TMerge) and isinstance(o, TMerge):
        return (p.kind == o.kind and p.split == o.split and len(p.branches) == len(o.branches)
                and all(_items(a, b, env) for a, b in zip(p.branches, o.branches)))
    return False


def _value(p, o, env: _Env) -> bool:
    if isinstance(p, TSeq) and isinstance(o, TSeq):
        return p.names == o.names and len(p.entries) == len(o.entries) and all(_value(a, b, env) for a, b in zip(p.entries, o.entries))
    if isinstance(p, TCall) and isinstance(o, TCall):
        if p.callee is not o.callee and p.callee != o.callee:
            return False
        ours = dict(o.params)
        return all(n in ours and env.expr(s.value, ours[n].value) for n, s in p.params)
    return False
