"""The op catalog: every primitive op declared once.

An entry gives the op's typed attributes and their checks (``check``, ``choices``: what PyTorch
would refuse only at run time is refused at the call), its shape rule, its parameter and buffer
tensors (names and order as PyTorch's module saves them), its MACs, its receptive-field step, how
it is written in PyTorch (as a module and as a function, and any class the generated file defines
for it: ``helper``), and what the code generators must know about its output (``fresh``: may be
overwritten in place; ``layout``: a channels-first map or not; ``eval_identity``, ``random``).
Analysis, code generation, the interpreter and diff all dispatch through ``OPS``; adding an op
touches only this file and its rule in archspec/interpret.py. An entry also says what the op costs
in memory and arithmetic as PyTorch runs it (``memory``, ``flops``): see the memory rules below and
archspec/memory.py; an op without a memory rule is refused by ``check --batch``, never counted as
nothing.

Shapes exclude the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` after flatten.
Dimension indices (``permute``, ``softmax``) are PyTorch's, the batch being dim 0.
MACs follow torchvision's ``_ops`` convention: multiply-adds of conv and linear layers, batch 1,
bias not counted (a linear over the last dimension: prod(output) x in_features). Every other op
counts zero (``counted=False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .text import dims

REQUIRED = object()


class OpShapeError(Exception):
    """Raised by a shape rule; the caller adds the location and the node."""


class OpAttrError(Exception):
    """Raised by an attribute check (``Op.check``); the caller adds the location of the call."""


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # int, float, bool, size, number, size_or_none, str (one of choices), ints (a tuple of ints)
    default: object = REQUIRED
    torch_name: str | None = None  # keyword in the PyTorch call if it differs
    choices: tuple = ()  # the words a str attribute may be


@dataclass(frozen=True)
class Op:
    name: str
    attrs: tuple
    shape: Callable  # (inputs: list[tuple], attrs) -> tuple
    tensors: Callable = lambda s, a: ()  # (input shape, attrs) -> ((name, shape, is_buffer), ...) in state_dict order
    macs: Callable = lambda i, o, a: 0  # (input shape, output shape, attrs)
    counted: bool = False  # True when MACs are part of the conv+linear convention
    weight_layer: bool = False  # counts towards the paper's depth
    stateful: bool = False  # needs a module (parameters, buffers or train/eval behaviour)
    spatial: Callable | None = None  # attrs -> ((kh, kw), (sh, sw), (dh, dw)) for receptive fields
    module: Callable | None = None  # (in_dim expr, attr exprs) -> "nn.X(...)"
    function: Callable | None = None  # (x expr, attr exprs) -> "F.x(x, ...)"
    inferred: str | None = None  # constructor argument inferred from the input (in_channels ...)
    out_attr: str | None = None  # attribute that sets the output channels/features (None: unchanged)
    opaque_out: bool = False  # output size is not a channel count code can name (flatten: C*H*W)
    merge: bool = False
    in_place: bool = False  # can overwrite its input (nn.ReLU(inplace=True)) where emit.overwritable allows it
    fresh: bool = True  # its output is new memory that no backward keeps: an in-place op may overwrite it
    check: Callable | None = None  # attrs -> None, raises OpAttrError: what PyTorch would refuse at run time
    inferred_dim: int = 0  # the input dimension ``inferred`` reads (-1: the last, linear and layernorm)
    layout: str = "same"  # output layout: "map" (channels first), "same" as the input, "other"
    on_map: str | None = None  # the error when the input is a channels-first C x H x W map ({shape}: its size)
    helper: str | None = None  # a class the generated file defines for the module form (no torchvision import)
    parameter: bool = False  # a bare nn.Parameter of its owner (state_dict key: its path), applied to the input
    applied: Callable | None = None  # (x expr, parameter expr, attr exprs) -> forward expression (parameter ops)
    eval_identity: bool = False  # computes nothing in eval (the deploy build removes it)
    random: bool = False  # draws from the random generator in training (verify records what it drew)
    internal: bool = False  # made by lowering (a merge's split), never written in a spec
    memory: Callable | None = None  # (MemCtx) -> (forward program, backward program or None), or None; see _mem_*
    flops: Callable = lambda i, o, a: 0  # (input shapes, output shape, attrs) -> floating-point operations per sample
    doc: str = ""

    def validate(self, attrs: dict) -> None:
        """Raise OpAttrError for attribute values PyTorch would refuse (or take for something else)."""
        for a in self.attrs:
            if a.choices and attrs.get(a.name) not in a.choices:
                words = ", ".join(f"'{c}'" for c in a.choices)
                raise OpAttrError(f"{self.name} {a.name} must be one of {words}, got {attrs.get(a.name)!r}")
        if self.check is not None:
            self.check(attrs)

    def params(self, in_shape, attrs) -> int:
        return sum(math.prod(shape) for _, shape, buf in self.tensors(in_shape, attrs) if not buf)

    def buffers(self, in_shape, attrs) -> int:
        return sum(math.prod(shape) for _, shape, buf in self.tensors(in_shape, attrs) if buf)

    def attr(self, name: str) -> Attr:
        for a in self.attrs:
            if a.name == name:
                return a
        raise KeyError(name)


def pair(v) -> tuple:
    """A size as (height, width): 3 -> (3, 3)."""
    return tuple(v) if isinstance(v, tuple) else (v, v)


def _need_map(shape, op):
    if len(shape) != 3:
        raise OpShapeError(f"{op} needs a C x H x W feature map, got {_fmt(shape)} (add flatten only after pooling)")


def _fmt(shape) -> str:
    return dims(shape, " x ") if shape else "a scalar"


def _window(size: int, k: int, s: int, p: int, d: int, ceil: bool, what: str, axis: str) -> int:
    eff = d * (k - 1) + 1
    span = size + 2 * p - eff
    if span < 0:
        raise OpShapeError(f"{what} kernel {_kdesc(k, d)} is larger than the padded input {size + 2 * p} along {axis}")
    if ceil:
        out = -(-span // s) + 1
        if (out - 1) * s >= size + p:  # PyTorch: the last window must start inside the input or left padding
            out -= 1
    else:
        out = span // s + 1
    return out


def _kdesc(k, d):
    return f"{k}" if d == 1 else f"{k} (dilation {d})"


def _spatial_out(shape, a, what, ceil=False, pool=False):
    _need_map(shape, what)
    c, h, w = shape
    k, s, p = pair(a["kernel_size"]), pair(a["stride"] if a.get("stride") is not None else a["kernel_size"]), pair(a["padding"])
    d = pair(a.get("dilation", 1))
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise OpShapeError(f"{what} needs kernel, stride and dilation >= 1 and padding >= 0")
    if pool and any(p[i] > k[i] // 2 for i in (0, 1)):
        raise OpShapeError(f"{what} padding {a['padding']} must be at most half the kernel size {a['kernel_size']}")
    if (k[0] > h + 2 * p[0] or k[1] > w + 2 * p[1]) and d == (1, 1):
        raise OpShapeError(f"{what} kernel {k[0]}x{k[1]} is larger than the padded input {h + 2 * p[0]}x{w + 2 * p[1]}")
    oh = _window(h, k[0], s[0], p[0], d[0], ceil, what, "height")
    ow = _window(w, k[1], s[1], p[1], d[1], ceil, what, "width")
    return oh, ow


# --- shape rules -----------------------------------------------------------------------------

def _conv_shape(ins, a):
    (shape,) = ins
    _need_map(shape, "conv2d")
    c = shape[0]
    g = a["groups"]
    if g < 1 or c % g or a["out_channels"] % g:
        raise OpShapeError(f"conv2d groups={g} must divide in_channels {c} and out_channels {a['out_channels']}")
    if a["out_channels"] < 1:
        raise OpShapeError(f"conv2d out_channels must be positive, got {a['out_channels']}")
    oh, ow = _spatial_out(shape, a, "conv2d")
    return (a["out_channels"], oh, ow)


def _pool_shape(name):
    def rule(ins, a):
        (shape,) = ins
        oh, ow = _spatial_out(shape, a, name, ceil=a["ceil_mode"], pool=True)
        return (shape[0], oh, ow)
    return rule


def _adaptive_shape(ins, a):
    (shape,) = ins
    _need_map(shape, "adaptive pooling")
    oh, ow = pair(a["output_size"])
    if oh < 1 or ow < 1:
        raise OpShapeError(f"adaptive pooling output size must be positive, got {a['output_size']}")
    return (shape[0], oh, ow)


def _same(ins, a):
    return ins[0]


def _bn_shape(ins, a):
    _need_map(ins[0], "batchnorm2d")
    return ins[0]


def _lrn_shape(ins, a):
    _need_map(ins[0], "local_response_norm")
    return ins[0]


def _flatten_shape(ins, a):
    (shape,) = ins
    if a["start_dim"] != 1:
        raise OpShapeError("flatten supports start_dim=1 only (keep the batch dimension)")
    return (math.prod(shape),)


def _linear_shape(ins, a):
    (shape,) = ins
    if a["out_features"] < 1:
        raise OpShapeError(f"linear out_features must be positive, got {a['out_features']}")
    return (*shape[:-1], a["out_features"])


def _dropout_shape(ins, a):
    if not 0.0 <= a["p"] <= 1.0:
        raise OpShapeError(f"dropout probability must be between 0 and 1, got {a['p']}")
    return ins[0]


def _concat_shape(ins, a):
    first = ins[0]
    if any(len(s) != len(first) for s in ins):
        raise OpShapeError("concat inputs have different ranks: " + ", ".join(_fmt(s) for s in ins))
    if len({tuple(s[1:]) for s in ins}) > 1:  # any rank: every dimension but the channels agrees
        raise OpShapeError("spatial sizes differ")
    return (sum(s[0] for s in ins), *first[1:])


def _add_shape(ins, a):
    if len({tuple(s) for s in ins}) > 1:
        raise OpShapeError("shapes differ")
    return ins[0]


# --- parameter and MAC rules ------------------------------------------------------------------

def _conv_tensors(s, a):
    k = pair(a["kernel_size"])
    out = [("weight", (a["out_channels"], s[0] // a["groups"], k[0], k[1]), False)]
    if a["bias"]:
        out.append(("bias", (a["out_channels"],), False))
    return out


def _conv_macs(i, o, a):
    k = pair(a["kernel_size"])
    return o[0] * o[1] * o[2] * (i[0] // a["groups"]) * k[0] * k[1]


def _bn_tensors(s, a):
    c = (s[0],)
    out = [("weight", c, False), ("bias", c, False)] if a["affine"] else []
    if a["track_running_stats"]:
        out += [("running_mean", c, True), ("running_var", c, True), ("num_batches_tracked", (), True)]
    return out


def _linear_tensors(s, a):
    out = [("weight", (a["out_features"], s[-1]), False)]
    if a["bias"]:
        out.append(("bias", (a["out_features"],), False))
    return out


def _linear_macs(i, o, a):
    return math.prod(o) * i[-1]  # every output element is one dot product over the last dimension


def _window_flops(i, o, a):
    k = pair(a["kernel_size"])
    return math.prod(o) * k[0] * k[1]  # one comparison or addition per window element


def _spatial_attrs(a):
    k = pair(a["kernel_size"])
    s = pair(a["stride"] if a.get("stride") is not None else a["kernel_size"])
    d = pair(a.get("dilation", 1))
    return k, s, d


# --- attribute checks: what PyTorch would refuse at run time, or take for something else --------------

def _positive(what, name, value, at_least=None):
    if at_least is not None and not value >= at_least:
        raise OpAttrError(f"{what} {name} must be at least {at_least}, got {value!r}")
    if at_least is None and not value > 0:
        raise OpAttrError(f"{what} {name} must be positive, got {value!r}")


def _norm_check(what, momentum=False):
    def check(a):
        _positive(what, "eps", a["eps"])
        if momentum and not 0.0 <= a["momentum"] <= 1.0:
            raise OpAttrError(f"{what} momentum must be between 0 and 1, got {a['momentum']!r}")
        if "num_groups" in a:
            _positive(what, "num_groups", a["num_groups"], 1)
    return check


def _lrn_check(a):
    _positive("local_response_norm", "size", a["size"], 1)
    if not a["k"] > 0:  # k = 0 divides zeros by zero: NaN
        raise OpAttrError(f"local_response_norm k must be positive, got {a['k']!r}")


def _probability(what):
    def check(a):
        if not 0.0 <= a["p"] <= 1.0:
            raise OpAttrError(f"{what} probability must be between 0 and 1, got {a['p']!r}")
    return check


# --- memory rules -----------------------------------------------------------------------------
# What an op allocates as PyTorch runs it, what autograd keeps for its backward and what the
# backward allocates: two short programs that archspec/memory.py executes with reference counts
# (docs/cli.md, "Memory", states every convention). Tags name tensors: x0, x1, ... are the op's
# inputs (borrowed from the caller), g is the gradient that reaches the op in backward, anything
# else is a tensor the program allocates or, in backward, one the forward program kept. The facts
# are torch 2.13's on the CPU, found by measurement (tests/test_memory.py is the oracle).


@dataclass(frozen=True)
class MemCtx:
    """What a memory rule sees about one op call."""

    ins: tuple  # input shapes, without the batch
    out: tuple  # output shape
    attrs: dict
    n: int  # batch size
    isz: int  # bytes per element of activations (the model's dtype)
    train: bool = False  # the module's mode (BatchNorm and dropout differ)
    needs: tuple = ()  # per input: whether autograd computes its gradient
    params: tuple = ()  # bytes of each parameter tensor, in state_dict order
    inplace: bool = False  # a ReLU the generated code writes in place

    def bytes(self, shape, isz: int | None = None) -> int:
        return self.n * math.prod(shape) * (isz or self.isz)


def k(*allocs) -> tuple:
    """One PyTorch call that allocates these (tag, bytes) tensors; memory is measured after it."""
    return ("k", *allocs)


def keep(*tags) -> tuple:
    """Autograd keeps these tensors for backward (training only; in eval they die with the op)."""
    return ("keep", *tags)


def drop(*tags) -> tuple:
    """These tensors die here (Python rebinds or discards them; a node releases what it kept)."""
    return ("drop", *tags)


def ret(tag: str) -> tuple:
    """The op's result: a tensor it allocated, or an input (in place, or a view of it)."""
    return ("ret", tag)


def grad(i: int, tag: str, how: str = "own") -> tuple:
    """The gradient of input i: a tensor the backward allocated (own), the incoming gradient
    itself (pass), a view of it (view) or a channel slice of it (slice, dense only at batch 1)."""
    return ("grad", i, tag, how)


def done(*tags) -> tuple:
    """An autograd node ends: the gradient it received and what it kept are released (these
    tags; all when none are named), then the gradients given by ``grad`` reach their nodes."""
    return ("done", *tags)


def pgrad(*tags) -> tuple:
    """These allocations become parameter gradients (.grad), kept after backward."""
    return ("pgrad", *tags)


def _mem_new(saves=("x0",)):
    """A call with one new result (pooling, scaling); backward allocates the input's gradient."""
    def rule(m):
        fwd = (k(("out", m.bytes(m.out))), keep(*saves), ret("out"))
        return fwd, (k(("gx", m.bytes(m.ins[0]))), grad(0, "gx"), done())
    return rule


def _mem_indexed(m):
    """Max pooling also returns int64 indices (on the CPU even in eval, where they die at once)."""
    fwd = (k(("out", m.bytes(m.out)), ("idx", m.bytes(m.out, 8))), keep("x0", "idx"), ret("out"))
    return fwd, (k(("gx", m.bytes(m.ins[0]))), grad(0, "gx"), done())


def _mem_adaptive_avg(m):
    """Output 1x1 is a mean over H, W, which keeps nothing; other sizes keep the input."""
    return _mem_new(() if tuple(pair(m.attrs["output_size"])) == (1, 1) else ("x0",))(m)


def _input_grad(m) -> list:
    return [("gx", m.bytes(m.ins[0]))] if m.needs[0] else []


def _grad0(m) -> list:
    return [grad(0, "gx")] if m.needs[0] else []


def _param_tags(m) -> list:
    return [f"p{j}" for j in range(len(m.params))]


def _mem_conv(m):
    """convolution keeps its input (and the weight); one backward call makes every gradient."""
    fwd = (k(("out", m.bytes(m.out))), keep("x0"), ret("out"))
    tags = _param_tags(m)
    bwd = (k(*_input_grad(m), *zip(tags, m.params)), *_grad0(m), pgrad(*tags), done())
    return fwd, bwd


def _mem_linear(m):
    """addmm (mm without bias) keeps its input; backward: input grad, weight grad, bias grad (a sum).
    A linear over the last dimension of a larger tensor runs other calls: no rule for it yet."""
    if len(m.ins[0]) != 1:
        return None
    fwd = (k(("out", m.bytes(m.out))), keep("x0"), ret("out"))
    tags = _param_tags(m)
    bwd = (*([k(*_input_grad(m))] if m.needs[0] else []), *(k((t, b)) for t, b in zip(tags, m.params)), *_grad0(m),
           pgrad(*tags), done())
    return fwd, bwd


def _mem_bn(m):
    """Training (or no running statistics) normalises with batch statistics and returns them:
    mean and inverse std, C elements each, kept for backward with the input."""
    c = m.ins[0][0]
    out = ("out", m.bytes(m.out))
    if m.train or not m.attrs["track_running_stats"]:
        fwd = (k(out, ("mean", c * m.isz), ("invstd", c * m.isz)), keep("x0", "mean", "invstd"), ret("out"))
    else:
        fwd = (k(out), keep("x0"), ret("out"))
    tags = _param_tags(m)
    bwd = (k(*_input_grad(m), *zip(tags, m.params)), *_grad0(m), pgrad(*tags), done())
    return fwd, bwd


def _mem_relu(m):
    """ReLU keeps its result: in place that is its input's storage, so it allocates nothing."""
    fwd = (keep("x0"), ret("x0")) if m.inplace else (k(("out", m.bytes(m.out))), keep("out"), ret("out"))
    return fwd, (k(("gx", m.bytes(m.ins[0]))), grad(0, "gx"), done())


def _mem_dropout(m):
    """Eval (or p=0) returns the input itself. Training on the CPU draws a noise tensor of the
    input's size and dtype and multiplies (CUDA's fused kernel keeps a bool mask instead)."""
    p = m.attrs["p"]
    if not m.train or p == 0:
        return (ret("x0"),), None
    noise = ("noise", m.isz) if p == 1 else ("noise", m.bytes(m.ins[0]))  # p=1: a 0-dim zero
    fwd = (k(noise), k(("out", m.bytes(m.out))), keep("noise"), ret("out"))
    return fwd, (k(("gx", m.bytes(m.ins[0]))), grad(0, "gx"), done())


def _mem_flatten(m):
    """A view of the input (a flat input is returned itself)."""
    if len(m.ins[0]) == 1:
        return (ret("x0"),), None
    return (ret("x0"),), (grad(0, "g", "view"), done())


def _mem_identity(m):
    return (ret("x0"),), None


def _mem_concat(m):
    """cat keeps nothing; its backward hands each input a slice of the gradient."""
    fwd = (k(("out", m.bytes(m.out))), ret("out"))
    return fwd, (*(grad(i, "g", "slice") for i in range(len(m.ins)) if m.needs[i]), done())


def _mem_add(m):
    """a + b + c is two calls, the first result a temporary; backward passes the gradient itself
    to every input (last input first, as autograd reaches them)."""
    fwd, prev = [], None
    for j in range(1, len(m.ins)):
        tag = "out" if j == len(m.ins) - 1 else f"t{j}"
        fwd.append(k((tag, m.bytes(m.out))))
        if prev:
            fwd.append(drop(prev))
        prev = tag
    fwd.append(ret("out"))
    order = list(range(len(m.ins) - 1, 1, -1)) + [0, 1]
    return tuple(fwd), (*(grad(i, "g", "pass") for i in order if m.needs[i]), done())


def _mem_lrn(m):
    """F.local_response_norm is composite: x*x, pad, avg_pool3d, *alpha, +k, **beta, x / that.
    Each step is a call with its own result; autograd keeps the padded square, the sum before
    the power, the divisor and the input."""
    b = m.bytes(m.ins[0])
    c, h, w = m.ins[0]
    padded = m.bytes((c + m.attrs["size"] - 1, h, w))
    fwd = (k(("sq", b)), k(("pad", padded)), drop("sq"), k(("pool", b)), keep("pad"), drop("pad"),
           k(("scaled", b)), k(("base", b)), drop("scaled"), k(("div", b)), keep("base"), drop("base", "pool"),
           k(("out", b)), keep("x0", "div"), drop("div"), ret("out"))
    bwd = (
        # x / div: the divisor's gradient, -g * ((x / div) / div), then the input's, g / div
        k(("q1", b)), k(("q2", b)), k(("neg", b)), k(("gdiv", b)), drop("q1", "q2", "neg"), k(("gx1", b)),
        grad(0, "gx1"), done("g", "div"),
        # base ** beta: g * (beta * base ** (beta - 1))
        k(("pw", b)), k(("ps", b)), k(("gbase", b)), drop("pw", "ps"), done("gdiv", "base"),
        k(("gpool", b)), done("gbase"),  # (+ k passes it on; * alpha makes a new one)
        k(("gpad", padded)), done("gpool", "pad"),  # avg_pool3d
        k(("gsq", b)), done("gpad"),  # un-padding copies
        k(("gx2", b)), k(("gx3", b)), grad(0, "gx2"), grad(0, "gx3"), done("gsq", "x0"),  # x * x
    )
    return fwd, bwd


# --- rendering --------------------------------------------------------------------------------

def _kw(op: Op, exprs: dict, skip=(), positional=()) -> list[str]:
    """Arguments for the PyTorch call: positional ones first, then keywords that differ from defaults."""
    given = []  # positional while no earlier one is missing: hardtanh(max_val=2.0) stays a keyword
    for name in positional:
        if name not in exprs:
            break
        given.append(name)
    out = [exprs[name] for name in given]
    for attr in op.attrs:
        if attr.name in skip or attr.name in given or attr.name not in exprs:
            continue
        out.append(f"{attr.torch_name or attr.name}={exprs[attr.name]}")
    return out


def _mod(cls, positional=(), inferred=True, extra=(), prefix="nn."):
    def render(in_expr, exprs, op, inplace=True):
        args = ([in_expr] if inferred else []) + _kw(op, exprs, positional=positional) + list(extra)
        return f"{prefix}{cls}({', '.join(args)})"
    return render


def _fn(template, positional=(), extra=()):
    def render(x, exprs, op, inplace=True):
        args = [x] + _kw(op, exprs, positional=positional) + list(extra)
        return f"{template}({', '.join(args)})"
    return render


_POOL_ATTRS = (
    Attr("kernel_size", "size"),
    Attr("stride", "size_or_none", None),
    Attr("padding", "size", 0),
)

OPS: dict[str, Op] = {}


def _register(op: Op) -> None:
    OPS[op.name] = op


_register(Op(
    "conv2d",
    (Attr("out_channels", "int"), Attr("kernel_size", "size"), Attr("stride", "size", 1), Attr("padding", "size", 0),
     Attr("dilation", "size", 1), Attr("groups", "int", 1), Attr("bias", "bool", True)),
    _conv_shape, _conv_tensors, macs=_conv_macs, counted=True, weight_layer=True, stateful=True,
    spatial=_spatial_attrs, module=_mod("Conv2d", positional=("out_channels",)), layout="map",
    inferred="in_channels", out_attr="out_channels", memory=_mem_conv, flops=lambda i, o, a: 2 * _conv_macs(i[0], o, a),
    doc="2-D convolution; in_channels comes from the input"))
_register(Op(
    "batchnorm2d",
    (Attr("eps", "float", 1e-5), Attr("momentum", "float", 0.1), Attr("affine", "bool", True),
     Attr("track_running_stats", "bool", True)),
    _bn_shape, _bn_tensors, stateful=True, module=_mod("BatchNorm2d"), inferred="num_features", layout="map",
    check=_norm_check("batchnorm2d", momentum=True), memory=_mem_bn,
    flops=lambda i, o, a: 2 * math.prod(o),  # eval: a scale and a shift per element
    doc="batch normalisation over channels; num_features comes from the input"))
_register(Op("relu", (), _same, module=lambda i, e, op, inplace=True: "nn.ReLU(inplace=True)" if inplace else "nn.ReLU()",
             function=lambda x, e, op, inplace=True: f"F.relu({x}, inplace=True)" if inplace else f"F.relu({x})",
             in_place=True, fresh=False,  # relu's backward reads its output
             memory=_mem_relu, flops=lambda i, o, a: math.prod(o),
             doc="rectified linear unit (in place where the input is not shared)"))
_register(Op(
    "maxpool2d", (*_POOL_ATTRS, Attr("dilation", "size", 1), Attr("ceil_mode", "bool", False)),
    _pool_shape("maxpool2d"), spatial=_spatial_attrs, layout="map",
    module=_mod("MaxPool2d", positional=("kernel_size",), inferred=False),
    function=_fn("F.max_pool2d", positional=("kernel_size",)), memory=_mem_indexed, flops=_window_flops,
    doc="max pooling (pads with -inf)"))
_register(Op(
    "avgpool2d", (*_POOL_ATTRS, Attr("ceil_mode", "bool", False), Attr("count_include_pad", "bool", True)),
    _pool_shape("avgpool2d"), spatial=_spatial_attrs, layout="map",
    module=_mod("AvgPool2d", positional=("kernel_size",), inferred=False),
    function=_fn("F.avg_pool2d", positional=("kernel_size",)), memory=_mem_new(), flops=_window_flops,
    doc="average pooling"))
_register(Op(
    "adaptive_avgpool2d", (Attr("output_size", "size"),), _adaptive_shape, layout="map",
    module=_mod("AdaptiveAvgPool2d", positional=("output_size",), inferred=False),
    function=_fn("F.adaptive_avg_pool2d", positional=("output_size",)), memory=_mem_adaptive_avg,
    flops=lambda i, o, a: math.prod(i[0]), doc="adaptive average pooling"))
_register(Op(
    "adaptive_maxpool2d", (Attr("output_size", "size"),), _adaptive_shape, layout="map",
    module=_mod("AdaptiveMaxPool2d", positional=("output_size",), inferred=False),
    function=_fn("F.adaptive_max_pool2d", positional=("output_size",)), memory=_mem_indexed,
    flops=lambda i, o, a: math.prod(i[0]), doc="adaptive max pooling"))
_register(Op(
    "linear", (Attr("out_features", "int"), Attr("bias", "bool", True)), _linear_shape, _linear_tensors,
    macs=_linear_macs, counted=True, weight_layer=True, stateful=True,
    module=_mod("Linear", positional=("out_features",)), inferred="in_features", out_attr="out_features",
    inferred_dim=-1, layout="other",
    on_map="linear needs a flat or channels-last input, got the feature map {shape}; add flatten before it "
           "(or permute((0, 2, 3, 1)) before it for a linear over channels)",
    memory=_mem_linear, flops=lambda i, o, a: 2 * _linear_macs(i[0], o, a),
    doc="fully connected layer over the last dimension; in_features comes from the input"))
_register(Op(
    "dropout", (Attr("p", "float", 0.5),), _dropout_shape, stateful=True, eval_identity=True, random=True,
    module=_mod("Dropout", inferred=False, positional=("p",)), fresh=False,  # the input itself in eval
    memory=_mem_dropout, doc="dropout (active in training only)"))
_register(Op(
    "flatten", (Attr("start_dim", "int", 1),), _flatten_shape,
    module=lambda i, e, op, inplace=True: "nn.Flatten(1)", function=lambda x, e, op, inplace=True: f"torch.flatten({x}, 1)",
    opaque_out=True, fresh=False, layout="other",  # a view of its input
    memory=_mem_flatten, doc="flatten all but the batch dimension"))
_register(Op(
    "local_response_norm",
    (Attr("size", "int"), Attr("alpha", "float", 1e-4), Attr("beta", "float", 0.75), Attr("k", "float", 1.0)),
    _lrn_shape, module=_mod("LocalResponseNorm", positional=("size",), inferred=False), layout="map",
    check=_lrn_check, memory=_mem_lrn, flops=lambda i, o, a: (a["size"] + 6) * math.prod(o),
    function=_fn("F.local_response_norm", positional=("size",)), doc="local response normalisation across channels"))
_register(Op("identity", (), _same, module=lambda i, e, op, inplace=True: "nn.Identity()", eval_identity=True,
             function=lambda x, e, op, inplace=True: x, fresh=False, memory=_mem_identity,
             doc="passes its input through"))
_register(Op("scale", (Attr("factor", "float"),), _same, function=lambda x, e, op, inplace=True: f"{x} * {e['factor']}",
             memory=_mem_new(()), flops=lambda i, o, a: math.prod(o),
             doc="multiplies by a constant (residual scaling in Inception-ResNet)"))
# --- activations, normalisation, layout and stochastic ops (issue 11) --------------------------
# Elementwise ops, norms, layout ops and stochastic depth count 0 MACs (torchvision's _ops).


def _act(name, cls, fn, attrs=(), check=None, doc="", positional=(), fresh=True, in_place=False):
    """An elementwise activation: no parameters, a module and a function form. One that can run in
    place does so where emit.in_place_nodes allows it (``inplace=True``, as torchvision writes
    ReLU6, SiLU and Hardswish); its output is then one its backward reads (not ``fresh``)."""
    def module(i, e, op, inplace=True):
        return _mod(cls, inferred=False, positional=positional, extra=("inplace=True",) if inplace else ())(i, e, op)

    def function(x, e, op, inplace=True):
        return _fn(fn, positional=positional, extra=("inplace=True",) if inplace else ())(x, e, op)

    _register(Op(name, attrs, _same, module=module if in_place else _mod(cls, inferred=False, positional=positional),
                 function=function if in_place else _fn(fn, positional=positional), check=check, doc=doc,
                 fresh=fresh and not in_place, in_place=in_place))


def _hardtanh_check(a):
    if not a["min_val"] < a["max_val"]:
        raise OpAttrError(f"hardtanh min_val must be below max_val, got {a['min_val']!r} and {a['max_val']!r}")


def _dim(shape, d, what) -> int:
    """A dimension as PyTorch numbers it (the batch is dim 0) -> its index in ``shape`` (no batch)."""
    rank = len(shape) + 1
    if not -rank < d < rank or d == 0:
        raise OpShapeError(f"{what} dim {d} is out of range for an input N x {_fmt(shape)} "
                           f"(1 to {rank - 1} or -1 to {1 - rank}; dim 0 is the batch)")
    return d % rank - 1


def _softmax_shape(ins, a):
    _dim(ins[0], a["dim"], "softmax")
    return ins[0]


def _softmax_check(a):
    if a["dim"] == 0:
        raise OpAttrError("softmax dim 0 is the batch: dims are numbered as in PyTorch, the batch first")


_act("relu6", "ReLU6", "F.relu6", doc="min(max(x, 0), 6) (MobileNet)", in_place=True)
_act("leaky_relu", "LeakyReLU", "F.leaky_relu", (Attr("negative_slope", "float", 0.01),), positional=("negative_slope",),
     doc="x for x >= 0, negative_slope * x below")
_act("elu", "ELU", "F.elu", (Attr("alpha", "float", 1.0),), doc="x for x > 0, alpha * (exp(x) - 1) below")
_act("gelu", "GELU", "F.gelu", (Attr("approximate", "str", "none", choices=("none", "tanh")),),
     doc="x * Phi(x); approximate='tanh': the tanh approximation")
_act("silu", "SiLU", "F.silu", doc="x * sigmoid(x) (swish; EfficientNet)", in_place=True)
_act("mish", "Mish", "F.mish", doc="x * tanh(softplus(x))", in_place=True)
_act("sigmoid", "Sigmoid", "torch.sigmoid", doc="1 / (1 + exp(-x)) (squeeze-and-excitation gates)", fresh=False)
_act("tanh", "Tanh", "torch.tanh", doc="hyperbolic tangent", fresh=False)  # their backward reads the output
_act("hardswish", "Hardswish", "F.hardswish", doc="x * relu6(x + 3) / 6 (MobileNet v3)", in_place=True)
_act("hardsigmoid", "Hardsigmoid", "F.hardsigmoid", doc="relu6(x + 3) / 6 (MobileNet v3 gates)", in_place=True)
_act("hardtanh", "Hardtanh", "F.hardtanh", (Attr("min_val", "float", -1.0), Attr("max_val", "float", 1.0)),
     check=_hardtanh_check, positional=("min_val", "max_val"), doc="x clipped to [min_val, max_val]", in_place=True)
_register(Op("softmax", (Attr("dim", "int"),), _softmax_shape, module=_mod("Softmax", inferred=False),
             function=_fn("F.softmax"), check=_softmax_check, fresh=False,
             doc="softmax along dim (numbered as in PyTorch: the batch is dim 0)"))


def _ln_tensors(dim):
    def tensors(s, a):
        if not a["elementwise_affine"]:
            return []
        c = (s[dim],)
        return [("weight", c, False)] + ([("bias", c, False)] if a["bias"] else [])
    return tensors


def _layernorm2d_shape(ins, a):
    _need_map(ins[0], "layernorm2d")
    return ins[0]


def _groupnorm_shape(ins, a):
    (shape,) = ins
    if shape[0] % a["num_groups"]:
        raise OpShapeError(f"groupnorm num_groups={a['num_groups']} must divide the channels {shape[0]}")
    return shape


def _groupnorm_module(in_expr, exprs, op, inplace=True):
    return f"nn.GroupNorm({', '.join([exprs['num_groups'], in_expr] + _kw(op, exprs, skip=('num_groups',)))})"


def _groupnorm_tensors(s, a):
    return [("weight", (s[0],), False), ("bias", (s[0],), False)] if a["affine"] else []


_LN_ATTRS = (Attr("eps", "float", 1e-5), Attr("elementwise_affine", "bool", True), Attr("bias", "bool", True))
_LAYERNORM2D = '''class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an N x C x H x W map (torchvision's and timm's LayerNorm2d)."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)'''

_register(Op(
    "layernorm", _LN_ATTRS, _same, _ln_tensors(-1), stateful=True, module=_mod("LayerNorm"),
    inferred="normalized_shape", inferred_dim=-1, check=_norm_check("layernorm"),
    on_map="layernorm normalises the last dimension, the width of the feature map {shape}: use layernorm2d "
           "for its channels (or permute((0, 2, 3, 1)) before it)",
    doc="layer normalisation over the last dimension; normalized_shape comes from the input"))
_register(Op(
    "layernorm2d", _LN_ATTRS, _layernorm2d_shape, _ln_tensors(0), stateful=True, module=_mod("LayerNorm2d", prefix=""),
    inferred="normalized_shape", layout="map", check=_norm_check("layernorm2d"), helper=_LAYERNORM2D,
    doc="layer normalisation over the channels of a C x H x W map (ConvNeXt); a class in the generated file"))
_register(Op(
    "groupnorm", (Attr("num_groups", "int"), Attr("eps", "float", 1e-5), Attr("affine", "bool", True)),
    _groupnorm_shape, _groupnorm_tensors, stateful=True, module=_groupnorm_module, inferred="num_channels",
    check=_norm_check("groupnorm"), doc="group normalisation over channels; num_channels comes from the input"))


# -- layout: permute, reshape, channel shuffle --

def _permute_check(a):
    dims = a["dims"]
    if sorted(dims) != list(range(len(dims))) or dims[0] != 0:
        raise OpAttrError(f"permute dims must be 0, 1, ..., n-1 in some order with the batch (0) first, got {dims}")


def _permute_shape(ins, a):
    (shape,) = ins
    if len(a["dims"]) != len(shape) + 1:
        raise OpShapeError(f"permute dims {a['dims']} name {len(a['dims'])} dimensions, the input N x {_fmt(shape)} "
                           f"has {len(shape) + 1}")
    return tuple(shape[d - 1] for d in a["dims"][1:])


def _tuple_args(expr: str) -> str:
    """``(0, 2, 3, 1)`` -> ``0, 2, 3, 1``: the items of a tuple expression as call arguments."""
    import ast

    tree = ast.parse(expr, mode="eval").body
    if isinstance(tree, ast.Tuple):
        return ", ".join(ast.unparse(e) for e in tree.elts)
    if isinstance(tree, ast.Constant):
        return expr
    return f"*{expr}"


def _tuple_src(expr: str) -> str:
    """A tuple expression: ``4`` -> ``(4,)``, ``(4, 1, 1)`` as it is."""
    items = _tuple_args(expr)
    return f"({items})" if "," in items else f"({items},)"


_PERMUTE = '''class Permute(nn.Module):
    """Permutes the dimensions of its input (torchvision.ops.Permute)."""

    def __init__(self, dims: list) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)'''

_register(Op(
    "permute", (Attr("dims", "ints"),), _permute_shape, check=_permute_check, layout="other", opaque_out=True,
    fresh=False,  # a view
    module=lambda i, e, op, inplace=True: f"Permute([{_tuple_args(e['dims'])}])", helper=_PERMUTE,
    function=lambda x, e, op, inplace=True: f"{x}.permute({_tuple_args(e['dims'])})",
    doc="reorders dimensions, numbered as in PyTorch with the batch (0) first: permute((0, 2, 3, 1)) is channels last"))


def _reshape_check(a):
    sizes = a["shape"]
    if sum(1 for v in sizes if v == -1) > 1 or any(v < 1 and v != -1 for v in sizes):
        raise OpAttrError(f"reshape sizes must be positive, with at most one -1 (inferred), got {sizes}")


def _reshape_shape(ins, a):
    (shape,) = ins
    total, known = math.prod(shape), math.prod(v for v in a["shape"] if v != -1)
    if -1 in a["shape"]:
        if total % known:
            raise OpShapeError(f"reshape {a['shape']}: {total} elements ({_fmt(shape)}) do not divide into {known}")
        return tuple(total // known if v == -1 else v for v in a["shape"])
    if known != total:
        raise OpShapeError(f"reshape {a['shape']} holds {known} elements, the input {_fmt(shape)} has {total}")
    return tuple(a["shape"])


_register(Op(
    "reshape", (Attr("shape", "ints"),), _reshape_shape, check=_reshape_check, layout="other", opaque_out=True,
    fresh=False,  # a view where it can be
    function=lambda x, e, op, inplace=True: f"{x}.reshape({x}.shape[0], {_tuple_args(e['shape'])})",
    doc="a new shape for each sample (sizes without the batch; one may be -1)"))


def _shuffle_shape(ins, a):
    (shape,) = ins
    if len(shape) < 2:
        raise OpShapeError(f"channel_shuffle needs channels and at least one more dimension, got {_fmt(shape)}")
    if shape[0] % a["groups"]:
        raise OpShapeError(f"channel_shuffle groups={a['groups']} must divide the channels {shape[0]}")
    return shape


_register(Op(
    "channel_shuffle", (Attr("groups", "int"),), _shuffle_shape,
    check=lambda a: _positive("channel_shuffle", "groups", a["groups"], 1),
    module=_mod("ChannelShuffle", positional=("groups",), inferred=False),
    function=_fn("F.channel_shuffle", positional=("groups",)),
    doc="interleaves channel groups (ShuffleNet): groups x C/groups -> C/groups x groups"))


# -- stochastic depth, learnable parameters --

_STOCHASTIC_DEPTH = '''class StochasticDepth(nn.Module):
    """Stochastic depth in training (torchvision.ops.StochasticDepth, with its draws from torch's
    generator): with probability p a sample ("row") or the whole batch ("batch") is zeroed, and
    what is kept is divided by 1 - p. The identity in eval."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p = p
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival_rate = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival_rate)
        if survival_rate > 0.0:
            noise.div_(survival_rate)
        return x * noise'''

_register(Op(
    "stochastic_depth", (Attr("p", "float"), Attr("mode", "str", "row", choices=("row", "batch"))), _same,
    stateful=True, check=_probability("stochastic_depth"), eval_identity=True, random=True, helper=_STOCHASTIC_DEPTH,
    fresh=False,  # its input itself in eval
    module=lambda i, e, op, inplace=True: f"StochasticDepth({', '.join([e['p']] + ([e['mode']] if 'mode' in e else []))})",
    doc="drops whole samples in training (ConvNeXt, EfficientNet residuals); a class in the generated file"))


def _broadcast(shapes: list, what: str) -> tuple:
    """PyTorch's broadcasting of shapes of one rank: each dimension equal or 1."""
    out = []
    for sizes in zip(*shapes):
        big = {s for s in sizes if s != 1}
        if len(big) > 1:
            raise OpShapeError(f"{what}: shapes {', '.join(_fmt(s) for s in shapes)} do not broadcast "
                               "(each dimension must be equal or 1)")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _parameter_shape(ins, a):
    (shape,) = ins
    p = a["shape"]
    if len(p) > len(shape):
        raise OpShapeError(f"parameter shape {p} has more dimensions than the input {_fmt(shape)}")
    return _broadcast([shape, (1,) * (len(shape) - len(p)) + tuple(p)], "parameter")


def _parameter_check(a):
    if any(v < 1 for v in a["shape"]):
        raise OpAttrError(f"parameter sizes must be positive, got {a['shape']}")


_register(Op(
    "parameter", (Attr("shape", "ints"), Attr("init", "float"), Attr("apply", "str", "mul", choices=("mul", "add"))),
    _parameter_shape, lambda s, a: [("", tuple(a["shape"]), False)], stateful=True, parameter=True,
    check=_parameter_check, layout="same",
    module=lambda i, e, op, inplace=True: f"nn.Parameter(torch.full({_tuple_src(e['shape'])}, {e['init']}))",
    applied=lambda x, p, e: f"{x} + {p}" if e.get("apply") == "'add'" else f"{p} * {x}",
    doc="a learnable tensor of its owner (state_dict key: its name), initialised to init and multiplied with "
        "(or added to) the input with broadcasting: layer scale"))




def _mul_shape(ins, a):
    if any(len(s) != len(ins[0]) for s in ins):
        raise OpShapeError("mul inputs have different ranks: " + ", ".join(_fmt(s) for s in ins))
    return _broadcast(ins, "mul")


def _split_sizes(a, channels: int) -> list:
    """The channel counts of a merge's ``split:``: N equal chunks, or the sizes given."""
    split = a["split"]
    if isinstance(split, int):
        if split < 1 or channels % split:
            raise OpShapeError(f"split: {split} needs channels divisible by {split}, got {channels}")
        return [channels // split] * split
    if sum(split) != channels or min(split) < 1:
        raise OpShapeError(f"split: sizes {list(split)} must be positive and add up to the channels {channels}")
    return list(split)


def _split_shape(ins, a):
    (shape,) = ins
    return (_split_sizes(a, shape[0])[a["index"]], *shape[1:])


_register(Op("concat", (), _concat_shape, merge=True, memory=_mem_concat, doc="concatenation along channels"))
_register(Op("add", (), _add_shape, merge=True, memory=_mem_add, flops=lambda i, o, a: (len(i) - 1) * math.prod(o),
             doc="element-wise sum"))
_register(Op("mul", (), _mul_shape, merge=True, doc="element-wise product, broadcasting (squeeze-and-excitation)"))
_register(Op("input", (), lambda ins, a: a["shape"], fresh=False, layout="map", doc="the network input"))
_register(Op("split", (Attr("split", "ints"), Attr("index", "int")), _split_shape, internal=True, layout="same",
             fresh=False,
             doc="branch ``index`` of a merge with ``split:``: its chunk of the input's channels (a view)"))

USER_OPS = tuple(name for name, op in OPS.items() if not op.merge and name != "input" and not op.internal)
MERGES = tuple(name for name, op in OPS.items() if op.merge)  # the closed set of merge kinds
