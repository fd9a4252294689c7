"""Values and ops as a person writes them in a spec (``maxpool2d(3, stride=2, ceil_mode=true)``,
``conv2d 5x5/2``), for diff's changes and draw's boxes."""
from __future__ import annotations

from .ops import OPS, REQUIRED

# How attributes are named in a change, and which ones change together.
ATTR_NAMES = {"kernel_size": "kernel", "out_channels": "channels", "out_features": "features",
              "output_size": "output size", "p": "rate"}
GEOMETRY = ("kernel_size", "padding", "dilation")
_SQUARE = ("kernel_size", "output_size")  # shown as HxW even when square
CHANNELS = ("out_channels", "out_features")
POOLS = {"maxpool2d": "max", "avgpool2d": "avg", "adaptive_maxpool2d": "adaptive max",
         "adaptive_avgpool2d": "adaptive avg"}


def value_text(value, name: str = "") -> str:
    """A value as a spec writes it: true, none, 3x3 (a square attribute), (1, 2)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, tuple):
        if len(value) == 2 and name in _SQUARE + GEOMETRY + ("stride",):
            return f"{value[0]}x{value[1]}"
        return "(" + ", ".join(value_text(v) for v in value) + ")"
    if isinstance(value, int) and name in _SQUARE:
        return f"{value}x{value}"
    return repr(value) if isinstance(value, float) else str(value)


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
            args.append(value_text(value))
            continue
        positional = False
        if a.default is REQUIRED or value != a.default:
            args.append(f"{a.name}={value_text(value)}")
    return f"{op}({', '.join(args)})" if args else op


def short_op(op: str, attrs: dict) -> str:
    """A channel-free description used to group the same change at several places: ``conv2d 5x5/2``."""
    if op in ("conv2d", "maxpool2d", "avgpool2d"):
        k = value_text(attrs["kernel_size"], "kernel_size")
        stride = attrs.get("stride")
        text = f"{op} {k}" + (f"/{value_text(stride)}" if stride not in (None, 1, attrs["kernel_size"]) else "")
        extra = [f"{n}={value_text(attrs[n])}" for n in ("dilation", "groups") if attrs.get(n, 1) != 1]
        return text + (f" ({', '.join(extra)})" if extra else "")
    if op.startswith("adaptive"):
        return f"{op} {value_text(attrs['output_size'], 'output_size')}"
    return call_text(op, attrs, drop=CHANNELS)


def runs(texts: list) -> list:
    """['a', 'a', 'b'] -> ['2 x a', 'b']."""
    out = []
    for t in texts:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return [t if n == 1 else f"{n} x {t}" for t, n in out]
