"""Numbers and shapes as people read them, for every report, message and comment archspec writes.

>>> dims((64, 56, 56)), batched((1000,)), shape_comment((64, 56, 56)), number(13004888), signed(-352)
('64x56x56', [1, 1000], 'N x 64 x 56 x 56', '13,004,888', '-352')
"""
from __future__ import annotations


def dims(shape, sep: str = "x", unknown: str = "?") -> str:
    """A shape as people write it: 64x56x56 (``unknown`` when there is none)."""
    if shape is None:
        return unknown
    return sep.join(str(d) for d in shape)


def batched(shape) -> list | None:
    """A shape with the batch dimension (batch 1), as torch prints it; None when unknown."""
    return [1, *shape] if shape is not None else None


def batched_text(shape) -> str:
    """``[1, 64, 56, 56]``, or ``--`` when unknown."""
    return str(batched(shape)) if shape is not None else "--"


def shape_comment(shape) -> str:
    """The shape comment of a line of generated ``forward``: N x 64 x 56 x 56 ("" when unknown)."""
    return "N x " + dims(shape, " x ") if shape else ""


def number(v: int) -> str:
    """13,004,888"""
    return f"{v:,}"


def signed(v: int) -> str:
    """+1,234, -352, or 0."""
    return f"{v:+,}" if v else "0"


def human(v: int) -> str:
    """5.71 G: three significant figures and a unit prefix."""
    for unit, scale in (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if v >= scale:
            return f"{v / scale:.2f} {unit}"
    return str(v)
