"""``archspec build --verify``: the torch oracle for the static analysis (needs torch).

Imports the generated module, instantiates it, runs a random input and compares with the
analysis: every parameter tensor (names and shapes, in state_dict order), the parameter count,
every module's output shape (forward hooks; the main network in eval at batch 1, the aux heads in
training at batch 2) and MACs (``torch.utils.flop_counter`` FLOPs / 2, conv + linear). Networks
above ``MAX_VERIFY_PARAMS`` parameters or ``MAX_VERIFY_ACTIVATIONS`` activation elements are
refused rather than exhausting memory.
"""
from __future__ import annotations

import importlib.util
import itertools
import math
import sys

from .errors import ErrorList, Loc, VerifyError

MAX_VERIFY_PARAMS = 400_000_000  # ~1.6 GB of float32 weights
MAX_VERIFY_ACTIVATIONS = 400_000_000  # summed output elements of one batch-2 forward pass
_counter = itertools.count()


def import_generated(path: str):
    """Import a generated file as a fresh module object."""
    name = f"_archspec_generated_{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def model_class(module, compiled):
    from .emit import class_name_of

    return getattr(module, class_name_of(compiled.resolved.spec))


def check_size(compiled) -> None:
    t = compiled.analysis.totals
    g = compiled.graph
    acts = 2 * sum(math.prod(n.meta["shape"]) for n in g if n.meta.get("shape"))
    if t.params > MAX_VERIFY_PARAMS:
        raise VerifyError(f"{compiled.name} has {t.params:,} parameters; --verify refuses networks above "
                          f"{MAX_VERIFY_PARAMS:,} (the static analysis does not need to run it)", Loc(compiled.file))
    if acts > MAX_VERIFY_ACTIVATIONS:
        raise VerifyError(f"{compiled.name} needs {acts:,} activation elements at batch 2; --verify refuses more than "
                          f"{MAX_VERIFY_ACTIVATIONS:,}", Loc(compiled.file))


def _shapes_by_hook(model, x, paths: set) -> dict:
    import torch

    seen: dict = {}
    handles = []
    for name, mod in model.named_modules():
        if name in paths:
            def hook(m, inp, out, name=name):
                if isinstance(out, torch.Tensor):
                    seen[name] = tuple(out.shape[1:])
            handles.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def verify_file(compiled, path: str) -> None:
    """Raise VerifyError listing every difference between the generated module and the analysis."""
    check_size(compiled)
    module = import_generated(path)
    verify_module(compiled, model_class(module, compiled))


def verify_module(compiled, cls) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .analyse import state_dict_shapes

    errors = []
    where = Loc(compiled.file)
    a = compiled.analysis
    t = a.totals
    g = compiled.graph
    torch.manual_seed(0)
    model = cls(num_classes=compiled.expanded.num_classes)
    params = sum(p.numel() for p in model.parameters())
    if params != t.params:
        errors.append(VerifyError(f"parameters: generated {params:,}, analysis {t.params:,}", where))
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    want = state_dict_shapes(g)
    if got != want:
        for (gk, gs), (wk, ws) in zip(got, want):
            if (gk, gs) != (wk, ws):
                errors.append(VerifyError(f"state_dict: generated {gk} {list(gs)}, analysis {wk} {list(ws)}", where))
                break
        if len(got) != len(want):
            errors.append(VerifyError(f"state_dict: generated {len(got)} entries, analysis {len(want)}", where))
    shape_in = g.input_shape
    main_paths = {p for p, m in a.modules.items() if p and m["part"] == "main"}
    model.eval()
    x = torch.randn(1, *shape_in)
    seen = _shapes_by_hook(model, x, main_paths)
    _compare_shapes(a, main_paths, seen, errors, where, "eval")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    macs = counter.get_total_flops() // 2
    if macs != t.macs:
        errors.append(VerifyError(f"MACs: generated {macs:,} (flop counter / 2), analysis {t.macs:,}", where))
    if tuple(out.shape[1:]) != tuple(a.output):
        errors.append(VerifyError(f"output: generated {list(out.shape)}, analysis {[1, *a.output]}", where))
    aux_paths = {p for p, m in a.modules.items() if p and m["part"] != "main"}
    if aux_paths:
        model.train()
        seen = _shapes_by_hook(model, torch.randn(2, *shape_in), aux_paths)
        _compare_shapes(a, aux_paths, seen, errors, where, "training")
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)


def _compare_shapes(a, paths, seen, errors, where, mode) -> None:
    for path in sorted(paths, key=list(a.modules).index):
        want = a.modules[path]["output_shape"]
        got = seen.get(path)
        if got is None:
            errors.append(VerifyError(f"module {path} did not run in {mode} mode (analysis: {list(want)})", where))
        elif tuple(got) != tuple(want):
            errors.append(VerifyError(f"module {path}: generated output {list(got)}, analysis {list(want)}", where))
