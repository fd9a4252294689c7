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
import re
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
# inputs (borrowed from the caller), g is the gradient that reaches the op in backward (g0, g1, ...
# for a call with several results), anything else is a tensor the program allocates or, in
# backward, one the forward program kept. The facts are torch 2.13's on the CPU, found by
# measurement (tests/test_memory.py is the oracle).

# -- layouts --
# A layout is a tensor's strides in elements, the batch dimension first; None is the contiguous
# layout of its shape. Most networks only ever hold contiguous tensors. Permute, layernorm2d (whose
# result is channels-last), a merge's split: chunks and whatever reads them do not, and there torch
# decides by the strides whether reshape, flatten, a linear over the last dimension and group norm
# copy, whether a gradient is added in place (only a dense one is), and whether a convolution's
# weight gradient must be copied into .grad's layout. These functions compute the strides as torch
# does (c10's contiguity and view rules, TensorIterator's output layout), so the rules decide alike.


def contiguous(shape) -> tuple:
    out, step = [], 1
    for size in reversed(shape):
        out.append(step)
        step *= size
    return tuple(reversed(out))


def _st(shape, layout) -> tuple:
    return contiguous(shape) if layout is None else layout


def is_contiguous(shape, layout) -> bool:
    """``Tensor.is_contiguous()``: a dimension of size 1 may have any stride."""
    if layout is None:
        return True
    step = 1
    for size, stride in zip(reversed(shape), reversed(layout)):
        if size != 1:
            if stride != step:
                return False
            step *= size
    return True


def channels_last(shape) -> tuple:
    """The strides of an N x C x H x W tensor in channels-last order."""
    _, c, h, w = shape
    return (h * w * c, 1, w * c, c)


def is_channels_last(shape, layout) -> bool:
    """``Tensor.is_contiguous(memory_format=torch.channels_last)``."""
    if len(shape) != 4:
        return False
    st, step = _st(shape, layout), 1
    for d in (1, 3, 2, 0):
        if shape[d] != 1:
            if st[d] != step:
                return False
            step *= shape[d]
    return True


def suggests_channels_last(shape, layout) -> bool:
    """``suggest_memory_format() == torch.channels_last`` (c10's is_channels_last_strides_2d): the
    format a convolution, a norm or a pooling layer gives its result."""
    if len(shape) != 4:
        return False
    st, low = _st(shape, layout), 0
    if st[1] == 0:
        return False
    for d in (1, 3, 2, 0):
        if shape[d] == 0 or st[d] < low or (d == 0 and low == st[1]):
            return False
        low = st[d] * shape[d] if shape[d] > 1 else st[d]
    return True


def dense(shape, layout) -> bool:
    """``is_non_overlapping_and_dense()``: the elements fill their storage without gaps."""
    st = _st(shape, layout)
    dims = sorted((d for d in range(len(shape)) if shape[d] > 1), key=lambda d: st[d])
    step = 1
    for d in dims:
        if st[d] != step:
            return False
        step *= shape[d]
    return True


def view_strides(shape, layout, new_shape):
    """The strides of ``reshape(new_shape)`` as a view, or None where torch must copy (c10's
    computeStride)."""
    old = _st(shape, layout)
    if not shape:
        return contiguous(new_shape)
    new = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    base, numel, view_numel = old[-1], 1, 1
    for d in range(len(shape) - 1, -1, -1):
        numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and old[d - 1] != numel * base):
            while view_d >= 0 and (view_numel < numel or new_shape[view_d] == 1):
                new[view_d] = view_numel * base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != numel:
                return None
            if d > 0:
                base, numel, view_numel = old[d - 1], 1, 1
    return tuple(new) if view_d == -1 else None


def iterated(shape, operands):
    """The layout of an elementwise op's result of ``shape`` (TensorIterator): its inputs'
    common layout when they share one, else the dimension order the inputs' strides give, the
    first input deciding first. ``operands``: (shape, layout) of each input, in order, broadcast to
    ``shape`` (a lower rank is padded in front)."""
    common = _common_layout(shape, operands)
    if common is not False:
        return common
    nd = len(shape)
    strides = []
    for s, lay in operands:
        st, pad = _st(s, lay), nd - len(s)
        strides.append([0 if i < pad or (s[i - pad] == 1 and shape[i] != 1) else st[i - pad] for i in range(nd)])
    perm = list(range(nd - 1, -1, -1))  # innermost first
    for i in range(1, nd):
        d1 = i
        for d0 in range(i - 1, -1, -1):
            order = _dim_order(strides, shape, perm[d0], perm[d1])
            if order > 0:
                perm[d0], perm[d1] = perm[d1], perm[d0]
                d1 = d0
            elif order < 0:
                break
    if perm == list(range(nd - 1, -1, -1)):
        return None
    out, step = [0] * nd, 1
    for d in perm:
        out[d] = step
        step *= shape[d]
    return tuple(out)


def _common_layout(shape, operands):
    """TensorIterator's fast setup: inputs of the output's shape that are all contiguous, all
    channels-last, or all dense with the same strides give their layout; False otherwise."""
    if not all(tuple(s) == tuple(shape) for s, _ in operands):
        return False
    if all(is_contiguous(s, lay) for s, lay in operands):
        return None
    if all(is_channels_last(s, lay) for s, lay in operands):
        return channels_last(shape)
    if all(dense(s, lay) for s, lay in operands) and len({_st(s, lay) for s, lay in operands}) == 1:
        return _st(*operands[0])
    return False


def _dim_order(strides, shape, d0, d1) -> int:
    """TensorIterator's should_swap: 1 when dimension d0 is the outer of the two."""
    for st in strides:
        s0, s1 = st[d0], st[d1]
        if s0 == 0 or s1 == 0:
            continue
        if s0 != s1:
            return -1 if s0 < s1 else 1
        if shape[d0] > shape[d1]:
            return 1
    return 0


def like(shape, layout, out_shape):
    """A result in the input's suggested memory format: channels-last or contiguous."""
    return channels_last(out_shape) if suggests_channels_last(shape, layout) else None


def cat_layout(parts, out_shape):
    """``torch.cat``'s result: channels-last only when every input suggests it."""
    return channels_last(out_shape) if all(suggests_channels_last(s, lay) for s, lay in parts) else None


def obeys_layout(shape, layout) -> bool:
    """Whether a gradient of this layout may become the .grad of a contiguous parameter as it is
    (autograd's gradient layout contract); else AccumulateGrad copies it."""
    st, want = _st(shape, layout), contiguous(shape)
    return all(st[d] == want[d] if shape[d] != 1 else st[d] != 0 for d in range(len(shape)))


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
    inplace: bool = False  # an op the generated code writes in place
    layouts: tuple = ()  # per input: its layout (None: contiguous)
    mode: bool = False  # a TorchDispatchMode is active (the oracle): every tensor is subclass-like
    views: tuple = ()  # per input: whether it is a view of another tensor

    def bytes(self, shape, isz: int | None = None) -> int:
        return self.n * math.prod(shape) * (isz or self.isz)

    def full(self, shape) -> tuple:
        return (self.n, *shape)

    def layout(self, i: int = 0):
        return self.layouts[i] if i < len(self.layouts) else None

    def like(self, i: int = 0, shape=None):
        """The result (of ``shape``, default the output's) in input i's suggested memory format."""
        return like(self.full(self.ins[i]), self.layout(i), self.full(self.out if shape is None else shape))

    def elementwise(self, *operands):
        """The layout of an elementwise result of the output's shape; operands are input indices or
        (shape without the batch, layout) pairs; none: every input, in order."""
        pairs = [(self.full(self.ins[o]), self.layout(o)) if isinstance(o, int) else (self.full(o[0]), o[1])
                 for o in (operands or range(len(self.ins)))]
        return iterated(self.full(self.out), pairs)


def k(*allocs) -> tuple:
    """One PyTorch call that allocates these (tag, bytes) or (tag, bytes, layout) tensors; memory
    is measured after it."""
    return ("k", *allocs)


def keep(*tags) -> tuple:
    """Autograd keeps these tensors for backward (training only; in eval they die with the op)."""
    return ("keep", *tags)


def drop(*tags) -> tuple:
    """These tensors die here (Python rebinds or discards them; a node releases what it kept)."""
    return ("drop", *tags)


def ret(tag: str, layout=...) -> tuple:
    """The op's result: a tensor it allocated, or an input (in place); with ``layout``, a view of
    it with these strides. A call with several results has one ``ret`` each."""
    return ("ret", tag, layout)


def grad(i: int, tag: str, how: str = "own", layout=...) -> tuple:
    """The gradient of input i: a tensor the backward allocated (own), the incoming gradient
    itself (pass), a view of it (view, with the view's ``layout``) or a channel slice of it (slice)."""
    return ("grad", i, tag, how, layout)


def done(*tags) -> tuple:
    """An autograd node ends: the gradient it received and what it kept are released (these
    tags; all when none are named), then the gradients given by ``grad`` reach their nodes."""
    return ("done", *tags)


def pgrad(*tags) -> tuple:
    """These allocations become parameter gradients (.grad), kept after backward."""
    return ("pgrad", *tags)


# A backward program may also be a function of the incoming gradient's layout (a list of them, one
# per result, for a call with several; False for a result that got no gradient), for the ops whose
# backward depends on it: views, reshapes, elementwise gradients.


def _mem_new(saves=("x0",), like_input=True):
    """A call with one new result (pooling: in the input's suggested format; scaling: elementwise);
    backward allocates the input's gradient (pooling: in the input's format; scaling: the gradient's)."""
    def rule(m):
        out = m.like(0) if like_input else m.elementwise()
        fwd = (k(("out", m.bytes(m.out), out)), keep(*saves), ret("out"))
        if like_input:
            return fwd, (k(("gx", m.bytes(m.ins[0]), m.like(0, m.ins[0]))), grad(0, "gx"), done())
        return fwd, lambda gs: (k(("gx", m.bytes(m.ins[0]), m.elementwise((m.out, gs)))), grad(0, "gx"), done())
    return rule


def _mem_indexed(m):
    """Max pooling also returns int64 indices (on the CPU even in eval, where they die at once)."""
    out = m.like(0)
    fwd = (k(("out", m.bytes(m.out), out), ("idx", m.bytes(m.out, 8), out)), keep("x0", "idx"), ret("out"))
    return fwd, (k(("gx", m.bytes(m.ins[0]), m.like(0, m.ins[0]))), grad(0, "gx"), done())


def _mem_adaptive_avg(m):
    """Output 1x1 is a mean over H, W, which keeps nothing; other sizes keep the input. Of a
    channels-last map, the mean is restrided in place (``as_strided_``), whose backward first
    makes a zero tensor of the result's size for the gradient, then the mean's backward divides."""
    if tuple(pair(m.attrs["output_size"])) != (1, 1):
        return _mem_new(("x0",))(m)
    fwd, bwd = _mem_new(())(m)
    if m.like(0) is None:
        return fwd, bwd
    return fwd, (k(("z", m.bytes(m.out))), drop("g"), k(("gx", m.bytes(m.ins[0]), m.like(0, m.ins[0]))), drop("z"),
                 grad(0, "gx"), done())


def _input_grad(m, layout=None) -> list:
    return [("gx", m.bytes(m.ins[0]), layout)] if m.needs[0] else []


def _grad0(m, view=...) -> list:
    """The input's gradient ("gx"), or with ``view`` a view of it with that layout (it is then a
    view of a gradient, which autograd never adds to in place)."""
    if not m.needs[0]:
        return []
    return [grad(0, "gx")] if view is ... else [grad(0, "gx", "view", view)]


def _param_tags(m) -> list:
    return [f"p{j}" for j in range(len(m.params))]


def _mem_conv(m):
    """convolution keeps its input (and the weight); one backward call makes every gradient. A
    channels-last input makes the convolution run channels-last: its result and its gradients are
    too, and .grad copies a channels-last weight gradient into the weight's own layout (unless the
    two agree, as for a 1x1 kernel or one input channel per group)."""
    fwd = (k(("out", m.bytes(m.out), m.like(0))), keep("x0"), ret("out"))
    tags = _param_tags(m)
    kh, kw = pair(m.attrs["kernel_size"])
    wshape = (m.attrs["out_channels"], m.ins[0][0] // m.attrs["groups"], kh, kw)
    copy = m.like(0) is not None and not obeys_layout(wshape, channels_last(wshape))
    steps = (k(*_input_grad(m, m.like(0, m.ins[0])), *zip(tags, m.params)), *_grad0(m))
    if not copy:
        return fwd, (*steps, pgrad(*tags), done())
    return fwd, (*steps, pgrad(*tags[1:]), done("g", "x0"), k(("w", m.params[0])), drop("p0"), pgrad("w"))


def _mem_linear(m):
    """addmm (mm without bias) keeps its input; backward, one call each: addmm's input gradient,
    weight gradient and bias gradient (a sum); mm's weight gradient, then input gradient. Over the
    last dimension of a larger tensor: :func:`_mem_linear_nd`."""
    if len(m.ins[0]) != 1:
        return _mem_linear_nd(m)
    fwd = (k(("out", m.bytes(m.out))), keep("x0"), ret("out"))
    tags = _param_tags(m)
    grads = [k(*_input_grad(m, _mm_grad(_st(m.full(m.ins[0]), m.layout(0)), m.n)))] if m.needs[0] else []
    weights = [k((t, b)) for t, b in zip(tags, m.params)]
    steps = grads + weights if len(m.params) > 1 else weights + grads
    return fwd, (*steps, *_grad0(m), pgrad(*tags), done())


def _mm_grad(strides, rows):
    """mm's gradient for its first matrix (rows x C): column-major where that matrix was (torch's
    mm_mat1_backward), else contiguous."""
    return (1, rows) if strides[0] == 1 and strides[1] == rows else None


def _mem_linear_nd(m):
    """at::linear over the last dimension of an N x ... x C tensor. With a bias and a contiguous
    input: addmm on a view of it, as for a flat input. Otherwise matmul: the input folded into rows
    (a view where its strides allow, else a contiguous copy, which autograd keeps instead of it),
    mm, and the bias added in place (out of place under a TorchDispatchMode, which makes every
    tensor subclass-like). Backward reshapes the gradient into rows, a copy where its strides need one."""
    src = m.full(m.ins[0])
    rows, bias = math.prod(src[:-1]), len(m.params) > 1
    addmm = bias and is_contiguous(src, m.layout(0))
    # matmul folds the input into rows, as the weight requires grad (weight.t() does too, a view of
    # it, even under no_grad); a weight that does not would take bmm's path
    target = (rows, src[-1])
    folded = view_strides(src, m.layout(0), target)
    copy = not addmm and folded is None
    gx = _mm_grad(folded or contiguous(target), rows)  # handed on as a view of the input's shape
    out = m.bytes(m.out)
    fwd = [k(("xc", m.bytes(m.ins[0])))] if copy else []
    fwd += [k(("out", out)), keep("xc" if copy else "x0"), *([drop("xc")] if copy else [])]  # matmul's temporary
    if bias and not addmm and m.mode:
        fwd += [k(("sum", out)), drop("out"), ret("sum")]
    else:
        fwd.append(ret("out"))
    tags = _param_tags(m)

    def bwd(gs):
        steps = [k(("p1", m.params[1])), pgrad("p1")] if bias and not addmm else []  # AddBackward0 runs first
        if view_strides(m.full(m.out), gs, (rows, m.out[-1])) is None:
            steps += [k(("g2", out)), drop("g")]
        grads = [k(*_input_grad(m, gx))] if m.needs[0] else []
        if addmm:
            steps += [*grads, k(("p0", m.params[0])), k(("p1", m.params[1]))]
        else:  # mm: the weight's gradient first
            steps += [k(("p0", m.params[0])), *grads]
        return (*steps, *_grad0(m, view_strides(target, gx, src)), pgrad(*(tags if addmm else tags[:1])),
                done("g", "g2", *(["xc"] if copy else ["x0"])))
    return tuple(fwd), bwd


def _mem_bn(m):
    """Training (or no running statistics) normalises with batch statistics and returns them:
    mean and inverse std, C elements each, kept for backward with the input. The result and the
    input's gradient are in the input's suggested format."""
    c = m.ins[0][0]
    out = ("out", m.bytes(m.out), m.like(0))
    if m.train or not m.attrs["track_running_stats"]:
        fwd = (k(out, ("mean", c * m.isz), ("invstd", c * m.isz)), keep("x0", "mean", "invstd"), ret("out"))
    else:
        fwd = (k(out), keep("x0"), ret("out"))
    tags = _param_tags(m)
    bwd = (k(*_input_grad(m, m.like(0, m.ins[0])), *zip(tags, m.params)), *_grad0(m), pgrad(*tags), done())
    return fwd, bwd


def _mem_relu(m):
    """ReLU keeps its result: in place that is its input's storage, so it allocates nothing. Its
    backward kernel reads the result first, so the input's gradient takes the result's layout."""
    if m.inplace:
        fwd, saved = (keep("x0"), ret("x0")), m.layout(0)
    else:
        saved = m.elementwise()
        fwd = (k(("out", m.bytes(m.out), saved)), keep("out"), ret("out"))
    if m.inplace and m.views[0] and m.needs[0]:
        return fwd, _on_view(m)
    return fwd, lambda gs: (k(("gx", m.bytes(m.ins[0]), m.elementwise((m.out, saved), (m.out, gs)))), grad(0, "gx"),
                            done())


def _on_view(m) -> tuple:
    """The backward of an op run in place on a view (layernorm2d's result): the view's node
    (AsStridedBackward) copies the gradient into zeros of the base's size; the base's (CopySlices)
    copies that into a new tensor of the base's size, runs the op's backward on a contiguous clone
    of the view's part, copies the result back and hands the base's gradient on."""
    nb = m.bytes(m.ins[0])
    return (k(("z", nb)), drop("g"), k(("base", nb, m.layout(0))), k(("part", nb)), k(("gx", nb)),
            drop("part", "gx", "z"), grad(0, "base"), done())


def _mem_act(saves="x0", saved_first=False):
    """An elementwise activation keeps its input (``saves="out"``: its result). In place (where the
    generated code writes ``inplace=True``) autograd first keeps a clone of the input, since the
    formula reads the input the op overwrites: the same bytes as out of place. Backward is one call,
    ``<op>_backward(grad, saved)``, whose result takes the gradient's layout (``saved_first``: the
    saved tensor's, leaky_relu's kernel reading it first)."""
    def rule(m):
        nb = m.bytes(m.ins[0])
        if m.inplace:
            if not m.needs[0]:
                return (ret("x0"),), None
            saved = m.elementwise()  # clone() keeps the input's layout
            fwd = (k(("orig", nb, saved)), keep("orig"), ret("x0"))
            if m.views[0]:
                return fwd, _on_view(m)
        else:
            out = m.elementwise()
            saved = out if saves == "out" else m.layout(0)
            fwd = (k(("out", nb, out)), keep("out" if saves == "out" else "x0"), ret("out"))

        def bwd(gs):
            pairs = [(m.out, saved), (m.out, gs)]
            return (k(("gx", nb, m.elementwise(*(pairs if saved_first else pairs[::-1])))), grad(0, "gx"), done())
        return fwd, bwd
    return rule


def _mem_softmax(m):
    """_softmax keeps its result; the result and its backward's are contiguous whatever the input's
    layout (the kernel copies a non-contiguous input internally, which is not a tensor of its own)."""
    nb = m.bytes(m.out)
    return (k(("out", nb)), keep("out"), ret("out")), (k(("gx", nb)), grad(0, "gx"), done())


def _mem_layernorm(m, out_layout=None, rows=None, view=...):
    """native_layer_norm returns its (contiguous) result and the mean and reciprocal std of each
    normalised row, in the input's dtype on the CPU (CUDA keeps float32 for half precision), also
    in eval, where they die at once; autograd keeps the input (a view of it is its storage), the
    mean and the rstd. One backward call makes the input's, the weight's and the bias's gradients."""
    rows = m.n * math.prod(m.ins[0][:-1]) if rows is None else rows
    fwd = (k(("out", m.bytes(m.out), out_layout), ("mean", rows * m.isz), ("rstd", rows * m.isz)),
           keep("x0", "mean", "rstd"), ret("out"))
    tags = _param_tags(m)
    return fwd, (k(*_input_grad(m, out_layout), *zip(tags, m.params)), *_grad0(m, view), pgrad(*tags), done())


def _mem_layernorm2d(m):
    """The generated LayerNorm2d: permute to channels last (a view), layer_norm over the channels,
    permute back (a view of the contiguous N x H x W x C result: a channels-last map). Backward:
    the same views of the gradient around one layer_norm backward call (the input's gradient a
    view too)."""
    _, h, w = m.ins[0]
    cl = channels_last(m.full(m.out))
    fwd, bwd = _mem_layernorm(m, cl, m.n * h * w, view=cl)
    return (*fwd[:-1], ret("out", cl)), bwd


def _mem_groupnorm(m):
    """F.group_norm first makes its input contiguous in the input's suggested memory format, a
    copy of its own where it is not (autograd then keeps the copy, not the input); native_group_norm
    returns its result in that format and the mean and reciprocal std, N x groups each in the
    input's dtype, also in eval. Backward makes the gradient contiguous in that format (a copy
    where it is not), then one call makes all three gradients, in that format."""
    shape, fmt = m.full(m.ins[0]), m.like(0)
    copy = not (is_channels_last(shape, m.layout(0)) if fmt is not None else is_contiguous(shape, m.layout(0)))
    nb, stats = m.bytes(m.ins[0]), m.n * m.attrs["num_groups"] * m.isz
    fwd = (*([k(("xc", nb, fmt))] if copy else []), k(("out", nb, fmt), ("mean", stats), ("rstd", stats)),
           keep("xc" if copy else "x0", "mean", "rstd"), ret("out"))
    tags = _param_tags(m)

    def bwd(gs):  # the formula makes the gradient contiguous in that format first (a copy where it is not)
        copy_g = not (is_channels_last(shape, gs) if fmt is not None else is_contiguous(shape, gs))
        return (*([k(("gc", nb, fmt))] if copy_g else []), k(*_input_grad(m, fmt), *zip(tags, m.params)),
                *([drop("gc")] if copy_g else []), *_grad0(m), pgrad(*tags), done())
    return fwd, bwd


def _mem_dropout(m):
    """Eval (or p=0) returns the input itself. Training on the CPU draws a noise tensor of the
    input's size, dtype and layout and multiplies (CUDA's fused kernel keeps a bool mask instead)."""
    p = m.attrs["p"]
    if not m.train or p == 0:
        return (ret("x0"),), None
    nb = m.bytes(m.ins[0])
    if p == 1:  # x * a 0-dim zero, which decides no layout
        noise, fwd = (), (k(("noise", m.isz)), k(("out", nb, m.elementwise())))
    else:
        noise = ((m.out, m.elementwise()),)
        fwd = (k(("noise", nb, noise[0][1])), k(("out", nb, m.elementwise(0, *noise))))
    return (*fwd, keep("noise"), ret("out")), lambda gs: (k(("gx", nb, m.elementwise((m.out, gs), *noise))),
                                                         grad(0, "gx"), done())


def _mem_reshape(m):
    """reshape and flatten: a view where the input's strides allow one (c10's computeStride), else
    a contiguous copy (clone, then a view of it). Backward reshapes the gradient back: a view where
    its strides allow, else a copy. flatten of a flat input returns the input itself."""
    src, dst = m.full(m.ins[0]), m.full(m.out)
    if m.attrs.get("start_dim") == 1 and len(m.ins[0]) == 1:
        return (ret("x0"),), None
    view = view_strides(src, m.layout(0), dst)

    def bwd(gs):
        back = view_strides(dst, gs, src)
        if back is None:
            return (k(("gx", m.bytes(m.ins[0]))), grad(0, "gx"), done())
        return (grad(0, "g", "view", back), done())
    if view is not None:
        return (ret("x0", view),), bwd
    return (k(("out", m.bytes(m.out))), ret("out")), bwd


def _mem_permute(m):
    """A view with its strides permuted; backward permutes the gradient back (a view of it)."""
    dims = m.attrs["dims"]
    st = _st(m.full(m.ins[0]), m.layout(0))
    back = [dims.index(d) for d in range(len(dims))]

    def bwd(gs):
        gst = _st(m.full(m.out), gs)
        return (grad(0, "g", "view", tuple(gst[d] for d in back)), done())
    return (ret("x0", tuple(st[d] for d in dims)),), bwd


def _mem_channel_shuffle(m):
    """channel_shuffle allocates its result in the input's suggested format and keeps nothing; its
    backward is a channel shuffle of the gradient (in the gradient's format)."""
    nb = m.bytes(m.out)
    return ((k(("out", nb, m.like(0))), ret("out")),
            lambda gs: (k(("gx", nb, like(m.full(m.out), gs, m.full(m.out)))), grad(0, "gx"), done()))


def _mem_stochastic_depth(m):
    """Eval, or p = 0: the input itself. Training: a noise tensor, one value per sample ('row') or
    one for the batch, drawn and scaled in place, then ``x * noise``, which keeps the noise;
    backward: ``g * noise``."""
    if not m.train or m.attrs["p"] == 0:
        return (ret("x0"),), None
    noise = ((m.n if m.attrs["mode"] == "row" else 1, *(1 for _ in m.ins[0])), None)
    nb = m.bytes(m.out)
    fwd = (k(("noise", math.prod(noise[0]) * m.isz)), k(("out", nb, iterated(m.full(m.out), [
        (m.full(m.ins[0]), m.layout(0)), noise]))), keep("noise"), ret("out"))
    return fwd, lambda gs: (k(("gx", nb, iterated(m.full(m.out), [(m.full(m.out), gs), noise]))), grad(0, "gx"),
                            done())


def _mem_parameter(m):
    """``p * x`` (the parameter first, as generated) keeps x for p's gradient; ``x + p`` keeps
    nothing. Backward: x's gradient (``g * p``, or g itself for add) and p's (``g * x``, or g),
    which autograd then sums over the broadcast dimensions, the batch at least (``sum_to``), into
    p's .grad."""
    p = (tuple(m.attrs["shape"]), None)
    nb, pb = m.bytes(m.out), m.params[0]
    if m.attrs["apply"] == "add":
        fwd = (k(("out", nb, iterated(m.full(m.out), [(m.full(m.ins[0]), m.layout(0)), p]))), ret("out"))
        return fwd, (k(("p0", pb)), pgrad("p0"), *([grad(0, "g", "pass")] if m.needs[0] else []), done())
    fwd = (k(("out", nb, iterated(m.full(m.out), [p, (m.full(m.ins[0]), m.layout(0))]))), keep("x0"), ret("out"))

    def bwd(gs):
        g = (m.full(m.out), gs)
        full = [k(("gp", nb, iterated(m.full(m.out), [g, (m.full(m.ins[0]), m.layout(0))])))]
        if m.needs[0]:
            full.append(k(("gx", nb, iterated(m.full(m.out), [g, p]))))
        return (*full, k(("p0", pb)), drop("gp"), pgrad("p0"), *_grad0(m), done())
    return fwd, bwd


def _mem_identity(m):
    return (ret("x0"),), None


def _mem_concat(m):
    """cat keeps nothing; its backward hands each input a slice of the gradient. The result is
    channels-last only when every input suggests it."""
    out = cat_layout([(m.full(s), m.layout(i)) for i, s in enumerate(m.ins)], m.full(m.out))
    fwd = (k(("out", m.bytes(m.out), out)), ret("out"))
    return fwd, (*(grad(i, "g", "slice") for i in range(len(m.ins)) if m.needs[i]), done())


def _mem_add(m):
    """a + b + c is two calls, the first result a temporary; backward passes the gradient itself
    to every input (last input first, as autograd reaches them)."""
    fwd, prev = [], None
    for j in range(1, len(m.ins)):
        tag = "out" if j == len(m.ins) - 1 else f"t{j}"
        fwd.append(k((tag, m.bytes(m.out), m.elementwise(*range(j + 1)))))
        if prev:
            fwd.append(drop(prev))
        prev = tag
    fwd.append(ret("out"))
    order = list(range(len(m.ins) - 1, 1, -1)) + [0, 1]
    return tuple(fwd), (*(grad(i, "g", "pass") for i in order if m.needs[i]), done())


def _mem_mul(m):
    """a * b * c is one call per product, left to right, each keeping what the other operand's
    gradient needs (b for a's, a for b's). Backward runs the last product first: for each operand
    that wants a gradient, ``g * the other`` at the product's (broadcast) size, then, where the
    operand was broadcast, that summed to its own size (autograd's ``sum_to``, after the call)."""
    ops = [(f"x{i}", m.full(s), m.layout(i), m.needs[i]) for i, s in enumerate(m.ins)]
    steps, fwd = [], []  # steps: per product, (left, right, result)
    left = ops[0]
    for j in range(1, len(ops)):
        right = ops[j]
        shape = tuple(max(a, b) for a, b in zip(left[1], right[1]))
        res = ("out" if j == len(ops) - 1 else f"t{j}", shape,
               iterated(shape, [(left[1], left[2]), (right[1], right[2])]), left[3] or right[3])
        fwd += [k((res[0], math.prod(shape) * m.isz, res[2])),
                keep(*([left[0]] if right[3] else []), *([right[0]] if left[3] else []))]
        if left[0].startswith("t"):
            fwd.append(drop(left[0]))
        steps.append((left, right, res))
        left = res
    fwd.append(ret("out"))

    def bwd(gs):
        prog, g = [], ("g", gs)
        for j, (lhs, rhs, res) in reversed(list(enumerate(steps, 1))):
            grads = []
            for side, (op, other) in enumerate(((lhs, rhs), (rhs, lhs))):
                if op[3]:
                    tag = f"g{side}_{j}"
                    prog.append(k((tag, math.prod(res[1]) * m.isz, iterated(res[1], [(res[1], g[1]), other[1:3]]))))
                    grads.append([op, tag, iterated(res[1], [(res[1], g[1]), other[1:3]])])
            for entry in grads:  # sum_to, in the order of the call's results
                op, tag, _ = entry
                if op[1] != res[1]:
                    prog += [k((tag + "s", math.prod(op[1]) * m.isz)), drop(tag)]
                    entry[1], entry[2] = tag + "s", None
            kept = [*([lhs[0]] if rhs[3] else []), *([rhs[0]] if lhs[3] else [])]
            inner = None
            for op, tag, layout in grads:
                if op[0].startswith("x"):
                    prog.append(grad(int(op[0][1:]), tag))
                else:
                    inner = (tag, layout)
            prog.append(done(g[0], *kept))
            if inner is None:
                break
            g = inner
        return tuple(prog)
    return tuple(fwd), bwd


def _mem_split(m):
    """A merge's ``split:`` (``x.chunk`` or ``x.split``): every chunk is a view of the input, all in
    one call (one ``ret`` each). Backward is one autograd node for all of them, run once every
    chunk's gradient has arrived: it concatenates them into a new tensor (a zero tensor standing
    for a chunk that got none)."""
    sizes = _split_sizes(m.attrs, m.ins[0][0])
    src = m.full(m.ins[0])
    st = _st(src, m.layout(0))

    def bwd(gss):
        shapes = [(m.n, c, *m.ins[0][1:]) for c in sizes]
        zeros = [k((f"z{j}", math.prod(s) * m.isz)) for j, (s, gs) in enumerate(zip(shapes, gss)) if gs is False]
        parts = [(s, None if gs is False else gs) for s, gs in zip(shapes, gss)]
        return (*zeros, k(("gx", m.bytes(m.ins[0]), cat_layout(parts, src))), grad(0, "gx"), done())
    return tuple(ret("x0", st) for _ in sizes), bwd


def _mem_lrn(m):
    """F.local_response_norm is composite: x*x, pad, avg_pool3d, *alpha, +k, **beta, x / that.
    Each step is a call with its own result; autograd keeps the padded square, the sum before
    the power, the divisor and the input."""
    b = m.bytes(m.ins[0])
    c, h, w = m.ins[0]
    padded = m.bytes((c + m.attrs["size"] - 1, h, w))
    fwd = (k(("sq", b)), k(("pad", padded)), drop("sq"), k(("pool", b)), keep("pad"), drop("pad"),
           k(("scaled", b)), k(("base", b)), drop("scaled"), k(("div", b)), keep("base"), drop("base", "pool"),
           k(("out", b, m.elementwise())), keep("x0", "div"), drop("div"), ret("out"))
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


def _operand(text: str) -> str:
    """An attribute's source as the right operand of ``*``: a name or a number as it is, any other
    expression in parentheses (``x * (i + 1)``, not ``x * i + 1``)."""
    return text if re.fullmatch(r"-?[\w.]+", text) else f"({text})"


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
    memory=_mem_reshape, doc="flatten all but the batch dimension"))
_register(Op(
    "local_response_norm",
    (Attr("size", "int"), Attr("alpha", "float", 1e-4), Attr("beta", "float", 0.75), Attr("k", "float", 1.0)),
    _lrn_shape, module=_mod("LocalResponseNorm", positional=("size",), inferred=False), layout="map",
    check=_lrn_check, memory=_mem_lrn, flops=lambda i, o, a: (a["size"] + 6) * math.prod(o),
    function=_fn("F.local_response_norm", positional=("size",)), doc="local response normalisation across channels"))
_register(Op("identity", (), _same, module=lambda i, e, op, inplace=True: "nn.Identity()", eval_identity=True,
             function=lambda x, e, op, inplace=True: x, fresh=False, memory=_mem_identity,
             doc="passes its input through"))
_register(Op("scale", (Attr("factor", "float"),), _same, function=lambda x, e, op, inplace=True: f"{x} * {_operand(e['factor'])}",
             memory=_mem_new((), like_input=False), flops=lambda i, o, a: math.prod(o),
             doc="multiplies by a constant (residual scaling in Inception-ResNet)"))
# --- activations, normalisation, layout and stochastic ops (issue 11) --------------------------
# Elementwise ops, norms, layout ops and stochastic depth count 0 MACs (torchvision's _ops).


def _act(name, cls, fn, attrs=(), check=None, doc="", positional=(), fresh=True, in_place=False, flops=1,
         memory=_mem_act()):
    """An elementwise activation: no parameters, a module and a function form. One that can run in
    place does so where emit.in_place_nodes allows it (``inplace=True``, as torchvision writes
    ReLU6, SiLU and Hardswish); its output is then one its backward reads (not ``fresh``). ``flops``:
    its arithmetic per element, a transcendental function (exp, erf, tanh, log1p) counted as one."""
    def module(i, e, op, inplace=True):
        return _mod(cls, inferred=False, positional=positional, extra=("inplace=True",) if inplace else ())(i, e, op)

    def function(x, e, op, inplace=True):
        return _fn(fn, positional=positional, extra=("inplace=True",) if inplace else ())(x, e, op)

    _register(Op(name, attrs, _same, module=module if in_place else _mod(cls, inferred=False, positional=positional),
                 function=function if in_place else _fn(fn, positional=positional), check=check, doc=doc,
                 fresh=fresh and not in_place, in_place=in_place, memory=memory,
                 flops=lambda i, o, a: flops * math.prod(o)))


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


_act("relu6", "ReLU6", "F.relu6", doc="min(max(x, 0), 6) (MobileNet)", in_place=True)  # hardtanh(0, 6)
_act("leaky_relu", "LeakyReLU", "F.leaky_relu", (Attr("negative_slope", "float", 0.01),), positional=("negative_slope",),
     doc="x for x >= 0, negative_slope * x below", memory=_mem_act(saved_first=True))
_act("elu", "ELU", "F.elu", (Attr("alpha", "float", 1.0),), doc="x for x > 0, alpha * (exp(x) - 1) below", flops=3)
_act("gelu", "GELU", "F.gelu", (Attr("approximate", "str", "none", choices=("none", "tanh")),),
     doc="x * Phi(x); approximate='tanh': the tanh approximation", flops=5)
_act("silu", "SiLU", "F.silu", doc="x * sigmoid(x) (swish; EfficientNet)", in_place=True, flops=4)
_act("mish", "Mish", "F.mish", doc="x * tanh(softplus(x))", in_place=True, flops=4)
_act("sigmoid", "Sigmoid", "torch.sigmoid", doc="1 / (1 + exp(-x)) (squeeze-and-excitation gates)", fresh=False,
     flops=3, memory=_mem_act("out"))
_act("tanh", "Tanh", "torch.tanh", doc="hyperbolic tangent", fresh=False,  # their backward reads the output
     memory=_mem_act("out"))
_act("hardswish", "Hardswish", "F.hardswish", doc="x * relu6(x + 3) / 6 (MobileNet v3)", in_place=True, flops=4)
_act("hardsigmoid", "Hardsigmoid", "F.hardsigmoid", doc="relu6(x + 3) / 6 (MobileNet v3 gates)", in_place=True,
     flops=3)
_act("hardtanh", "Hardtanh", "F.hardtanh", (Attr("min_val", "float", -1.0), Attr("max_val", "float", 1.0)),
     check=_hardtanh_check, positional=("min_val", "max_val"), doc="x clipped to [min_val, max_val]", in_place=True)
_register(Op("softmax", (Attr("dim", "int"),), _softmax_shape, module=_mod("Softmax", inferred=False),
             function=_fn("F.softmax"), check=_softmax_check, fresh=False, memory=_mem_softmax,
             flops=lambda i, o, a: 5 * math.prod(o),  # max, subtract, exp, sum, divide
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

def _norm_flops(a) -> int:
    """Per element: the statistics (a sum, a square and a sum of squares), normalising (subtract,
    multiply) and one operation per affine tensor."""
    affine = a.get("elementwise_affine", a.get("affine"))
    return 5 + (1 + a.get("bias", True) if affine else 0)


_register(Op(
    "layernorm", _LN_ATTRS, _same, _ln_tensors(-1), stateful=True, module=_mod("LayerNorm"),
    inferred="normalized_shape", inferred_dim=-1, check=_norm_check("layernorm"),
    on_map="layernorm normalises the last dimension, the width of the feature map {shape}: use layernorm2d "
           "for its channels (or permute((0, 2, 3, 1)) before it)",
    memory=_mem_layernorm, flops=lambda i, o, a: _norm_flops(a) * math.prod(o),
    doc="layer normalisation over the last dimension; normalized_shape comes from the input"))
_register(Op(
    "layernorm2d", _LN_ATTRS, _layernorm2d_shape, _ln_tensors(0), stateful=True, module=_mod("LayerNorm2d", prefix=""),
    inferred="normalized_shape", layout="map", check=_norm_check("layernorm2d"), helper=_LAYERNORM2D,
    memory=_mem_layernorm2d, flops=lambda i, o, a: _norm_flops(a) * math.prod(o),
    doc="layer normalisation over the channels of a C x H x W map (ConvNeXt); a class in the generated file"))
_register(Op(
    "groupnorm", (Attr("num_groups", "int"), Attr("eps", "float", 1e-5), Attr("affine", "bool", True)),
    _groupnorm_shape, _groupnorm_tensors, stateful=True, module=_groupnorm_module, inferred="num_channels",
    check=_norm_check("groupnorm"), memory=_mem_groupnorm, flops=lambda i, o, a: _norm_flops(a) * math.prod(o),
    doc="group normalisation over channels; num_channels comes from the input"))


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
    function=lambda x, e, op, inplace=True: f"{x}.permute({_tuple_args(e['dims'])})", memory=_mem_permute,
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
    memory=_mem_reshape, doc="a new shape for each sample (sizes without the batch; one may be -1)"))


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
    function=_fn("F.channel_shuffle", positional=("groups",)), memory=_mem_channel_shuffle,
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
    memory=_mem_stochastic_depth, doc="drops whole samples in training (ConvNeXt, EfficientNet residuals); a class in the generated file"))


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
    memory=_mem_parameter, flops=lambda i, o, a: math.prod(o),
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
_register(Op("mul", (), _mul_shape, merge=True, memory=_mem_mul, flops=lambda i, o, a: (len(i) - 1) * math.prod(o),
             doc="element-wise product, broadcasting (squeeze-and-excitation)"))
_register(Op("input", (), lambda ins, a: a["shape"], fresh=False, layout="map", doc="the network input"))
_register(Op("split", (Attr("split", "ints"), Attr("index", "int")), _split_shape, internal=True, layout="same",
             fresh=False, memory=_mem_split,
             doc="branch ``index`` of a merge with ``split:``: its chunk of the input's channels (a view)"))

USER_OPS = tuple(name for name, op in OPS.items() if not op.merge and name != "input" and not op.internal)
MERGES = tuple(name for name, op in OPS.items() if op.merge)  # the closed set of merge kinds
