"""PyTorch's spellings of the catalog ops (archspec/ops.py), read back: an nn.Module -> the op and
its attributes (``module_op``), a traced call (``torch.cat``, ``+``, ``F.relu``, ``x.mean``) -> what
it computes (``call_step``). Everything else is outside the catalog and is named as such.

Attributes are normalised as a spec writes them: a square size ``(3, 3)`` is ``3``; every
attribute of the op is filled in (defaults included), so that two instances compare slot by slot.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..ops import OPS
from .ir import OpCall


class Refused(Exception):
    """This module or call is not a catalog op as it stands (the reason is the message)."""


def call(op: str, **given) -> OpCall:
    """The op with every attribute: the given ones, the catalog's defaults for the rest."""
    spec = OPS[op]
    attrs = {}
    for a in spec.attrs:
        value = given.get(a.name, a.default)
        attrs[a.name] = norm(value, a.type)
    return OpCall(op, attrs)


def norm(value, type_: str):
    if isinstance(value, list):
        value = tuple(value)
    if type_ in ("size", "size_or_none") and isinstance(value, tuple) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    if type_ == "size" and isinstance(value, tuple) and len(value) == 1:
        return value[0]
    if type_ == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type_ == "ints" and isinstance(value, int):
        return (value,)
    return value


# --- modules --------------------------------------------------------------------------------------

def _conv(m):
    if m.padding_mode != "zeros":
        raise Refused(f"padding_mode='{m.padding_mode}' (the catalog's conv2d pads with zeros)")
    padding = m.padding
    if isinstance(padding, str):
        padding = _same_padding(m) if padding == "same" else 0
    return call("conv2d", out_channels=m.out_channels, kernel_size=m.kernel_size, stride=m.stride, padding=padding,
                dilation=m.dilation, groups=m.groups, bias=m.bias is not None)


def _same_padding(m):
    pads = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation)]
    if any(p % 2 for p in pads) or any(s != 1 for s in m.stride):
        raise Refused("padding='same' that pads one side more than the other")
    return tuple(p // 2 for p in pads)


def _bn(m):
    if m.momentum is None:
        raise Refused("momentum=None (a cumulative moving average; the catalog's batchnorm2d has a momentum)")
    return call("batchnorm2d", eps=m.eps, momentum=m.momentum, affine=m.affine,
                track_running_stats=m.track_running_stats)


def _pool(op, m):
    if getattr(m, "return_indices", False) or getattr(m, "divisor_override", None) is not None:
        raise Refused("return_indices or divisor_override")
    given = {"kernel_size": m.kernel_size, "stride": m.stride or None, "padding": m.padding, "ceil_mode": m.ceil_mode}
    if op == "maxpool2d":
        given["dilation"] = m.dilation
    else:
        given["count_include_pad"] = m.count_include_pad
    return call(op, **given)


def _adaptive(op, size):
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    if any(s is None for s in sizes):
        raise Refused("an output size of None (keep the input's size)")
    return call(op, output_size=size)


def _flatten_mod(m):
    if (m.start_dim, m.end_dim) != (1, -1):
        raise Refused(f"Flatten({m.start_dim}, {m.end_dim}) (the catalog's flatten keeps the batch dimension only)")
    return call("flatten")


def _layernorm(op, m):
    if len(m.normalized_shape) != 1:
        raise Refused(f"normalized_shape {tuple(m.normalized_shape)} over more than one dimension")
    return call(op, eps=m.eps, elementwise_affine=m.elementwise_affine,
                bias=getattr(m, "bias", None) is not None or not m.elementwise_affine)


def _softmax(m):
    if m.dim is None:
        raise Refused("Softmax without dim")
    return call("softmax", dim=m.dim)


def _bn_act(m):
    """timm's BatchNormAct2d: a BatchNorm2d (its tensors its own: bn.weight) that applies its
    activation itself. The spec writes the batchnorm2d module, then the activation as a function
    (``module_after``)."""
    import torch.nn as nn

    if not isinstance(m.drop, nn.Identity):
        raise Refused(f"BatchNormAct2d with a drop layer ({type(m.drop).__name__})")
    return _bn(m)


# nn classes by name (exact type: a subclass may compute something else) -> the op.
_TORCH_MODULES = {
    "Conv2d": _conv, "BatchNorm2d": _bn, "Linear": lambda m: call("linear", out_features=m.out_features,
                                                                  bias=m.bias is not None),
    "ReLU": lambda m: call("relu"), "ReLU6": lambda m: call("relu6"), "SiLU": lambda m: call("silu"),
    "Mish": lambda m: call("mish"), "Sigmoid": lambda m: call("sigmoid"), "Tanh": lambda m: call("tanh"),
    "Hardswish": lambda m: call("hardswish"), "Hardsigmoid": lambda m: call("hardsigmoid"),
    "GELU": lambda m: call("gelu", approximate=m.approximate),
    "LeakyReLU": lambda m: call("leaky_relu", negative_slope=m.negative_slope),
    "ELU": lambda m: call("elu", alpha=m.alpha),
    "Hardtanh": lambda m: call("hardtanh", min_val=m.min_val, max_val=m.max_val),
    "MaxPool2d": lambda m: _pool("maxpool2d", m), "AvgPool2d": lambda m: _pool("avgpool2d", m),
    "AdaptiveAvgPool2d": lambda m: _adaptive("adaptive_avgpool2d", m.output_size),
    "AdaptiveMaxPool2d": lambda m: _adaptive("adaptive_maxpool2d", m.output_size),
    "Dropout": lambda m: call("dropout", p=m.p), "Flatten": _flatten_mod, "Identity": lambda m: call("identity"),
    "LocalResponseNorm": lambda m: call("local_response_norm", size=m.size, alpha=m.alpha, beta=m.beta, k=m.k),
    "Softmax": _softmax, "LayerNorm": lambda m: _layernorm("layernorm", m),
    "GroupNorm": lambda m: call("groupnorm", num_groups=m.num_groups, eps=m.eps, affine=m.affine),
    "ChannelShuffle": lambda m: call("channel_shuffle", groups=m.groups),
}

# Classes outside torch.nn that are catalog ops, known by name and the attributes they keep:
# torchvision's (and timm's, and archspec's generated files') LayerNorm2d, Permute, StochasticDepth.
_NAMED_MODULES = {
    "LayerNorm2d": (("normalized_shape", "eps"), lambda m: _layernorm("layernorm2d", m)),
    "Permute": (("dims",), lambda m: call("permute", dims=tuple(m.dims))),
    "StochasticDepth": (("p", "mode"), lambda m: call("stochastic_depth", p=m.p, mode=m.mode)),
    "BatchNormAct2d": (("act", "drop", "eps", "running_mean"), _bn_act),
}


def module_after(m) -> list:
    """Ops a module applies after its own, as functions (BatchNormAct2d's activation)."""
    if type(m).__name__ != "BatchNormAct2d" or type(m.act).__name__ == "Identity":
        return []
    op = module_op(m.act)
    if op is None or OPS[op.op].function is None or any(True for _ in m.act.parameters()):
        raise Refused(f"BatchNormAct2d with the activation {type(m.act).__name__}")
    return [op]


def module_op(m) -> OpCall | None:
    """The op an nn.Module is, or None when it is not one (a block to trace); raises Refused for an
    nn class outside the catalog or with settings the catalog's op does not have."""
    cls = type(m)
    name = cls.__name__
    if cls.__module__.startswith("torch.nn.") and name in _TORCH_MODULES:
        return _TORCH_MODULES[name](m)
    if name in _NAMED_MODULES and all(hasattr(m, a) for a in _NAMED_MODULES[name][0]):
        return _NAMED_MODULES[name][1](m)
    if cls.__module__.startswith("torch.nn.") and name not in ("Sequential", "Module", "ModuleList", "ModuleDict"):
        raise Refused(f"nn.{name} is not in the op catalog (archspec/ops.py)")
    return None


# --- traced calls ---------------------------------------------------------------------------------

@dataclass
class Step:
    """What one traced call computes. ``kind``: ``op`` (``ops`` applied to ``tensor``), ``pass``
    (``tensor`` itself), ``merge`` (``merge`` of ``inputs``), ``chunk`` (``tensor`` cut into
    ``split``), ``piece`` (chunk ``index`` of ``tensor``), ``param`` (the module's parameter
    ``name`` applied to ``tensor``), ``listed`` (the concatenation of the list ``tensor``, known as
    one tensor: ``Context.listed``), ``meta`` (a size, not a tensor)."""

    kind: str
    tensor: object = None
    ops: list = field(default_factory=list)
    inputs: list = field(default_factory=list)
    merge: str = ""
    split: object = None
    index: int = 0
    name: str = ""


class Context:
    """What a call handler may ask about its arguments (answered by trace.py from the fx graph)."""

    def kind(self, arg) -> str:  # "tensor", "chunk", "meta", "param" or "const"
        raise NotImplementedError

    def is_batch(self, arg) -> bool:  # the batch size of a tensor: x.size(0), x.shape[0]
        raise NotImplementedError

    def param(self, arg):  # (attribute name, tensor) of a get_attr argument
        raise NotImplementedError

    def listed(self, arg) -> bool:  # torch.cat(arg, 1) is a value known as one tensor (DenseNet)
        raise NotImplementedError


def _bind(args, kwargs, names: tuple, what: str) -> dict:
    """Arguments by name; ``names`` entries ``"x=default"`` have a default."""
    out = {}
    for i, spec in enumerate(names):
        name, _, default = spec.partition("=")
        if i < len(args):
            out[name] = args[i]
        elif name in kwargs:
            out[name] = kwargs[name]
        elif default:
            out[name] = ast.literal_eval(default)
        else:
            raise Refused(f"{what} without its argument '{name}'")
    return out


def _unary(op, names=(), attrs=lambda b: {}):
    def handle(b, ctx):
        return Step("op", b["input"], [call(op, **attrs(b))])
    return ("input",) + tuple(names), handle


def _same(b: dict, *names) -> dict:
    return {n: b[n] for n in names}


def _max_pool(b, ctx):
    if b["return_indices"]:
        raise Refused("max_pool2d with return_indices")
    return Step("op", b["input"], [call("maxpool2d", **_same(b, "kernel_size", "padding", "dilation", "ceil_mode"),
                                        stride=b["stride"] or None)])


def _avg_pool(b, ctx):
    if b["divisor_override"] is not None:
        raise Refused("avg_pool2d with divisor_override")
    return Step("op", b["input"], [call("avgpool2d", **_same(b, "kernel_size", "padding", "ceil_mode",
                                                                 "count_include_pad"), stride=b["stride"] or None)])


def _dropout(b, ctx):
    if not b["training"]:  # F.dropout(x, p, training=False) computes nothing
        return Step("pass", b["input"])
    return Step("op", b["input"], [call("dropout", p=b["p"])])


def _stochastic_depth(b, ctx):
    if not b["training"]:
        return Step("pass", b["input"])
    return Step("op", b["input"], [call("stochastic_depth", p=b["p"], mode=b["mode"])])


def _flatten(b, ctx):
    if (b["start_dim"], b["end_dim"]) != (1, -1):
        raise Refused(f"flatten({b['start_dim']}, {b['end_dim']}) (the catalog's flatten keeps the batch dimension only)")
    return Step("op", b["input"], [call("flatten")])


def _softmax_fn(b, ctx):
    if b["dim"] is None or b["dtype"] is not None:
        raise Refused("softmax without dim, or with a dtype")
    return Step("op", b["input"], [call("softmax", dim=b["dim"])])


def _cat(b, ctx):
    if b["dim"] == 1 and ctx.listed(b["tensors"]):  # DenseNet's features: x = cat([x, layer(x)]) each time
        return Step("listed", b["tensors"])
    if not isinstance(b["tensors"], (list, tuple)):  # a list passed in, used otherwise too
        raise Refused("cat of a list of tensors passed in, not written out (a spec's merges name their branches)")
    tensors = list(b["tensors"])
    if b["dim"] != 1:
        raise Refused(f"cat along dim {b['dim']} (a concat merge joins channels, dim 1)")
    if any(ctx.kind(t) != "tensor" for t in tensors):
        raise Refused("cat of something that is not a tensor of this module")
    return Step("merge", inputs=tensors, merge="concat")


def _arith(kind):
    def handle(b, ctx):
        a, other = b["input"], b["other"]
        if b.get("alpha", 1) != 1:
            raise Refused("add with alpha")
        kinds = (ctx.kind(a), ctx.kind(other))
        if kinds == ("tensor", "tensor"):
            return Step("merge", inputs=[a, other], merge=kind)
        if "param" in kinds:
            p, x = (a, other) if kinds[0] == "param" else (other, a)
            if ctx.kind(x) != "tensor":
                raise Refused(f"{kind} of a parameter and something that is not a tensor")
            return Step("param", x, name=p, merge=kind)
        if kind == "mul" and sorted(kinds) == ["const", "tensor"]:
            x, f = (a, other) if kinds[0] == "tensor" else (other, a)
            if isinstance(f, (int, float)) and not isinstance(f, bool):
                return Step("op", x, [call("scale", factor=float(f))])
        raise Refused(f"{'+' if kind == 'add' else '*'} with a constant (the catalog has no such op)")
    return ("input", "other", "alpha=1"), handle


def _chunk(b, ctx):
    if b["dim"] != 1:
        raise Refused(f"chunk along dim {b['dim']} (a split cuts channels, dim 1)")
    return Step("chunk", b["input"], split=b["chunks"])


def _split(b, ctx):
    if b["dim"] != 1:
        raise Refused(f"split along dim {b['dim']} (a split cuts channels, dim 1)")
    if not isinstance(b["size"], (list, tuple)):
        raise Refused("split into chunks of a given size (chunk(n) or a list of sizes is a merge's split:)")
    return Step("chunk", b["input"], split=tuple(b["size"]))


def _getitem(b, ctx):
    obj, index = b["input"], b["index"]
    kind = ctx.kind(obj)
    if kind == "chunk" and isinstance(index, int):
        return Step("piece", obj, index=index)
    if kind == "meta":
        return Step("meta")
    raise Refused("indexing a tensor")


def _getattr(b, ctx):
    if b["name"] in ("shape", "ndim", "dtype", "device") and ctx.kind(b["input"]) == "tensor":
        return Step("meta")
    raise Refused(f"the attribute '{b['name']}' of a value")


def _mean(b, ctx):
    dims = b["dim"] if isinstance(b["dim"], (tuple, list)) else (b["dim"],)
    if sorted(d % 4 for d in dims) != [2, 3]:
        raise Refused(f"mean over dims {tuple(dims)} (only the global average over H and W is a catalog op)")
    ops = [call("adaptive_avgpool2d", output_size=1)] + ([] if b["keepdim"] else [call("flatten")])
    return Step("op", b["input"], ops)


def _shape_args(args) -> list:
    rest = list(args)
    return list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest


def _view(args, kwargs, ctx):
    x, sizes = args[0], _shape_args(args[1:])
    if not sizes or not ctx.is_batch(sizes[0]) or any(ctx.kind(s) != "const" for s in sizes[1:]):
        raise Refused("view/reshape to sizes computed from the input's shape (only x.view(x.size(0), ...) with "
                      "constant sizes is a catalog op)")
    rest = tuple(sizes[1:])
    if rest == (-1,):
        return Step("op", x, [call("flatten")])
    return Step("op", x, [call("reshape", shape=rest)])


def _permute(args, kwargs, ctx):
    dims = _shape_args(args[1:]) if len(args) > 1 else list(kwargs.get("dims", ()))
    return Step("op", args[0], [call("permute", dims=tuple(dims))])


_ACT = {"relu": "relu", "relu_": "relu", "relu6": "relu6", "silu": "silu", "mish": "mish", "hardswish": "hardswish",
        "hardsigmoid": "hardsigmoid", "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}

# Traced functions by "module.name" (F.: torch.nn.functional and torch._C._nn; torch.: the torch
# namespace) -> (parameter names, handler).
FUNCTIONS = {
    **{f"F.{n}": _unary(op, ("inplace=False",)) for n, op in _ACT.items()},
    **{f"torch.{n}": _unary(op) for n, op in _ACT.items()},
    "F.gelu": _unary("gelu", ("approximate='none'",), lambda b: _same(b, "approximate")),
    "F.hardtanh": _unary("hardtanh", ("min_val=-1.0", "max_val=1.0", "inplace=False"),
                         lambda b: _same(b, "min_val", "max_val")),
    "F.leaky_relu": _unary("leaky_relu", ("negative_slope=0.01", "inplace=False"), lambda b: _same(b, "negative_slope")),
    "F.elu": _unary("elu", ("alpha=1.0", "inplace=False"), lambda b: _same(b, "alpha")),
    "F.softmax": (("input", "dim=None", "_stacklevel=3", "dtype=None"), _softmax_fn),
    "F.max_pool2d": (("input", "kernel_size", "stride=None", "padding=0", "dilation=1", "ceil_mode=False",
                      "return_indices=False"), _max_pool),
    "F.avg_pool2d": (("input", "kernel_size", "stride=None", "padding=0", "ceil_mode=False", "count_include_pad=True",
                      "divisor_override=None"), _avg_pool),
    "F.adaptive_avg_pool2d": (("input", "output_size"),
                              lambda b, c: Step("op", b["input"], [_adaptive("adaptive_avgpool2d", b["output_size"])])),
    "F.adaptive_max_pool2d": (("input", "output_size", "return_indices=False"),
                              lambda b, c: Step("op", b["input"], [_adaptive("adaptive_maxpool2d", b["output_size"])])),
    "F.local_response_norm": _unary("local_response_norm", ("size", "alpha=0.0001", "beta=0.75", "k=1.0"),
                                    lambda b: _same(b, "size", "alpha", "beta", "k")),
    "F.dropout": (("input", "p=0.5", "training=True", "inplace=False"), _dropout),
    "F.channel_shuffle": _unary("channel_shuffle", ("groups",), lambda b: _same(b, "groups")),
    "torch.channel_shuffle": _unary("channel_shuffle", ("groups",), lambda b: _same(b, "groups")),
    "torch.flatten": (("input", "start_dim=0", "end_dim=-1"), _flatten),
    "torch.cat": (("tensors", "dim=0"), _cat), "torch.concat": (("tensors", "dim=0"), _cat),
    "torch.concatenate": (("tensors", "dim=0"), _cat),
    "operator.add": _arith("add"), "operator.iadd": _arith("add"), "torch.add": _arith("add"),
    "operator.mul": _arith("mul"), "operator.imul": _arith("mul"), "torch.mul": _arith("mul"),
    "torch.chunk": (("input", "chunks", "dim=0"), _chunk), "torch.split": (("input", "size", "dim=0"), _split),
    "operator.getitem": (("input", "index"), _getitem), "getattr": (("input", "name"), _getattr),
    # Python functions of torchvision that fx would trace into, kept whole (trace.py wraps them).
    "torchvision.models.shufflenetv2.channel_shuffle": _unary("channel_shuffle", ("groups",),
                                                              lambda b: _same(b, "groups")),
    "torchvision.ops.stochastic_depth.stochastic_depth": (("input", "p", "mode", "training=True"), _stochastic_depth),
}

# Tensor methods: name -> (parameter names after self, handler); or a handler of (args, kwargs, ctx).
METHODS = {
    **{n: _unary(op) for n, op in _ACT.items()},
    "flatten": (("input", "start_dim=0", "end_dim=-1"), _flatten),
    "mean": (("input", "dim", "keepdim=False", "dtype=None"), _mean),
    "softmax": (("input", "dim=None", "_stacklevel=3", "dtype=None"), _softmax_fn),
    "chunk": (("input", "chunks", "dim=0"), _chunk), "split": (("input", "size", "dim=0"), _split),
    "add": _arith("add"), "add_": _arith("add"), "mul": _arith("mul"), "mul_": _arith("mul"),
    "contiguous": (("input",), lambda b, c: Step("pass", b["input"])),
    "size": (("input", "dim=None"), lambda b, c: Step("meta")), "dim": (("input",), lambda b, c: Step("meta")),
    "view": _view, "reshape": _view, "permute": _permute,
}

WRAPPED = ("torchvision.models.shufflenetv2.channel_shuffle", "torchvision.ops.stochastic_depth.stochastic_depth")


def function_key(target) -> str:
    """``F.relu``, ``torch.cat``, ``operator.add``: the key of a traced function in FUNCTIONS."""
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", repr(target))
    if module in ("torch.nn.functional", "torch._C._nn"):
        return f"F.{name}"
    if module in ("torch", "torch._C._VariableFunctions", "torch.functional", "torch._C"):
        return f"torch.{name}"
    if module in ("_operator", "operator"):
        return f"operator.{name}"
    if module == "builtins":
        return name
    return f"{module}.{name}"


def call_step(kind: str, target, args, kwargs, ctx: Context) -> Step:
    """What a traced call_function (``kind`` "function") or call_method computes; raises Refused."""
    if kind == "function":
        key = function_key(target)
        entry = FUNCTIONS.get(key)
        what = key
    else:
        entry = METHODS.get(target)
        what = f"Tensor.{target}"
    if entry is None:
        raise Refused(f"{what} is not in the op catalog (archspec/ops.py)")
    if callable(entry):
        return entry(args, kwargs, ctx)
    names, handle = entry
    return handle(_bind(args, kwargs, names, what), ctx)
