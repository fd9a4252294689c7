"""The two factorization rules, as pure functions of a square kernel and its padding.

A rule turns one k x k convolution into pieces: each piece is a convolution with its own
kernel and padding, applied in order, all with the original's output channels; the original
stride moves to the last piece (the earlier ones have stride 1). Both keep the output size and
the receptive field for every input size:

* ``stack3x3``: k x k (k odd, >= 5) -> n = (k - 1) / 2 convolutions 3 x 3. Each 3 x 3 widens the
  receptive field by 2, so n of them cover k. The original padding p is spread over the n pieces,
  larger shares first (p = 2 over two pieces: 1, 1; p = 1: 1, 0); any split with the same sum
  gives the same output size and the same alignment of output to input positions.
* ``asymmetric``: n x n (n >= 2) -> 1 x n with padding (0, pw), then n x 1 with padding (ph, 0).

Weights per (input channel, output channel) pair: k*k before; 9n (stack3x3) or 2n (asymmetric)
after, e.g. 25 -> 18 for a 5x5 (28% fewer) and 49 -> 27 for a 7x7. Real parameter counts
also depend on the channels: the first piece maps C_in -> C_out and the others C_out -> C_out.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ops import pair


# A transform makes at most this many convolutions in all: stack3x3 of a 200001x200001 kernel
# would otherwise build 100,000 pieces for one site, and of a 2*10^8 kernel 10^8 (docs/errors.md).
MAX_PIECES = 100_000


class RuleError(Exception):
    """The rule cannot factorize this convolution; the caller adds where and which transform."""


@dataclass(frozen=True)
class Piece:
    kernel: int | tuple
    padding: int | tuple
    strided: bool  # carries the original stride


def stack3x3(k: int, padding) -> list:
    """k x k -> (k - 1) / 2 stacked 3 x 3 convolutions.

    >>> [(p.kernel, p.padding, p.strided) for p in stack3x3(5, 2)]
    [(3, 1, False), (3, 1, True)]
    """
    if k % 2 == 0:
        raise RuleError(f"cannot factorize a {k}x{k} convolution into 3x3 ones: "
                        "a stack of 3x3 convolutions covers only odd sizes (5, 7, 9, ...)")
    ph, pw = pair(padding)
    if ph != pw:
        raise RuleError(f"stack3x3 needs the same padding on both axes, got {padding}")
    n = (k - 1) // 2
    shares = [ph // n + (1 if i < ph % n else 0) for i in range(n)]
    return [Piece(3, shares[i], i == n - 1) for i in range(n)]


def asymmetric(n: int, padding) -> list:
    """n x n -> 1 x n then n x 1.

    >>> [(p.kernel, p.padding, p.strided) for p in asymmetric(7, 3)]
    [((1, 7), (0, 3), False), ((7, 1), (3, 0), True)]
    """
    ph, pw = pair(padding)
    return [Piece((1, n), (0, pw), False), Piece((n, 1), (ph, 0), True)]


@dataclass(frozen=True)
class Rule:
    name: str
    pieces: object  # (k, padding) -> [Piece]
    count: object  # k -> how many pieces, known before they are built
    applies: object  # square kernel size -> bool: the sizes the rule rewrites when no kernel is named
    weights: object  # k -> weights per channel pair after the rewrite
    kernel_problem: object  # k -> why a transform may not name this kernel, or None


def _stack_problem(k: int):
    if k <= 3:
        return f"stack3x3 needs a kernel of 5 or more (3x3 convolutions are what it makes), got {k}"
    if k % 2 == 0:
        return f"stack3x3 needs an odd kernel (5, 7, 9, ...), got {k}"
    return None


def _asym_problem(k: int):
    return f"asymmetric needs a kernel of 2 or more, got {k}" if k < 2 else None


RULES = {
    "stack3x3": Rule("stack3x3", stack3x3, lambda k: (k - 1) // 2, lambda k: k > 3, lambda k: 9 * ((k - 1) // 2),
                     _stack_problem),
    "asymmetric": Rule("asymmetric", asymmetric, lambda k: 2, lambda k: k > 1, lambda k: 2 * k, _asym_problem),
}
