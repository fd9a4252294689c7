"""The op catalog: every primitive op declared once.

An entry gives the op's typed attributes, its shape rule, its parameter and buffer counts, its
MACs, its receptive-field step, and how it is written in PyTorch (as a module and as a function).
Analysis, code generation and diff all dispatch through ``OPS``; adding an op touches only this file.

Shapes exclude the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` after flatten.
MACs follow torchvision's ``_ops`` convention: multiply-adds of conv and linear layers, batch 1,
bias not counted. Every other op declares ``macs=None``-free zero on purpose (``counted=False``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from .text import dims

REQUIRED = object()


class OpShapeError(Exception):
    """Raised by a shape rule; the caller adds the location and the node."""


@dataclass(frozen=True)
class Attr:
    name: str
    type: str  # int, float, bool, size, number, size_or_none
    default: object = REQUIRED
    torch_name: str | None = None  # keyword in the PyTorch call if it differs


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
    doc: str = ""

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
    if len(shape) != 1:
        raise OpShapeError(f"linear needs a flat input, got {_fmt(shape)}; add flatten before it")
    if a["out_features"] < 1:
        raise OpShapeError(f"linear out_features must be positive, got {a['out_features']}")
    return (a["out_features"],)


def _dropout_shape(ins, a):
    if not 0.0 <= a["p"] <= 1.0:
        raise OpShapeError(f"dropout probability must be between 0 and 1, got {a['p']}")
    return ins[0]


def _concat_shape(ins, a):
    first = ins[0]
    if any(len(s) != len(first) for s in ins):
        raise OpShapeError("concat inputs have different ranks: " + ", ".join(_fmt(s) for s in ins))
    if len(first) == 3:
        sizes = {tuple(s[1:]) for s in ins}
        if len(sizes) > 1:
            raise OpShapeError("spatial sizes differ")
        return (sum(s[0] for s in ins), *first[1:])
    return (sum(s[0] for s in ins),)


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
    out = [("weight", (a["out_features"], s[0]), False)]
    if a["bias"]:
        out.append(("bias", (a["out_features"],), False))
    return out


def _linear_macs(i, o, a):
    return i[0] * o[0]


def _spatial_attrs(a):
    k = pair(a["kernel_size"])
    s = pair(a["stride"] if a.get("stride") is not None else a["kernel_size"])
    d = pair(a.get("dilation", 1))
    return k, s, d


# --- rendering --------------------------------------------------------------------------------

def _kw(op: Op, exprs: dict, skip=(), positional=()) -> list[str]:
    """Arguments for the PyTorch call: positional ones first, then keywords that differ from defaults."""
    out = [exprs[name] for name in positional if name in exprs]
    for attr in op.attrs:
        if attr.name in skip or attr.name in positional or attr.name not in exprs:
            continue
        out.append(f"{attr.torch_name or attr.name}={exprs[attr.name]}")
    return out


def _mod(cls, positional=(), inferred=True, extra=()):
    def render(in_expr, exprs, op, inplace=True):
        args = ([in_expr] if inferred else []) + _kw(op, exprs, positional=positional) + list(extra)
        return f"nn.{cls}({', '.join(args)})"
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
    spatial=_spatial_attrs, module=_mod("Conv2d", positional=("out_channels",)),
    inferred="in_channels", out_attr="out_channels",
    doc="2-D convolution; in_channels comes from the input"))
_register(Op(
    "batchnorm2d",
    (Attr("eps", "float", 1e-5), Attr("momentum", "float", 0.1), Attr("affine", "bool", True),
     Attr("track_running_stats", "bool", True)),
    _bn_shape, _bn_tensors, stateful=True, module=_mod("BatchNorm2d"), inferred="num_features",
    doc="batch normalisation over channels; num_features comes from the input"))
_register(Op("relu", (), _same, module=lambda i, e, op, inplace=True: "nn.ReLU(inplace=True)" if inplace else "nn.ReLU()",
             function=lambda x, e, op, inplace=True: f"F.relu({x}, inplace=True)" if inplace else f"F.relu({x})",
             in_place=True, fresh=False,  # relu's backward reads its output
             doc="rectified linear unit (in place where the input is not shared)"))
_register(Op(
    "maxpool2d", (*_POOL_ATTRS, Attr("dilation", "size", 1), Attr("ceil_mode", "bool", False)),
    _pool_shape("maxpool2d"), spatial=_spatial_attrs,
    module=_mod("MaxPool2d", positional=("kernel_size",), inferred=False),
    function=_fn("F.max_pool2d", positional=("kernel_size",)), doc="max pooling (pads with -inf)"))
_register(Op(
    "avgpool2d", (*_POOL_ATTRS, Attr("ceil_mode", "bool", False), Attr("count_include_pad", "bool", True)),
    _pool_shape("avgpool2d"), spatial=_spatial_attrs,
    module=_mod("AvgPool2d", positional=("kernel_size",), inferred=False),
    function=_fn("F.avg_pool2d", positional=("kernel_size",)), doc="average pooling"))
_register(Op(
    "adaptive_avgpool2d", (Attr("output_size", "size"),), _adaptive_shape,
    module=_mod("AdaptiveAvgPool2d", positional=("output_size",), inferred=False),
    function=_fn("F.adaptive_avg_pool2d", positional=("output_size",)), doc="adaptive average pooling"))
_register(Op(
    "adaptive_maxpool2d", (Attr("output_size", "size"),), _adaptive_shape,
    module=_mod("AdaptiveMaxPool2d", positional=("output_size",), inferred=False),
    function=_fn("F.adaptive_max_pool2d", positional=("output_size",)), doc="adaptive max pooling"))
_register(Op(
    "linear", (Attr("out_features", "int"), Attr("bias", "bool", True)), _linear_shape, _linear_tensors,
    macs=_linear_macs, counted=True, weight_layer=True, stateful=True,
    module=_mod("Linear", positional=("out_features",)), inferred="in_features", out_attr="out_features",
    doc="fully connected layer; in_features comes from the input"))
_register(Op(
    "dropout", (Attr("p", "float", 0.5),), _dropout_shape, stateful=True,
    module=_mod("Dropout", inferred=False, positional=("p",)), fresh=False,  # the input itself in eval
    doc="dropout (active in training only)"))
_register(Op(
    "flatten", (Attr("start_dim", "int", 1),), _flatten_shape,
    module=lambda i, e, op, inplace=True: "nn.Flatten(1)", function=lambda x, e, op, inplace=True: f"torch.flatten({x}, 1)",
    opaque_out=True, fresh=False,  # a view of its input
    doc="flatten all but the batch dimension"))
_register(Op(
    "local_response_norm",
    (Attr("size", "int"), Attr("alpha", "float", 1e-4), Attr("beta", "float", 0.75), Attr("k", "float", 1.0)),
    _lrn_shape, module=_mod("LocalResponseNorm", positional=("size",), inferred=False),
    function=_fn("F.local_response_norm", positional=("size",)), doc="local response normalisation across channels"))
_register(Op("identity", (), _same, module=lambda i, e, op, inplace=True: "nn.Identity()",
             function=lambda x, e, op, inplace=True: x, fresh=False,
             doc="passes its input through"))
_register(Op("scale", (Attr("factor", "float"),), _same, function=lambda x, e, op, inplace=True: f"{x} * {e['factor']}",
             doc="multiplies by a constant (residual scaling in Inception-ResNet)"))
_register(Op("concat", (), _concat_shape, merge=True, doc="concatenation along channels"))
_register(Op("add", (), _add_shape, merge=True, doc="element-wise sum"))
_register(Op("input", (), lambda ins, a: a["shape"], fresh=False, doc="the network input"))

USER_OPS = tuple(name for name, op in OPS.items() if not op.merge and name != "input")
