"""The reference interpreter: what a spec means, computed from the lowered graph (needs torch).

``run(compiled, state, x)`` walks the analysed graph in its (topological) insertion order and
computes every node with one rule of ``RULES``, a table keyed by op name with one entry per op of
the catalog (archspec/ops.py). A rule is a few lines of torch functional code; there is no
generated code, no ``nn.Module`` of an op and no in-place operation anywhere, so a tensor, once
computed, never changes. The generated module (archspec/generate.py) and the deploy build
(archspec/deploy.py) are checked against this interpreter numerically by ``build --verify``
(archspec/verify.py); where they disagree, the interpreter is right by definition.

Semantics, per op (``training`` selects the mode, as ``nn.Module.train()`` does):

* ``conv2d``, ``linear``, the pools, ``local_response_norm``, ``flatten``, ``relu``: PyTorch's
  functional op with the node's attributes (a pool's ``stride: none`` is its kernel size).
* ``batchnorm2d``, written out: ``(x - mean) / sqrt(var + eps) * weight + bias``. In training, and
  whenever ``track_running_stats`` is false, mean and (biased) variance are the batch's, over
  N, H and W; otherwise the running statistics. A training step also returns the updated running
  statistics as new tensors: ``(1 - momentum) * old + momentum * batch`` (the variance unbiased,
  as PyTorch keeps it) and ``num_batches_tracked + 1``.
* ``dropout``: the identity in eval. In training, ``x * mask / (1 - p)`` (zeros when p = 1), with
  an explicit mask per dropout module: ``masks[path]`` when the caller gives one (``verify``
  replays the masks the generated module drew), else drawn from ``torch.Generator`` seeded with
  ``seed`` (Bernoulli(1 - p) per element, nodes in graph order). So a training run is
  deterministic and two implementations can be compared exactly.
* ``identity``: its input; ``scale``: ``x * factor``; ``concat``: ``torch.cat`` along channels in
  branch order; ``add``: the sum of the branches; ``mul``: their product, broadcasting; ``split``:
  a merge's branch's chunk of the channels (``torch.split``).
* the activations, ``softmax``, ``groupnorm``, ``permute``: PyTorch's functional op; ``layernorm``
  and ``layernorm2d`` (the channels moved last and back): ``F.layer_norm`` over one dimension;
  ``reshape``: per sample; ``channel_shuffle``: written out (channels as groups x C/groups,
  transposed); ``parameter``: ``p * x`` (or ``x + p``) with the state tensor whose key is its path.
* ``stochastic_depth``: the identity in eval and for p = 0; in training one Bernoulli(1 - p) draw
  per sample (``row``) or per batch, kept samples divided by 1 - p, drawn like dropout's masks
  (or replayed from a recorded mask: a sample is kept where any of its elements was).
* Aux heads run in training only (they are not computed in eval), like the generated module.

``state`` maps state_dict keys (module path + tensor name, the generated module's keys) to tensors;
it is never modified. Adding an op to the catalog means adding its rule here (``tests`` check that
every catalog op has one; a graph with an op that has none is refused before anything runs).

>>> from archspec.pipeline import compile_spec          # doctest: +SKIP
>>> c = compile_spec("tests/specs/ok/small_cnn.yaml")    # doctest: +SKIP
>>> result = run(c, state, torch.randn(2, 3, 16, 16))    # doctest: +SKIP
>>> result.output.shape, result.aux                     # doctest: +SKIP
(torch.Size([2, 10]), {})
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import InterpretError, Loc

# --- the graph, as the interpreter reads it ---------------------------------------------------

@dataclass(frozen=True)
class Instr:
    """One node of the graph, as the interpreter reads it: inputs by node name."""

    id: str
    op: str
    attrs: dict
    inputs: tuple
    path: str  # module path of the op (its own path for a module, the owner's for a functional step)
    part: str  # "main" or an aux head's name
    module: bool  # a module of its own (path is its module path), not a functional step
    tensors: tuple  # (name, shape, is_buffer) of a module op's state_dict tensors, in order; () for the others
    loc: object


@dataclass(frozen=True)
class Program:
    nodes: tuple  # in topological order
    output: str
    aux: dict  # aux head name -> its output node
    input_shape: tuple


def program(compiled) -> Program:
    """The analysed graph as the interpreter needs it. This is the one place that reads the graph's
    nodes (archspec/graph.py: ``Node``, with the state_dict tensors analysis puts in ``meta``)."""
    g = compiled.graph
    nodes = tuple(
        Instr(n.name, n.op, n.attrs, tuple(i.name for i in n.inputs), n.path, n.part, n.is_module,
              tuple((name, tuple(shape), buf) for name, shape, buf in n.meta.get("tensors", ())), n.loc)
        for n in g)
    return Program(nodes, g.output.name, {name: out.name for name, out in g.aux.items()}, tuple(g.input_shape))


def state_key(path: str, name: str) -> str:
    """The state_dict key of a node's tensor: ``path.name``, or the path itself for a ``parameter``
    op's own tensor (named ``""``)."""
    return f"{path}.{name}" if name else path


# --- the rules ---------------------------------------------------------------------------------

class _Step:
    """What a rule may see of the run: this node's state tensors, the mode, masks, state updates."""

    __slots__ = ("node", "run")

    def __init__(self, node: Instr, run: "_Run"):
        self.node, self.run = node, run

    @property
    def training(self) -> bool:
        return self.run.training

    def tensor(self, name: str):
        """This module's state tensor ``name`` (None if the module has no such tensor); ``""`` is a
        parameter op's own tensor, whose key is its path."""
        if not any(t[0] == name for t in self.node.tensors):
            return None
        key = state_key(self.node.path, name)
        if key not in self.run.state:
            raise InterpretError(f"the state has no tensor '{key}'", self.node.loc, self.node.id)
        return self.run.state[key]

    def update(self, name: str, value) -> None:
        self.run.new_state[f"{self.node.path}.{name}"] = value

    def mask(self, x, p: float, size=None):
        """The 0/1 mask a random op draws: Bernoulli(1 - p) of ``size`` (default: the input's shape),
        or the mask the caller recorded (of the input's shape) for this module."""
        masks = self.run.masks
        if masks is None:
            if size is None:
                return torch.bernoulli(torch.full_like(x, 1.0 - p).detach(), generator=self.run.generator)
            return torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(1.0 - p, generator=self.run.generator)
        mask = masks.get(self.node.path)
        if mask is None:
            raise InterpretError(f"no mask for {self.node.op} {self.node.path}", self.node.loc, self.node.id)
        if tuple(mask.shape) != tuple(x.shape):
            raise InterpretError(f"the {self.node.op} mask for {self.node.path} has shape {list(mask.shape)}, "
                                 f"the input {list(x.shape)}", self.node.loc, self.node.id)
        return mask.to(x.dtype)


def _stride(a):
    return a["kernel_size"] if a.get("stride") is None else a["stride"]


def _conv2d(ins, a, s):
    return F.conv2d(ins[0], s.tensor("weight"), s.tensor("bias"), a["stride"], a["padding"], a["dilation"], a["groups"])


def _batchnorm2d(ins, a, s):
    (x,) = ins
    channels = (1, -1, 1, 1)
    if s.training or not a["track_running_stats"]:
        n = x.numel() // x.shape[1]
        if s.training and n < 2:
            raise InterpretError(f"batchnorm2d {s.node.path} needs more than one value per channel in training",
                                 s.node.loc, s.node.id)
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        if s.training and a["track_running_stats"]:
            tracked = s.tensor("num_batches_tracked")
            m = a["momentum"]
            if m is None:  # PyTorch's cumulative average
                m = 1.0 / float(tracked + 1)
            s.update("running_mean", (1 - m) * s.tensor("running_mean") + m * mean.detach())
            s.update("running_var", (1 - m) * s.tensor("running_var") + m * var.detach() * (n / (n - 1)))
            s.update("num_batches_tracked", tracked + 1)
    else:
        mean, var = s.tensor("running_mean"), s.tensor("running_var")
    y = (x - mean.reshape(channels)) / torch.sqrt(var.reshape(channels) + a["eps"])
    if a["affine"]:
        y = y * s.tensor("weight").reshape(channels) + s.tensor("bias").reshape(channels)
    return y


def _dropout(ins, a, s):
    (x,) = ins
    if not s.training:
        return x
    p = float(a["p"])
    mask = s.mask(x, p)
    if p >= 1.0:
        return x * 0.0
    return x * mask / (1.0 - p)


def _stochastic_depth(ins, a, s):
    """torchvision's stochastic_depth: one Bernoulli(1 - p) draw per sample ("row") or per batch,
    the kept ones divided by 1 - p. A recorded mask (of the input's shape) keeps a sample wherever
    it kept any of its elements."""
    (x,) = ins
    p = float(a["p"])
    if not s.training or p == 0.0:
        return x
    size = (x.shape[0],) + (1,) * (x.dim() - 1) if a["mode"] == "row" else (1,) * x.dim()
    mask = s.mask(x, p, size)
    if s.run.masks is not None:
        rows = mask.reshape(x.shape[0], -1).any(1).to(x.dtype)
        mask = rows.reshape(size) if a["mode"] == "row" else rows.max().reshape(size)
    return x * (mask / (1.0 - p) if p < 1.0 else mask)


def _layer_norm(ins, a, s, channels_first=False):
    x = ins[0].movedim(1, -1) if channels_first else ins[0]
    y = F.layer_norm(x, (x.shape[-1],), s.tensor("weight"), s.tensor("bias"), a["eps"])
    return y.movedim(-1, 1) if channels_first else y


def _split(ins, a, s):
    (x,) = ins
    n = x.shape[1]
    sizes = [n // a["split"]] * a["split"] if isinstance(a["split"], int) else list(a["split"])
    return torch.split(x, sizes, 1)[a["index"]]


def _parameter(ins, a, s):
    p = s.tensor("")
    return ins[0] + p if a["apply"] == "add" else p * ins[0]


def _mul(ins, a, s):
    out = ins[0]
    for x in ins[1:]:
        out = out * x
    return out


RULES: dict[str, Callable] = {
    "input": lambda ins, a, s: s.run.x,
    "conv2d": _conv2d,
    "batchnorm2d": _batchnorm2d,
    "relu": lambda ins, a, s: F.relu(ins[0]),
    "maxpool2d": lambda ins, a, s: F.max_pool2d(ins[0], a["kernel_size"], _stride(a), a["padding"], a["dilation"],
                                                ceil_mode=a["ceil_mode"]),
    "avgpool2d": lambda ins, a, s: F.avg_pool2d(ins[0], a["kernel_size"], _stride(a), a["padding"],
                                                ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"]),
    "adaptive_avgpool2d": lambda ins, a, s: F.adaptive_avg_pool2d(ins[0], a["output_size"]),
    "adaptive_maxpool2d": lambda ins, a, s: F.adaptive_max_pool2d(ins[0], a["output_size"]),
    "linear": lambda ins, a, s: F.linear(ins[0], s.tensor("weight"), s.tensor("bias")),
    "dropout": _dropout,
    "flatten": lambda ins, a, s: torch.flatten(ins[0], a["start_dim"]),
    "local_response_norm": lambda ins, a, s: F.local_response_norm(ins[0], a["size"], a["alpha"], a["beta"], a["k"]),
    "identity": lambda ins, a, s: ins[0],
    "scale": lambda ins, a, s: ins[0] * a["factor"],
    "relu6": lambda ins, a, s: F.relu6(ins[0]),
    "leaky_relu": lambda ins, a, s: F.leaky_relu(ins[0], a["negative_slope"]),
    "elu": lambda ins, a, s: F.elu(ins[0], a["alpha"]),
    "gelu": lambda ins, a, s: F.gelu(ins[0], approximate=a["approximate"]),
    "silu": lambda ins, a, s: F.silu(ins[0]),
    "mish": lambda ins, a, s: F.mish(ins[0]),
    "sigmoid": lambda ins, a, s: torch.sigmoid(ins[0]),
    "tanh": lambda ins, a, s: torch.tanh(ins[0]),
    "hardswish": lambda ins, a, s: F.hardswish(ins[0]),
    "hardsigmoid": lambda ins, a, s: F.hardsigmoid(ins[0]),
    "hardtanh": lambda ins, a, s: F.hardtanh(ins[0], a["min_val"], a["max_val"]),
    "softmax": lambda ins, a, s: F.softmax(ins[0], dim=a["dim"]),
    "layernorm": _layer_norm,
    "layernorm2d": lambda ins, a, s: _layer_norm(ins, a, s, channels_first=True),
    "groupnorm": lambda ins, a, s: F.group_norm(ins[0], a["num_groups"], s.tensor("weight"), s.tensor("bias"), a["eps"]),
    "permute": lambda ins, a, s: ins[0].permute(*a["dims"]),
    "reshape": lambda ins, a, s: ins[0].reshape(ins[0].shape[0], *a["shape"]),
    "channel_shuffle": lambda ins, a, s: ins[0].unflatten(1, (a["groups"], -1)).transpose(1, 2).flatten(1, 2),
    "stochastic_depth": _stochastic_depth,
    "parameter": _parameter,
    "concat": lambda ins, a, s: torch.cat(ins, 1),
    "add": lambda ins, a, s: sum(ins[1:], ins[0]),
    "mul": _mul,
    "split": _split,
}
"""op name -> rule(inputs, attrs, step) -> output tensor; one entry per op of the catalog."""


# --- running -----------------------------------------------------------------------------------

@dataclass
class Result:
    output: object  # the main network's output tensor
    aux: dict  # aux head name -> output tensor (training only; empty in eval)
    state: dict  # the state after this run: running statistics updated in training (new tensors)


@dataclass
class _Run:
    x: object
    state: dict
    training: bool
    masks: dict | None
    generator: object
    new_state: dict


def missing_rules(prog: Program) -> list:
    """Ops of the graph without an interpreter rule, in graph order."""
    return list(dict.fromkeys(n.op for n in prog.nodes if n.op not in RULES))


def run(compiled, state: dict, x, training: bool = False, masks: dict | None = None, seed: int = 0,
        observe: Callable | None = None) -> Result:
    """Run the spec on ``x`` (batch first) with ``state`` (state_dict keys -> tensors).

    ``masks`` (dropout module path -> 0/1 tensor of its input's shape) fixes dropout in training;
    ``observe(node, inputs, output)`` is called after every node (for calibration and debugging).
    """
    prog = compiled if isinstance(compiled, Program) else program(compiled)
    missing = missing_rules(prog)
    if missing:
        raise InterpretError(f"no interpreter rule for op{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
                             Loc(getattr(compiled, "file", "?")))
    generator = None
    if training and masks is None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)
    r = _Run(x, state, training, masks, generator, dict(state))
    nodes = [n for n in prog.nodes if training or n.part == "main"]
    wanted = {prog.output, *(prog.aux.values() if training else ())}
    last_use = {}
    for i, n in enumerate(nodes):
        for src in n.inputs:
            last_use[src] = i
    values: dict = {}
    for i, n in enumerate(nodes):
        ins = [values[src] for src in n.inputs]
        out = RULES[n.op](ins, n.attrs, _Step(n, r))
        if observe is not None:
            observe(n, ins, out)
        values[n.id] = out
        for src in dict.fromkeys(n.inputs):  # drop what no later node reads (memory of big networks)
            if last_use[src] == i and src not in wanted:
                del values[src]
    aux = {name: values[out] for name, out in prog.aux.items()} if training else {}
    return Result(values[prog.output], aux, r.new_state)
