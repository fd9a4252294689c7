"""The stages composed, as one table: ``compile_spec(path)`` runs ``STAGES`` (load -> validate ->
expand -> lower -> lint -> analyse), then the spec's transforms, each of which sends the rewritten
spec through the analysis stages again, and checks ``expect:``. The CLI and the public API call
this; nothing else reaches across stages.

Every stage is a plain function from data to data in a module named after it. ``run`` calls each
with the values its parameters name (the spec file, the options, what an earlier stage made) and
stores its result under the stage's name, as sqlglot's optimizer runs its ``RULES``.
"""
from __future__ import annotations

import gc
import inspect
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .analyse import Analysis, analyse
from .errors import ArchspecError, ErrorList, ExpectError, LoadError, Loc, flatten, raise_all
from .expand import Expanded, expand
from .graph import Graph
from .lint import lint
from .load import LDict, load
from .lower import lower
from .validate import Resolved, validate

if TYPE_CHECKING:
    from .diff import Diff
    from .transforms import Rewrite

#         stores under   stage: reads
STAGES = (("data", load),  # file, root -> YAML data with a source map
          ("resolved", validate),  # data, file -> a validated spec
          ("expanded", expand),  # resolved, input_shape, num_classes -> the module tree
          ("graph", lower),  # expanded -> the graph of nodes
          ("graph", lint),  # graph -> the same graph, checked
          ("analysis", analyse))  # graph -> node meta, totals and per-module figures
ANALYSIS = STAGES[2:]  # what a rewritten spec goes through again


@dataclass
class Compiled:
    """A spec and what every stage made of it."""

    file: str
    resolved: Resolved  # validated (and rewritten by its transforms)
    expanded: Expanded  # the module tree
    graph: Graph  # lowered, linted and analysed: every node's meta is filled
    analysis: Analysis  # totals and per-module figures
    rewrites: list[Rewrite] = field(default_factory=list)  # what each transform changed
    overrides: dict = field(default_factory=dict)  # command-line overrides: {"input": ..., "num_classes": ...}

    @property
    def expect_checked(self) -> bool | None:
        """Whether the spec's expect: was checked (None: it has none); not with overrides."""
        if self.resolved.spec is None or self.resolved.spec.expect is None:
            return None
        return not self.overrides

    @property
    def override_flags(self) -> str:
        """The overrides as command-line flags (report's note says expect: was not checked)."""
        return override_flags(self.overrides)

    @property
    def name(self) -> str:
        return self.resolved.name


def run(stages: tuple, **values) -> dict:
    """Run ``stages`` in order on ``values`` (a dict of what is known); returns it, completed."""
    for name, stage in stages:
        wanted = inspect.signature(stage).parameters
        values[name] = stage(**{k: values[k] for k in wanted if k in values})
    return values


def analysed(resolved: Resolved, input_shape=None, num_classes: int | None = None) -> Compiled:
    """A validated spec through the analysis stages (expand -> analyse); its transforms not applied."""
    values = run(ANALYSIS, resolved=resolved, input_shape=input_shape, num_classes=num_classes)
    return Compiled(resolved.file, resolved, values["expanded"], values["graph"], values["analysis"])


def compile_spec(file: str, input_shape=None, num_classes: int | None = None, check_expect: bool = True,
                 root: str | None = None) -> Compiled:
    """Run every stage on one spec file.

    >>> c = compile_spec("specs/googlenet.yaml")   # doctest: +SKIP
    >>> c.analysis.totals.params
    13004888
    """
    if not os.path.exists(file):
        raise LoadError(missing_spec_message(file), Loc(file))
    overrides = {k: v for k, v in (("input", input_shape), ("num_classes", num_classes)) if v is not None}
    try:
        with _gc_paused():
            values = run(STAGES, file=file, root=root, input_shape=input_shape, num_classes=num_classes)
            compiled = Compiled(file, values["resolved"], values["expanded"], values["graph"], values["analysis"])
            if compiled.resolved.spec.transforms:  # imported only when needed
                from .transforms import apply_transforms

                compiled = apply_transforms(compiled, lambda resolved: analysed(resolved, input_shape, num_classes))
    except ArchspecError as exc:
        if overrides and _compiles(file, root):  # the override made the network impossible: say so
            _blame_overrides(exc, overrides)
        raise
    compiled.overrides = overrides
    if check_expect and not overrides:
        check_expectations(compiled)
    return compiled


def override_flags(overrides: dict) -> str:
    """``--input 3x32x32 --num-classes 10`` for the overrides given."""
    words = []
    if "input" in overrides:
        words.append("--input " + "x".join(map(str, overrides["input"])))
    if "num_classes" in overrides:
        words.append(f"--num-classes {overrides['num_classes']}")
    return " ".join(words)


def _compiles(file: str, root: str | None) -> bool:
    try:
        compile_spec(file, check_expect=False, root=root)
    except ArchspecError:
        return False
    return True


def _blame_overrides(exc: ArchspecError, overrides: dict) -> None:
    note = f" (with {override_flags(overrides)}; the spec as written compiles)"
    for e in flatten(exc):
        e.message += note
    if len(flatten(exc)) > 1:
        exc.message = flatten(exc)[0].message


def missing_spec_message(file: str) -> str:
    """No such file; for a bare name, the stock spec it may have meant and the list of them."""
    from .resources import missing_message

    return missing_message(file)


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


def diff_specs(a: str, b: str, code: bool = False) -> Diff:
    """Compile two spec files and compare them; raises ArchspecError on a spec error of either.

    ``code`` adds a unified diff of the two generated modules.

    >>> d = diff_specs("specs/googlenet_paper.yaml", "specs/googlenet.yaml")   # doctest: +SKIP
    >>> d.identical, d.totals()["params"]["delta"]                               # doctest: +SKIP
    (False, -373392)
    """
    from .diff import code_diff, diff_compiled

    compiled, errors = [], []
    for path in (a, b):
        try:
            compiled.append(compile_spec(path))
        except ArchspecError as exc:
            errors.extend(flatten(exc))
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)
    result = diff_compiled(*compiled)
    if code:
        from .generate import generate

        result.code = code_diff(*((generate(c), c.name) for c in compiled))
    return result
