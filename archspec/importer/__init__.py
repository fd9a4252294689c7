"""``archspec import``: an existing PyTorch model -> a readable spec whose generated module holds
the same state_dict (needs torch; ``check`` and ``build`` never import this package).

The package is laid out in the order of the work: ``target`` (TARGET -> the model, its
constructors' arguments recorded), ``catalog`` (PyTorch's spellings of the catalog ops, read
back), ``trace`` (every module's forward traced with torch.fx -> ``ir``: one ``Mod`` per module
instance, its body as spec items), ``totals`` (the totals, measured by torch), ``blocks`` (the structure
a person would write: blocks with arguments, Sequentials, repeats), ``stock`` (stock library
blocks reused), ``document`` and ``write`` (the spec as data, then YAML). This module composes
them and checks the result with the compiler: the spec must give the model's state_dict keys and
shapes, in order, and its totals (``expect:``).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from ..errors import ArchspecError, ImportModelError, Loc, raise_all
from ..version import __version__


@dataclass
class Result:
    text: str  # the spec
    name: str
    problems: list  # ir.Problem: what could not be imported (only with partial)
    notes: list = field(default_factory=list)  # things the user should know
    compiled: object = None  # the spec compiled (None with problems)


MAX_REPORTED = 20  # distinct problems shown; a model refused for one reason 300 times says it once


def problem_errors(problems: list) -> list:
    """``layer1.0 (Bottleneck): ...``, located in the model's source where that is known; one error
    for the modules that share a reason and a source line (``and 40 more like it``)."""
    groups: dict = {}
    for p in problems:
        key = (p.reason, (p.where.file, p.where.line) if p.where else p.owner)
        same = groups.setdefault(key, [])
        if all(q.path != p.path for q in same):  # a module refused at each of its calls is one problem
            same.append(p)
    out = []
    for same in list(groups.values())[:MAX_REPORTED]:
        p = same[0]
        owner = f" ({p.owner})" if p.owner and p.path else ""
        where = f"{p.path}{owner}: " if p.path else f"{p.owner or 'the model'}: "
        more = f" (and {len(same) - 1} more module{'s' if len(same) > 2 else ''} like it)" if len(same) > 1 else ""
        out.append(ImportModelError(where + p.reason + more, p.where))
    if len(groups) > MAX_REPORTED:
        out.append(ImportModelError(f"... and {len(groups) - MAX_REPORTED} more problems of other kinds"))
    return out


def import_target(target: str, kwargs: dict | None = None, input_shape=None, name: str | None = None,
                  partial: bool = False, stock: bool = True) -> Result:
    """Build TARGET's model (``target.resolve``) and import it."""
    from .target import build, resolve

    fn = resolve(target)
    model, records = build(fn, dict(kwargs or {}), target)
    args = "".join(f" --arg {k}={v if isinstance(v, str) and v.isidentifier() else repr(v)}"
                   for k, v in (kwargs or {}).items())
    args += f" --input {'x'.join(map(str, input_shape))}" if input_shape else ""
    default_name = target.rpartition(":")[2].rpartition(".")[2]
    if not default_name.isidentifier() or default_name[0].isupper() or default_name.startswith("create"):
        default_name = str(kwargs.get("model_name", "")) if kwargs and "model_name" in kwargs else type(model).__name__.lower()
    return import_model(model, name=name or default_name, input_shape=input_shape, records=records,
                        partial=partial, source=f"archspec import {target}{args}", stock=stock)


def import_model(model, name: str, input_shape=None, records: dict | None = None, partial: bool = False,
                 source: str = "archspec import", stock: bool = True) -> Result:
    """An nn.Module -> its spec. Raises ImportModelError (an ErrorList of them) naming every part
    that cannot be imported, unless ``partial``; ``stock``: reuse the stock libraries' blocks."""
    from .document import document
    from .stock import Stock
    from .trace import trace_model
    from .write import dump

    shape = tuple(input_shape or (3, 224, 224))
    name = _spec_name(name)
    traced = trace_model(model, records, partial, shape)
    if traced.problems and not partial:
        raise_all(problem_errors(traced.problems))
    doc = document(traced, name, f"{traced.root.cls}, imported by archspec import.", shape, Stock() if stock and Stock.supported() else None)
    header = [f"Imported by `{source}` (archspec {__version__}).",
              "Module paths are the model's own: its state_dict loads into the generated module unchanged."]
    if traced.aux:
        header.append(f"Aux heads: the loss weights are archspec import's default ({doc['aux'][traced.aux[0].name]['loss_weight'].value}); edit them.")
    if traced.problems:
        header.append(f"UNSUPPORTED: {len(traced.problems)} part(s) could not be imported; each is an identity marked "
                      "UNSUPPORTED below, and this spec does not reproduce the model.")
    text = dump(doc, header)
    result = Result(text, name, traced.problems)
    if not traced.problems:
        result.compiled = _check(text, name, traced, result.notes)
    return result


def _spec_name(name: str) -> str:
    from .blocks import identifier

    return identifier(name.replace("-", "_").replace(".", "_"), set())


def _check(text: str, name: str, traced, notes: list):
    """Compile the spec and hold it to the model: state_dict keys and shapes, and expect:."""
    from ..analyse import state_dict_shapes
    from ..pipeline import compile_spec

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{name}.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            compiled = compile_spec(path)
        except ArchspecError as exc:
            size = "x".join(map(str, traced.input_shape))
            raise ImportModelError(f"the imported spec does not reproduce the model at the input {size}: "
                                   f"{exc.message} (is --input the size the model is built for? If it is, this is "
                                   "an archspec import bug: please report it)") from None
    want = [(k, tuple(s)) for k, s in traced.state]
    got = [(k, tuple(s)) for k, s in state_dict_shapes(compiled.graph)]
    if sorted(got) != sorted(want):
        missing = sorted(set(want) - set(got))[:3]
        extra = sorted(set(got) - set(want))[:3]
        raise ImportModelError(f"the imported spec's state_dict differs from the model's (an archspec import bug; "
                               f"please report it): missing {missing}, unexpected {extra}", Loc(name))
    if got != want:
        notes.append("the state_dict keys are the model's, in another order (a module registered in another order "
                     "than it is called)")
    return compiled
