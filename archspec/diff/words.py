"""diff, words: values and ops as a person writes them (``maxpool2d(3, stride=2, ceil_mode=true)``,
``conv2d 5x5/2``), shared by the walk, the changes and the report."""
from __future__ import annotations

from ..ops import OPS, REQUIRED
from ..report import batched  # noqa: F401 - shared with the differ

# How attributes are named in a change, and which ones change together.
_ATTR_NAMES = {"kernel_size": "kernel", "out_channels": "channels", "out_features": "features",
               "output_size": "output size", "p": "rate"}
_GEOMETRY = ("kernel_size", "padding", "dilation")
_SQUARE = ("kernel_size", "output_size")  # shown as HxW even when square
_CHANNELS = ("out_channels", "out_features")
_POOLS = {"maxpool2d": "max", "avgpool2d": "avg", "adaptive_maxpool2d": "adaptive max",
          "adaptive_avgpool2d": "adaptive avg"}
_KINDS = ("changed", "replaced", "removed", "added", "renamed")


def _fmt(value, name: str = "") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        if len(value) == 2 and name in _SQUARE + _GEOMETRY + ("stride",):
            return f"{value[0]}x{value[1]}"
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    if isinstance(value, int) and name in _SQUARE:
        return f"{value}x{value}"
    return repr(value) if isinstance(value, float) else str(value)


def _shape_text(shape) -> str:
    return str(batched(shape)) if shape is not None else "--"


def _n(v: int) -> str:
    return f"{v:,}"


def _signed(v: int) -> str:
    return f"{v:+,}" if v else "0"


def call_text(op: str, attrs: dict, drop=()) -> str:
    """An op call in the spec's own syntax, defaults left out: ``maxpool2d(3, stride=2, ceil_mode=true)``."""
    spec = OPS[op]
    args, positional = [], True
    for a in spec.attrs:
        if a.name in drop or a.name not in attrs:
            if a.name in drop:
                positional = False
            continue
        value = attrs[a.name]
        if a.default is REQUIRED and positional:
            args.append(_fmt(value))
            continue
        positional = False
        if a.default is REQUIRED or value != a.default:
            args.append(f"{a.name}={_fmt(value)}")
    return f"{op}({', '.join(args)})" if args else op


def short_op(op: str, attrs: dict) -> str:
    """A channel-free description used to group the same change at several places: ``conv2d 5x5/2``."""
    if op in ("conv2d", "maxpool2d", "avgpool2d"):
        k = _fmt(attrs["kernel_size"], "kernel_size")
        stride = attrs.get("stride")
        text = f"{op} {k}" + (f"/{_fmt(stride)}" if stride not in (None, 1, attrs["kernel_size"]) else "")
        extra = [f"{n}={_fmt(attrs[n])}" for n in ("dilation", "groups") if attrs.get(n, 1) != 1]
        return text + (f" ({', '.join(extra)})" if extra else "")
    if op.startswith("adaptive"):
        return f"{op} {_fmt(attrs['output_size'], 'output_size')}"
    return call_text(op, attrs, drop=_CHANNELS)


def _runs(texts: list) -> list:
    """['a', 'a', 'b'] -> ['2 x a', 'b']."""
    out = []
    for t in texts:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return [t if n == 1 else f"{n} x {t}" for t, n in out]
