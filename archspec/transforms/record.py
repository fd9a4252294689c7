"""Checking a rewrite against the analysis, and the record ``archspec check`` prints.

Every instance of a rewritten item is found in the module trees before and after (through the
source item each module was built from), and compared: output shape and receptive field must
be equal, or the rewrite is refused. Parameters (every part) and MACs (main network, batch 1,
eval) are summed over the instances on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import Loc
from ..text import dims
from .sites import TransformError


@dataclass(frozen=True)
class Rewrite:
    """What one rewrite changed: a spec item, every module built from it, and the totals."""

    transform: int  # index in the spec's transforms list
    rule: str
    site: str  # YAML path of the rewritten item
    loc: Loc
    before: str  # the original call
    after: tuple  # the calls that replace it
    paths: tuple  # module paths of the original's instances
    kernel: int
    weights: tuple  # weights per (input, output) channel pair: (before, after)
    params: tuple  # (before, after), all parts
    macs: tuple  # (before, after), main network, batch 1, eval

    def describe(self) -> str:
        """One line for the check table."""
        k = self.kernel
        wb, wa = self.weights
        pb, pa = self.params
        mb, ma = self.macs
        n = len(self.paths)
        where = self.paths[0] if n == 1 else f"{n} modules: {self.paths[0]} ... {self.paths[-1]}" if n else "no module"
        new = " -> ".join(self.after)
        return (f"{self.rule} {k}x{k} at {self.site} ({self.loc}): {self.before} => {new}; "
                f"weights per channel pair {wb} -> {wa} ({_pct(wb, wa)}); in {where}: "
                f"params {pb:,} -> {pa:,} ({pa - pb:+,}, {_pct(pb, pa)}), "
                f"MACs (eval) {mb:,} -> {ma:,} ({ma - mb:+,}, {_pct(mb, ma)})")

    def to_json(self) -> dict:
        return {
            "transform": self.transform, "rule": self.rule, "site": self.site,
            "file": self.loc.file, "line": self.loc.line, "column": self.loc.col,
            "kernel": self.kernel, "before": self.before, "after": list(self.after), "modules": list(self.paths),
            "weights_per_channel_pair": {"before": self.weights[0], "after": self.weights[1]},
            "params": {"before": self.params[0], "after": self.params[1], "change": self.params[1] - self.params[0]},
            "macs": {"before": self.macs[0], "after": self.macs[1], "change": self.macs[1] - self.macs[0]},
        }


def _pct(a: int, b: int) -> str:
    if not a:
        return "n/a" if b else "+0.0%"
    return f"{(b - a) / a * 100:+.1f}%"


class Analysed:
    """An expanded and analysed spec, indexed by source item."""

    def __init__(self, expanded, analysis):
        self.expanded = expanded
        self.analysis = analysis
        self.by_item: dict = {}
        for m in expanded.model.walk():
            if m.item is not None:
                self.by_item.setdefault(id(m.item), []).append(m)

    def instances(self, item) -> list:
        return self.by_item.get(id(item), [])

    def output(self, path: str):
        meta = self.analysis.graph.modules[path].output.meta
        return meta["shape"], meta["rf"][:2]

    def totals(self, modules: list) -> tuple:
        stats = self.analysis.modules
        params = sum(stats[m.path]["params"] for m in modules)
        macs = sum(stats[m.path]["macs"] for m in modules if m.part == "main")
        return params, macs


def account(index: int, rule, change, before: Analysed, after: Analysed, what: str) -> Rewrite:
    """Compare one change's instances before and after; raises TransformError if one changed shape or receptive field."""
    old = before.instances(change.old)
    last = after.instances(change.last)
    errors = []
    for m_old, m_new in zip(old, last):
        shape0, rf0 = before.output(m_old.path)
        shape1, rf1 = after.output(m_new.path)
        if shape0 != shape1:
            was, now = (dims(s, " x ", "nothing") for s in (shape0, shape1))
            errors.append(f"the output of {m_old.path} changes from {was} to {now}")
        elif rf0 != rf1:
            errors.append(f"the receptive field of {m_old.path} changes from {dims(rf0)} to {dims(rf1)}")
    if len(old) != len(last):  # an internal inconsistency, not the user's: say it plainly anyway
        errors.append(f"{len(old)} modules before the rewrite but {len(last)} after")
    if errors:
        raise TransformError(f"{what}: rewriting '{change.site.call.text}' is refused: {errors[0]}", change.site.call.loc)
    new_modules = [m for item in change.new for m in after.instances(item)]
    site = change.site
    loc = getattr(change.old, "loc", site.call.loc)
    (p0, m0), (p1, m1) = before.totals(old), after.totals(new_modules)
    return Rewrite(index, rule.name, loc.path, loc, site.call.text, tuple(change.after),
                   tuple(m.path for m in old), site.kernel, (site.kernel ** 2, rule.weights(site.kernel)),
                   (p0, p1), (m0, m1))

