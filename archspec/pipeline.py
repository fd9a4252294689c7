"""The stages composed: ``compile_spec(path)`` runs load -> validate -> expand -> transform -> lower
-> lint -> analyse and checks ``expect:``. The CLI and the public API both call this; nothing
else reaches across stages.
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass

from typing import TYPE_CHECKING

from .analyse import Analysis
from .errors import ExpectError, Loc, raise_all
from .expand import Expanded
from .graph import Graph
from .load import LDict, load
from .validate import Resolved, validate

if TYPE_CHECKING:
    from .transforms import Rewrite


@dataclass
class Compiled:
    """A spec and what every stage made of it."""

    file: str
    resolved: Resolved  # validated (and rewritten by its transforms)
    expanded: Expanded  # the module tree
    graph: Graph  # lowered, linted and analysed: every node's meta is filled
    analysis: Analysis  # totals and per-module figures
    rewrites: list[Rewrite]  # what each transform changed

    @property
    def name(self) -> str:
        return self.resolved.name


def compile_spec(file: str, input_shape=None, num_classes: int | None = None, check_expect: bool = True,
                 root: str | None = None) -> Compiled:
    """Run every stage on one spec file.

    >>> c = compile_spec("specs/googlenet.yaml")   # doctest: +SKIP
    >>> c.analysis.totals.params
    13004888
    """
    from .analyse import analyse
    from .expand import expand
    from .lint import lint
    from .lower import lower

    with _gc_paused():
        resolved = validate(load(file, root), file)
        rewrites = []
        if resolved.spec is not None and resolved.spec.transforms:  # imported only when needed
            from .transforms import apply_transforms

            resolved, rewrites = apply_transforms(resolved, input_shape, num_classes)
        expanded = expand(resolved, input_shape, num_classes)
        graph = lint(lower(expanded))
        analysis = analyse(graph)
    compiled = Compiled(file, resolved, expanded, graph, analysis, rewrites)
    overridden = input_shape is not None or num_classes is not None
    if check_expect and not overridden:
        check_expectations(compiled)
    return compiled


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while the stages build their (long-lived) structures.

    Compiling allocates many small objects that all survive, so every collection the allocations
    trigger scans a growing heap and finds almost nothing: 40% of the time of a 1,000-block spec.
    The stages leave almost no cyclic garbage (peak memory is within 1% either way, see
    docs/performance.md); the collector's previous state is restored on exit, errors included.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_expectations(c: Compiled) -> None:
    expect = c.resolved.spec.expect
    if expect is None:
        return
    t = c.analysis.totals
    actual = {
        "params": t.params, "params_eval": t.params_eval, "buffers": t.buffers, "macs": t.macs,
        "flops": t.flops, "depth": t.depth, "output": list(c.analysis.output),
    }
    data = c.resolved.data
    raw = data.get("expect") if isinstance(data, dict) else None
    errors = []
    for key, want in expect.model_dump(exclude_none=True).items():
        got = actual[key]
        if got != want:
            loc = raw.loc_of(key) if isinstance(raw, LDict) else Loc(c.file)
            shown = (lambda v: f"{v:,}") if isinstance(got, int) else str
            errors.append(ExpectError(f"expect.{key} is {shown(want)} but the network has {shown(got)}", loc.at(f"expect.{key}")))
    raise_all(errors)


def spec_files(directory: str = "specs") -> list:
    """Every spec under a directory, libraries (lib/) excluded, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "lib" and not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith((".yaml", ".yml")))
    return sorted(out)


def stock_dir() -> str:
    """The stock specs (package data, archspec/resources.py)."""
    from .resources import data_dir

    return data_dir("specs", "googlenet.yaml") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")


def resolve_specs(args: list) -> list:
    """Spec arguments as files. A name that is not a file here may name a stock spec
    (``googlenet``, ``inception_v3.yaml`` or ``specs/resnet50.yaml`` work from any directory);
    no argument means every spec under ./specs, else every stock spec."""
    if not args:
        return spec_files("specs") if os.path.isdir("specs") else spec_files(stock_dir())
    out = []
    for arg in args:
        if not os.path.exists(arg):
            base = os.path.basename(arg)
            stock = os.path.join(stock_dir(), base if base.endswith((".yaml", ".yml")) else base + ".yaml")
            if os.path.isfile(stock) and os.sep not in os.path.relpath(stock, stock_dir()):
                out.append(stock)
                continue
        out.append(arg)
    return out
