"""One transform over the validated spec: find the sites, write the new items.

Naming rule (docs/transforms.md): an item of an nn.Sequential list at index i becomes as many
consecutive items as the rule makes pieces (i, i+1, ...; later items move up); a named item
``x: CALL`` becomes ``x: [piece, piece, ...]``, an nn.Sequential under the same name, so module
paths that named it (aux ``from:``, ``edit:``) still name the same computation, now ``x.0``,
``x.1``, ... inside.

Block definitions are rewritten (so every instance, and the generated class, shows the
rewrite); unit blocks themselves are left alone and rewritten at their call sites; blocks the
network never instantiates are not touched. The input spec is never mutated.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, replace

from .. import exprs
from ..errors import ArchspecError, raise_all
from ..validate import CallItem, ForItem, GroupItem, MergeItem, NamedItem, RepeatItem, Resolved
from .factorize import MAX_PIECES, RULES, RuleError
from .sites import ConvUnit, Site, TransformError, conv_unit, find_site, other_unit, reachable_blocks, same_callee


@dataclass
class Change:
    """One rewritten item: the original, what replaced it, and the item whose output equals the original's."""

    old: object
    new: list
    last: object
    site: Site
    after: list  # the new call texts


class Rewriter:
    def __init__(self, resolved: Resolved, transform, what: str, where):
        self.r = resolved
        self.t = transform
        self.what = what
        self.rule = RULES[transform.factorize]
        self.units = {name: conv_unit(b, resolved.blocks) for name, b in resolved.blocks.items()}
        self.target = self._target(where) if transform.unit else None
        self.changes: list = []
        self.errors: list = []
        self.made = 0  # pieces built so far, bounded by MAX_PIECES

    def _target(self, where) -> ConvUnit:
        name = self.t.unit
        at = where("unit")
        if name not in self.r.blocks:
            known = ", ".join(n for n, u in self.units.items() if isinstance(u, ConvUnit)) or "none"
            raise TransformError(f"{self.what}: unit '{name}' is not a block (conv units here: {known})", at)
        unit = self.units[name]
        if not isinstance(unit, ConvUnit):
            raise TransformError(f"{self.what}: unit '{name}' is not a conv unit: {unit}", at)
        if unit.out is None:
            raise TransformError(f"{self.what}: unit '{name}' does not take its conv's out_channels from an argument", at)
        fillable = {unit.out, unit.k, unit.s, unit.p}
        for a in self.r.blocks[name].args:
            if a.required and a.name not in fillable:
                raise TransformError(f"{self.what}: unit '{name}' has a required argument '{a.name}' the rewrite cannot fill", at)
        return unit

    # -- the spec --
    def run(self) -> Resolved:
        r = self.r
        blocks = dict(r.blocks)
        for name in reachable_blocks(r.layers, r.aux, r.blocks):
            if not isinstance(self.units[name], ConvUnit):
                layers = self.items(r.blocks[name].layers, False)
                if layers is not r.blocks[name].layers:
                    blocks[name] = replace(r.blocks[name], layers=layers)
        layers = self.items(r.layers, False)
        aux = [a if (m := self.items([a.module], False)[0]) is a.module else replace(a, module=m) for a in r.aux]
        raise_all(self.errors)
        return replace(r, blocks=blocks, layers=layers, aux=aux)

    def items(self, items: list, sequential: bool) -> list:
        """The rewritten list; the same list object when nothing in it changed."""
        out = []
        for item in items:
            try:
                out.extend(self.item(item, sequential))
            except ArchspecError as exc:
                self.errors.append(exc)
                out.append(item)
        same = len(out) == len(items) and all(a is b for a, b in zip(out, items))
        return items if same else out

    def item(self, item, sequential: bool) -> list:
        if isinstance(item, CallItem):
            site = self.site(item.call) if sequential else None  # outside a Sequential a conv cannot stand alone
            if site is None:
                return [item]
            calls = self.calls(site)
            new = [CallItem(c, item.loc) for c in calls]
            self.changes.append(Change(item, new, new[-1], site, [c.text for c in calls]))
            return new
        if isinstance(item, NamedItem):
            if item.seq is not None:
                seq = self.items(item.seq, True)
                return [item if seq is item.seq else replace(item, seq=seq)]
            site = self.site(item.call)
            if site is None:
                return [item]
            calls = self.calls(site)
            new = replace(item, call=None, seq=[CallItem(c, item.call.loc) for c in calls])  # if:, template kept
            self.changes.append(Change(item, [new], new, site, [c.text for c in calls]))
            return [new]
        if isinstance(item, MergeItem):
            branches = [self.items(b, False) for b in item.branches]
            same = all(a is b for a, b in zip(branches, item.branches))
            return [item if same else replace(item, branches=branches)]
        if isinstance(item, (RepeatItem, ForItem, GroupItem)):  # a loop or a group: its body, in the same context
            body = self.items(item.body, sequential)
            return [item if body is item.body else replace(item, body=body)]
        return [item]

    # -- one site --
    def site(self, call: exprs.Call):
        return find_site(call, self.r.blocks, self.units, self.rule, self.t.kernel, self.what)

    def calls(self, site: Site) -> list:
        self.count_pieces(site)
        try:
            pieces = self.rule.pieces(site.kernel, site.padding)
        except RuleError as exc:
            raise TransformError(f"{self.what}: {exc}", site.call.loc) from None
        out = []
        for piece in pieces:
            stride = site.stride if piece.strided else 1
            if self.target is None:
                text = same_callee(site, piece.kernel, piece.padding, stride)
            else:
                text = self._other(site, piece, stride)
            out.append(exprs.parse_call(text, site.call.loc))
        return out

    def count_pieces(self, site: Site) -> None:
        """Refuse a rewrite that would build more than MAX_PIECES convolutions, before building them."""
        n = self.rule.count(site.kernel)
        self.made += n
        if self.made > MAX_PIECES:
            more = f"{n:,} convolutions" if n == self.made else f"{n:,} more convolutions ({self.made:,} in all)"
            raise TransformError(f"{self.what}: rewriting '{site.call.text}' would make {more}; "
                                 f"a transform makes at most {MAX_PIECES:,}", site.call.loc)

    def _other(self, site: Site, piece, stride) -> str:
        unit, call = self.target, site.call
        if site.names[0] is None or site.names[0] not in site.given:
            raise TransformError(f"{self.what}: cannot move '{call.text}' to unit '{unit.block}': "
                                 "its output channels are not an argument of the call", call.loc)
        if unit.s is None and not _is_one(stride):
            raise TransformError(f"{self.what}: unit '{unit.block}' has no stride argument for '{call.text}'", call.loc)
        if unit.p is None and piece.padding not in (0, (0, 0)):
            raise TransformError(f"{self.what}: unit '{unit.block}' has no padding argument for '{call.text}'", call.loc)
        return other_unit(site, unit, self.r.blocks[unit.block], piece.kernel, piece.padding, stride)


def _is_one(value) -> bool:
    if isinstance(value, ast.AST):
        return isinstance(value, ast.Constant) and value.value == 1
    return value in (1, (1, 1))
