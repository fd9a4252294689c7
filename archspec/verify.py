"""``archspec build --verify``: the generated module against the static analysis and against the
reference interpreter (needs torch).

Two oracles. The static one (``verify_module``): imports the generated module, instantiates it and
compares with the analysis every parameter tensor (names and shapes, in state_dict order), the
parameter count, every module's output shape (forward hooks; the main network in eval at batch 2,
the aux heads in training at batch 2) and MACs (``torch.utils.flop_counter`` FLOPs / 2, conv +
linear). The numerical one (``verify_numbers``, ``verify_deploy``): the generated module and the
reference interpreter (archspec/interpret.py, which defines what a spec means) run the same input
with the same random state, in float64, and must agree to ``TOLERANCE`` of the output's scale:

* state: conv and linear weights He-uniform (so activations keep their size through ReLUs),
  biases and BatchNorm affine parameters random (gamma in [1, 3], beta in [-1, 1]); BatchNorm
  running statistics calibrated on a batch (the batch's mean and variance, then perturbed), since
  a fresh BatchNorm is the identity in eval and would hide a wrong wiring; ``num_batches_tracked`` 7;
* input: 4 x N(0, 1), so every nonlinearity sees both signs and values far beyond 6;
* eval: the output; training: the output, every aux head's output, every BatchNorm buffer after
  the step, and the gradient of every parameter (``backward`` on the generated module must run).
  Dropout draws its masks in the generated module; forward hooks read them (output != 0) and the
  interpreter replays them, so training is compared exactly with dropout active;
* the deploy build: ``from_trained`` on the same state, eval output.

Anything the generated module raises (at import, construction, forward or backward) is a
verification failure, reported with the exception, not an internal error. Networks above
``MAX_VERIFY_PARAMS`` parameters or ``MAX_VERIFY_ACTIVATIONS`` activation elements are refused
rather than exhausting memory.
"""
from __future__ import annotations

import importlib.util
import itertools
import math
import sys
from contextlib import contextmanager
from functools import partial

from .errors import ArchspecError, ErrorList, Loc, UsageError, VerifyError, raise_all
from .ops import OPS

MAX_VERIFY_PARAMS = 400_000_000  # ~1.6 GB of float32 weights
MAX_VERIFY_ACTIVATIONS = 400_000_000  # summed output elements of one batch-2 forward pass
MAX_VERIFY_MACS = 100_000_000_000  # per image: 6x vgg16; --verify runs several batch-2 passes on the CPU
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
    """The model class of a generated module: the first name it exports (training or deploy build)."""
    exports = getattr(module, "__all__", None)
    if exports:
        return getattr(module, exports[0])
    from .emit import class_name_of

    return getattr(module, class_name_of(compiled.resolved.spec))


def require_torch() -> None:
    """A usage error (exit 2) when torch is missing: --verify cannot run without it."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("--verify imports and runs the generated module, which needs torch; it is not installed "
                         "(pip install 'archspec[torch]')") from None


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
    check_macs(compiled)


def check_macs(compiled) -> None:
    """Few weights and activations can still mean hours of arithmetic (a 50x50 kernel over a
    large image): refuse before running the network."""
    macs = compiled.analysis.totals.macs
    if macs > MAX_VERIFY_MACS:
        raise VerifyError(f"{compiled.name} needs {macs:,} MACs per image; --verify refuses networks above "
                          f"{MAX_VERIFY_MACS:,} (the static analysis does not need to run it)", Loc(compiled.file))


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


def verify_file(compiled, path: str, deploy: bool = False) -> None:
    """Raise VerifyError listing every difference between the generated module (the deploy module
    with ``deploy``), the analysis and the interpreter."""
    check_size(compiled)
    _check_file_name(compiled, path)
    with _generated(compiled, "import"):
        cls = model_class(import_generated(path), compiled)
    if deploy:
        verify_deploy(compiled, cls)
    else:
        verify(compiled, cls)


def _check_file_name(compiled, path: str) -> None:
    """A generated file named like a module it imports (``torch.py``) shadows that module for
    anyone who imports it from its directory: ``import torch`` would import the file itself."""
    import ast
    import os

    stem = os.path.splitext(os.path.basename(path))[0]
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    if stem in imported:
        raise VerifyError(f"{os.path.basename(path)} shadows the module '{stem}' it imports: run from its directory, "
                          f"'import {stem}' imports the generated file itself", Loc(compiled.file))


def verify(compiled, cls) -> None:
    """Both oracles on a generated model class: the static analysis, then the interpreter."""
    errors = []
    for check in (verify_module, verify_numbers):
        try:
            check(compiled, cls)
        except ArchspecError as exc:
            errors.extend(exc.errors if isinstance(exc, ErrorList) else [exc])
    raise_all(errors)  # a module that fails to construct fails both checks alike: once is enough


@contextmanager
def _generated(compiled, phase: str):
    """Anything the generated code raises is a verification failure, reported with the exception."""
    try:
        yield
    except ArchspecError:
        raise
    except Exception as exc:  # the generated module is broken: that is what --verify is for
        message = f"{exc}".splitlines()[0] if f"{exc}" else ""
        raise VerifyError(f"the generated module fails in {phase}: {type(exc).__name__}: {message}",
                          Loc(compiled.file)) from exc


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
    with _generated(compiled, "construction"):
        model = cls(num_classes=compiled.expanded.num_classes)
    with _generated(compiled, "parameters and state_dict"):
        params = sum(p.numel() for p in model.parameters())
        got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    if params != t.params:
        errors.append(VerifyError(f"parameters: generated {params:,}, analysis {t.params:,}", where))
    want = state_dict_shapes(g)
    if got != want:
        for (gk, gs), (wk, ws) in zip(got, want):
            if (gk, gs) != (wk, ws):
                errors.append(VerifyError(f"state_dict: generated {gk} {list(gs)}, analysis {wk} {list(ws)}", where))
                break
        if len(got) != len(want):
            errors.append(VerifyError(f"state_dict: generated {len(got)} entries, analysis {len(want)}", where))
    shape_in = g.input_shape
    main_paths = _module_paths(a, main=True)
    # batch 2: a BatchNorm without running statistics normalises by the batch even in eval, and
    # PyTorch refuses that for a single value per channel (MACs are per sample: halved below)
    x = torch.randn(2, *shape_in)
    with _generated(compiled, "forward (eval)"):
        seen = _shapes_by_hook(model.eval(), x, main_paths)
    _compare_shapes(a, main_paths, seen, errors, where, "eval")
    with FlopCounterMode(display=False) as counter, torch.no_grad(), _generated(compiled, "forward (eval)"):
        out = model(x)
    macs = counter.get_total_flops() // 2 // 2
    if macs != t.macs:
        errors.append(VerifyError(f"MACs: generated {macs:,} (flop counter / 2), analysis {t.macs:,}", where))
    if not isinstance(out, torch.Tensor):
        errors.append(VerifyError(f"output in eval: generated a {type(out).__name__}, not a tensor", where))
    elif tuple(out.shape[1:]) != tuple(a.output):
        errors.append(VerifyError(f"output: generated {list(out.shape)}, analysis {[2, *a.output]}", where))
    aux_paths = _module_paths(a, main=False)
    if aux_paths:
        with _generated(compiled, "forward (training)"):
            seen = _shapes_by_hook(model.train(), torch.randn(2, *shape_in), aux_paths)
        _compare_shapes(a, aux_paths, seen, errors, where, "training")
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)


def _module_paths(a, main: bool) -> set:
    """The paths of the main network's (or the aux heads') nn.Modules; a ``parameter`` op is a
    tensor of its owner, not a module a hook can watch."""
    return {p for p, m in a.modules.items() if p and (m["part"] == "main") == main
            and not (m["kind"] == "op" and OPS[m["type"]].parameter)}


def _compare_shapes(a, paths, seen, errors, where, mode) -> None:
    for path in sorted(paths, key=list(a.modules).index):
        want = a.modules[path]["output_shape"]
        got = seen.get(path)
        if got is None:
            errors.append(VerifyError(f"module {path} did not run in {mode} mode (analysis: {list(want)})", where))
        elif tuple(got) != tuple(want):
            errors.append(VerifyError(f"module {path}: generated output {list(got)}, analysis {list(want)}", where))


# --- the numerical oracle: generated module == interpreter -----------------------------------------

TOLERANCE = 1e-6
"""Largest accepted difference, as a fraction of the compared tensor's scale (its largest magnitude).

Both sides compute in float64 from the same state and input, so they differ only by rounding:
about 1e-16 relative per op, 1e-13 after hundreds of ops, amplified at most 1/sqrt(eps) (~300)
where BatchNorm normalises a batch of almost equal values. The wrong code seen so far (a residual
doubled by an in-place ReLU, an aux head returning a feature map, a wrong attribute) is off by
tens of percent. 1e-6 leaves orders of magnitude of margin on both sides.

Gradients get one more allowance, measured rather than assumed: ``NOISE_FACTOR`` times the
difference between two runs of the interpreter that differ only by rounding (the second one on a
channels-last copy of the input: other kernels, other orders of summation). Where a network is
ill-conditioned, rounding is all there is: when stochastic depth drops the whole batch, a
BatchNorm normalises a constant map, the gradient of the bias before it is zero in exact
arithmetic and ~1e-8 of rounding amplified by 1/sqrt(eps) at each BatchNorm after it; no
fixed fraction tells that from a bug, the interpreter disagreeing with itself does."""
NOISE_FACTOR = 100.0
ABSOLUTE = 1e-12  # floor for an all-zero output (ReLU can zero a whole small network)
INPUT_SCALE = 4.0  # inputs 4 x N(0, 1): both signs everywhere, values beyond 6 (a ReLU6's clip)
BATCH = 2  # the smallest batch BatchNorm can train on


def random_state(compiled, seed: int = 0) -> dict:
    """A state_dict (float64) for the network: random weights, BatchNorm statistics calibrated on
    a batch and perturbed, so that every op changes the numbers and every nonlinearity is hit."""
    import torch

    from .interpret import program, run, state_key

    prog = program(compiled)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for n in prog.nodes:
        for name, shape, _ in n.tensors:
            state[state_key(n.path, name)] = _initial(name, shape, gen)
    stats = {}

    def observe(node, ins, out):
        if node.op == "batchnorm2d" and any(t[0] == "running_mean" for t in node.tensors):
            x = ins[0].detach()
            stats[node.path] = (x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False))

    if any(n.op == "batchnorm2d" for n in prog.nodes):
        with torch.no_grad():
            run(prog, state, _input(prog, seed + 1), training=True, seed=seed, observe=observe)
    for path, (mean, var) in stats.items():
        noise = torch.randn(mean.shape, generator=gen, dtype=torch.float64)
        state[f"{path}.running_mean"] = mean + 0.2 * var.sqrt() * noise
        state[f"{path}.running_var"] = var * (0.5 + 1.5 * torch.rand(var.shape, generator=gen, dtype=torch.float64)) + 0.01
    return state


def _initial(name: str, shape: tuple, gen):
    """Initial value of one state tensor, by its name (every op's tensors are named like PyTorch's)."""
    import torch

    f64 = torch.float64
    if name == "num_batches_tracked":
        return torch.tensor(7, dtype=torch.long)
    if name == "running_mean":
        return torch.zeros(shape, dtype=f64)
    if name == "running_var":
        return torch.ones(shape, dtype=f64)
    u = torch.rand(shape, generator=gen, dtype=f64)
    if name == "weight" and len(shape) >= 2:  # He uniform over the fan-in
        bound = math.sqrt(6.0 / max(1, math.prod(shape[1:])))
        return (2 * u - 1) * bound
    if name == "weight":  # per-channel scales (BatchNorm's gamma)
        return 1.0 + 2.0 * u
    if name == "bias":
        return 2 * u - 1
    return torch.randn(shape, generator=gen, dtype=f64)


def _input(prog, seed: int, batch: int = BATCH):
    import torch

    gen = torch.Generator().manual_seed(seed)
    return INPUT_SCALE * torch.randn((batch, *prog.input_shape), generator=gen, dtype=torch.float64)


def outputs_of(compiled, out) -> tuple:
    """(main output, {aux head: output}) of a generated model's training forward: a tensor, or the
    outputs namedtuple, read by position in the spec's layout (``outputs:``, else main first, then
    the heads in spec order). The one place that reads the generated outputs' layout."""
    import torch

    heads = list(compiled.graph.aux)
    if isinstance(out, torch.Tensor) or not heads:
        return out, {}
    by_source = {source: value for (_, source), value in zip(compiled.resolved.output_fields(), out)}
    return by_source.get("main"), {h: by_source.get(h) for h in heads}


def _compare(what: str, got, want, errors: list, where, floor: float = 0.0, noise: float = 0.0) -> None:
    """Record an error when ``got`` differs from ``want`` by more than ``TOLERANCE`` of the larger
    of ``want``'s scale and ``floor``, plus ``NOISE_FACTOR`` x ``noise`` (the interpreter's own
    rounding, measured)."""
    import torch

    if not isinstance(got, torch.Tensor):
        errors.append(VerifyError(f"{what}: generated a {type(got).__name__}, the interpreter a tensor", where))
        return
    if tuple(got.shape) != tuple(want.shape):
        errors.append(VerifyError(f"{what}: generated shape {list(got.shape)}, interpreter {list(want.shape)}", where))
        return
    got, want = got.detach().double(), want.detach().double()
    scale = max(want.abs().max().item() if want.numel() else 0.0, floor)
    diff = (got - want).abs().max().item() if want.numel() else 0.0
    if not diff <= TOLERANCE * scale + ABSOLUTE + NOISE_FACTOR * noise:  # NaN fails too
        rounding = f"; the interpreter's own rounding {noise:.3g}" if noise else ""
        errors.append(VerifyError(f"{what}: generated differs from the interpreter by {diff:.3g} "
                                  f"(max |difference|; the interpreter's max |value| is {scale:.3g}, "
                                  f"tolerance {TOLERANCE:g} of it{rounding})", where))


def verify_numbers(compiled, cls) -> None:
    """Raise VerifyError listing where the generated model's numbers differ from the interpreter's:
    the eval output; in a training step the output, the aux outputs, the BatchNorm buffers after it
    and the gradients of the input and of every parameter. The generated module must not write
    into its input."""
    import torch

    from .interpret import program

    errors: list = []
    where = Loc(compiled.file)
    prog = program(compiled)
    state = random_state(compiled)
    with _generated(compiled, "construction"):
        torch.manual_seed(0)
        model = cls(num_classes=compiled.expanded.num_classes).double()
    with _generated(compiled, "load_state_dict"):
        model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)
    _eval_step(compiled, model, prog, state, errors, where)
    _training_step(compiled, model, prog, state, errors, where)
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)


def _eval_step(compiled, model, prog, state: dict, errors: list, where) -> None:
    import torch

    from .interpret import run

    x = _input(prog, 2)
    given = x.clone()
    with torch.no_grad(), _generated(compiled, "forward (eval)"):
        got = model.eval()(given)
    _unchanged(given, x, "eval", errors, where)
    with torch.no_grad():
        want = run(prog, state, x)
    _compare("output in eval", got, want.output, errors, where)


def _training_step(compiled, model, prog, state: dict, errors: list, where) -> None:
    """One training step on both sides; dropout masks are read from the generated module and replayed."""
    from .interpret import state_key

    x = _input(prog, 3)
    leaf = x.clone().requires_grad_(True)
    given = leaf.clone()
    masks: dict = {}
    with _generated(compiled, "forward (training)"):
        handles = _mask_hooks(model.train(), prog, masks, errors, where)
        try:
            got = model(given)
        finally:
            for h in handles:
                h.remove()
    _unchanged(given.detach(), x, "training", errors, where)
    trainable = {state_key(n.path, name) for n in prog.nodes for name, _, buf in n.tensors if not buf}
    want, wanted = _interpreter_step(prog, state, trainable, x, masks)
    main, aux = outputs_of(compiled, got)
    _compare("output in training", main, want.output, errors, where)
    for head, value in want.aux.items():
        _compare(f"aux head {head} in training", aux.get(head), value, errors, where)
    with _generated(compiled, "named_buffers"):
        buffers = dict(model.named_buffers())
    for key, value in want.state.items():
        if key in buffers:
            _compare(f"{key} after a training step", buffers[key], value, errors, where)
    if not errors:
        with _generated(compiled, "named_parameters"):
            generated = {"input": leaf, **dict(model.named_parameters())}
        weights = _loss_weights((want.output, *want.aux.values()))
        grads = _interpreter_grads(want, wanted, weights)
        noise = partial(_rounding_noise, prog, state, trainable, x, masks, weights, grads)
        _compare_gradients(compiled, wanted, generated, grads, (main, *aux.values()), weights, noise, errors, where)


def _interpreter_step(prog, state: dict, trainable: set, x, masks: dict) -> tuple:
    """The interpreter's training step on ``x`` (its layout kept) with the dropout masks given; its
    result and the leaves to differentiate: the input, then every trainable tensor of ``state``."""
    from .interpret import run

    ref = {k: v.clone().requires_grad_(True) if k in trainable else v for k, v in state.items()}
    ref_x = x.clone().requires_grad_(True)
    want = run(prog, ref, ref_x, training=True, masks=masks)
    return want, {"input": ref_x, **{k: ref[k] for k in trainable}}


def _unchanged(given, x, mode: str, errors: list, where) -> None:
    import torch

    if not torch.equal(given, x):
        errors.append(VerifyError(f"forward in {mode} changes its input tensor in place (the caller's data)", where))


def _mask_hooks(model, prog, masks: dict, errors: list, where) -> list:
    """Forward hooks that record the mask (output != 0) each random module (dropout, stochastic
    depth) draws."""
    modules = dict(model.named_modules())
    handles = []
    for n in prog.nodes:
        if not OPS[n.op].random:
            continue
        module = modules.get(n.path)
        if module is None:
            errors.append(VerifyError(f"{n.op} {n.path} is not a module of the generated model", where))
            continue

        def hook(m, inp, out, path=n.path):
            masks[path] = (out != 0).detach().clone()

        handles.append(module.register_forward_hook(hook))
    return handles


def _loss_weights(outs) -> list:
    """A loss that weighs every output element at random (the same for both sides)."""
    import torch

    gen = torch.Generator().manual_seed(5)
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in outs]


def _interpreter_grads(want, wanted: dict, weights: list) -> list:
    """The interpreter's gradients of the leaves in ``wanted`` (zero where a leaf is unused)."""
    import torch

    loss = sum((o * w).sum() for o, w in zip((want.output, *want.aux.values()), weights))
    return [torch.zeros_like(leaf) if g is None else g
            for leaf, g in zip(wanted.values(), torch.autograd.grad(loss, list(wanted.values()), allow_unused=True))]


def _rounding_noise(prog, state: dict, trainable: set, x, masks: dict, weights: list, grads: list) -> list:
    """How far the interpreter's gradients move when only rounding changes: the same step on a
    channels-last copy of the input (allowed ``NOISE_FACTOR`` times); zeros where the input has no
    such layout."""
    import torch

    if x.dim() != 4:
        return [0.0] * len(grads)
    want, wanted = _interpreter_step(prog, state, trainable, x.to(memory_format=torch.channels_last), masks)
    again = _interpreter_grads(want, wanted, weights)
    return [(a - b).abs().max().item() if a.numel() else 0.0 for a, b in zip(again, grads)]


def _compare_gradients(compiled, wanted: dict, generated: dict, grads: list, got_outs, weights: list,
                       noise, errors, where) -> None:
    """Backward through the generated module must run and give the interpreter's gradients of the
    input and of every parameter, for the same randomly weighted loss. Where one differs, the
    interpreter's own rounding (``noise()``, a second interpreter run) is measured and allowed."""
    import torch

    with _generated(compiled, "backward (training)"):
        sum((o * w).sum() for o, w in zip(got_outs, weights)).backward()
    # A gradient that is zero in exact arithmetic (a bias before BatchNorm in training) is rounding
    # noise on both sides: compare every gradient at least at a thousandth of the largest one.
    floor = 1e-3 * max((g.abs().max().item() for g in grads if g.numel()), default=0.0)
    pairs = []
    for (key, leaf), want in zip(wanted.items(), grads):
        tensor = generated.get(key)
        if tensor is None:
            errors.append(VerifyError(f"gradient of {key}: the generated model has no parameter {key}", where))
            continue
        pairs.append((key, torch.zeros_like(want) if tensor.grad is None else tensor.grad, want))
    differ = []
    for key, got, want in pairs:
        _compare(f"gradient of {key}", got, want, differ, where, floor)
    if differ:
        rounding = dict(zip(wanted, noise()))
        for key, got, want in pairs:
            _compare(f"gradient of {key}", got, want, errors, where, floor, rounding[key])


def verify_deploy(compiled, cls) -> None:
    """The deploy module, built with ``from_trained`` from the verifier's random state, computes the
    interpreter's eval output."""
    import torch

    from .interpret import program, run

    errors: list = []
    where = Loc(compiled.file)
    prog = program(compiled)
    state = random_state(compiled)
    with _generated(compiled, "from_trained"):
        deploy = cls.from_trained(_Trained(prog, state))
    x = _input(prog, 2)
    given = x.clone()
    with torch.no_grad(), _generated(compiled, "forward (deploy)"):
        got = deploy(given)
    _unchanged(given, x, "deploy", errors, where)
    with torch.no_grad():
        want = run(prog, state, x)
    _compare("deploy output", got, want.output, errors, where)
    if errors:
        raise errors[0] if len(errors) == 1 else ErrorList(errors)


class _Trained:
    """What a deploy module's ``from_trained`` reads of a trained model, made from a state dict:
    ``parameters()`` (``buffers()``) and, by module path, each module's tensors and attributes (a BatchNorm's eps)."""

    def __init__(self, prog, state: dict):
        self._state = state
        self._nodes = {n.path: n for n in prog.nodes if n.module}

    def parameters(self):
        return (v for v in self._state.values() if v.is_floating_point())

    buffers = parameters  # what from_trained reads of a network without parameters: its type

    def get_parameter(self, path: str):
        return self._state[path]

    def get_submodule(self, path: str):
        import types
        from collections import OrderedDict

        node = self._nodes[path]
        tensors = OrderedDict((name, self._state[f"{path}.{name}"]) for name, _, _ in node.tensors if name)
        fields = {**node.attrs, "weight": None, "bias": None, **tensors}
        return types.SimpleNamespace(**fields, state_dict=lambda: OrderedDict(tensors))
