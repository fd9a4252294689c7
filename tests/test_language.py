"""The language of issue 11 (items 2 and 3): expressions, structure and op arguments, each through
the whole pipeline: the analysis's exact figures, the generated module (read as text where its form
matters) and ``build --verify``'s comparison of the generated and deploy modules with the reference
interpreter (archspec/interpret.py) in eval and training. Messages for what a spec may not say are
asserted exactly, with their position."""
from __future__ import annotations

import textwrap

import pytest

from archspec.errors import ArchspecError, flatten
from archspec.pipeline import compile_spec

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _exec(source: str, name: str):
    namespace: dict = {"__name__": f"_archspec_test_{name}"}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    return namespace[namespace["__all__"][0]]


def built(tmp_path, text: str, name: str = "net"):
    """(compiled, generated source) of a spec, after the generated and deploy modules were verified
    against the interpreter (build --verify)."""
    from archspec.deploy import generate_deploy
    from archspec.generate import generate
    from archspec.verify import verify, verify_deploy

    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    c = compile_spec(str(path))
    source = generate(c)
    verify(c, _exec(source, name))
    verify_deploy(c, _exec(generate_deploy(c), f"{name}_deploy"))
    return c, source


def errors(tmp_path, text: str, name: str = "net") -> list:
    """Every error of a spec as 'line:col: message'."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ArchspecError) as info:
        from archspec.generate import generate

        generate(compile_spec(str(path)))
    return [f"{e.loc.line}:{e.loc.col}: {e.message}" for e in flatten(info.value)]


# --- block arguments ------------------------------------------------------------------------------

def test_a_required_argument_after_a_defaulted_one_is_keyword_only(tmp_path):
    """The fuzzer's SyntaxError: `def __init__(self, in_channels, a=4, b)` is not Python."""
    c, source = built(tmp_path, """\
        archspec: 1
        name: req
        input: [3, 8, 8]
        num_classes: 4
        blocks:
          B:
            args: {a: int = 4, b: int, c: bool = true}
            layers:
              - conv: conv2d(a + b, 3, padding=1, bias=c)
              - relu
        layers:
          - b1: B(2, 3)
          - b2: B(b=1)
          - b3: B(1, 2, false)
          - flatten
          - fc: linear(num_classes)
        """)
    assert "    def __init__(self, in_channels: int, *, a: int = 4, b: int, c: bool = True) -> None:" in source
    assert "self.b1 = B(3, a=2, b=3)" in source and "self.b3 = B(5, a=1, b=2, c=False)" in source
    assert c.analysis.totals.params == (3 * 5 * 9 + 5) + (5 * 5 * 9 + 5) + (5 * 3 * 9) + 3 * 64 * 4 + 4


# --- expressions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, env, value", [
    ("t != 1", {"t": 6}, True),
    ("stride == 1 and c_in == c_out", {"stride": 1, "c_in": 8, "c_out": 8}, True),
    ("not (a < b <= c)", {"a": 1, "b": 3, "c": 2}, True),
    ("b != 0 and a // b > 1", {"a": 1, "b": 0}, False),  # short-circuited: no division by zero
    ("x if n > 2 else y", {"x": 1, "y": 2, "n": 2}, 2),
    ("8 // 0 if false else 3", {}, 3),  # only the chosen side is evaluated
    ("min(4, 2.5, 3)", {}, 2.5), ("max(c, 8)", {"c": 5}, 8),
    ("round(2.5)", {}, 2), ("round(3.5)", {}, 4), ("int(-2.7)", {}, -2), ("int(7)", {}, 7),
    ("ceil(2.1)", {}, 3), ("floor(-2.1)", {}, -3), ("ceil(4)", {}, 4),
    ("make_divisible(32 * 0.75, 8)", {}, 24), ("make_divisible(10, 8)", {}, 16), ("make_divisible(3, 8)", {}, 8),
    ("make_divisible(15, 8, min_value=16)", {}, 16), ("make_divisible(15, 8, 4)", {}, 16),
    ("in_channels * t", {"in_channels": 16, "t": 6}, 96), ("7 / 2", {}, 3.5), ("7.5 // 2", {}, 3.0),
])
def test_expressions_evaluate_as_python_does(text, env, value):
    import ast

    from archspec.errors import Loc
    from archspec.exprs import evaluate, parse_expr, unparse

    got = evaluate(parse_expr(text, Loc("x")), env, Loc("x"))
    assert got == value and type(got) is type(value)
    python = unparse(parse_expr(text, Loc("x")))  # what the generated module writes
    namespace = {**env, "math": __import__("math"), "make_divisible": _torchvision_rule}
    assert eval(compile(ast.parse(python, mode="eval"), "<expr>", "eval"), namespace) == value


def _torchvision_rule(v, divisor, min_value=None):
    """torchvision's _make_divisible (models/_utils.py), restated for the test's own Python."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def test_make_divisible_is_torchvisions(torchvision):
    from archspec.errors import Loc
    from archspec.exprs import evaluate, parse_expr
    from torchvision.models._utils import _make_divisible

    cases = [(v * m, d, mv) for v in (1, 3, 7, 8, 12, 16, 24, 32, 40, 72, 96, 112, 160, 320, 1280)
             for m in (0.1, 0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 1.4, 2.0) for d in (1, 4, 8, 16)
             for mv in (None, 1, 8, 24)]
    for v, d, mv in cases:
        text = f"make_divisible({v!r}, {d}{'' if mv is None else f', min_value={mv}'})"
        assert evaluate(parse_expr(text, Loc("x")), {}, Loc("x")) == _make_divisible(v, d, mv), text


EXPRESSIONS = """\
    archspec: 1
    name: ex
    input: [3, 8, 8]
    num_classes: 4
    args:
      width_mult: float = 0.75
    blocks:
      B:
        args: {c: int, t: float = 1.5}
        layers:
          - conv: conv2d(make_divisible(c * t, 4), 3, padding=1)
          - relu
          - conv2: conv2d(max(ceil(c * t), 4) if t != 1 else c, 1)
    layers:
      - b1: B(make_divisible(16 * width_mult, 8))
      - b2: B(floor(8 * width_mult), t=1.0)
      - flatten
      - fc: linear(num_classes)
    """


def test_functions_and_conditions_reach_the_generated_module(tmp_path):
    """Floats are converted explicitly; the generated module computes the same expressions in Python
    (math.ceil, a make_divisible of its own) and matches the interpreter."""
    c, source = built(tmp_path, EXPRESSIONS)
    # b1: c = make_divisible(12, 8) = 16; conv 3->make_divisible(24, 4) = 24 3x3, conv2 24->max(24, 4) = 24
    # b2: c = floor(6.0) = 6, t = 1: conv 24->make_divisible(6, 4) = 8 3x3, conv2 8->6 1x1 (t != 1 is false)
    assert c.analysis.totals.params == (3 * 24 * 9 + 24) + (24 * 24 + 24) + (24 * 8 * 9 + 8) + (8 * 6 + 6) + (384 * 4 + 4)
    assert source.splitlines()[7:9] == ["import math", ""]
    assert "\ndef make_divisible(value: float, divisor: int, min_value=None) -> int:\n" in source
    assert "        self.conv2 = nn.Conv2d(make_divisible(c * t, 4), max(math.ceil(c * t), 4) if t != 1 else c, " \
           "kernel_size=1)" in source
    assert "        self.b2 = B(max(math.ceil(make_divisible(16 * width_mult, 8) * 1.5), 4), math.floor(8 * width_mult), " \
           "t=1.0)" in source


def test_a_spec_without_functions_imports_nothing_more(tmp_path):
    _, source = built(tmp_path, EXPRESSIONS.replace("make_divisible(16 * width_mult, 8)", "16")
                      .replace("make_divisible(c * t, 4)", "c").replace("max(ceil(c * t), 4) if t != 1 else c", "c")
                      .replace("floor(8 * width_mult)", "8"))
    assert "import math" not in source and "make_divisible" not in source


@pytest.mark.parametrize("where, text, message", [
    ("conv", "conv2d(c * 1.5, 3)", "8:15: argument 'out_channels' of conv2d must be an int, got float 24.0 "
     "(from 'c * 1.5'); convert it explicitly: int(...), round(...), ceil(...) or make_divisible(..., 8)"),
    ("conv", "conv2d(24.0, 3)", "8:15: argument 'out_channels' of conv2d must be an int, got float 24.0; convert "
     "it explicitly: int(...), round(...), ceil(...) or make_divisible(..., 8)"),
    ("conv", "conv2d(c.real, 3)", "8:15: attribute access 'c.real' is not part of the spec language in "
     "'conv2d(c.real, 3)' (allowed: numbers, booleans, argument names, tuples, + - * / // %, comparisons, and, or, "
     "not, a if c else b, and the functions min, max, round, int, ceil, floor, make_divisible)"),
    ("conv", "conv2d(abs(c), 3)", "8:15: 'abs' is not a function of the spec language in 'abs(c)' (functions: min, "
     "max, round, int, ceil, floor, make_divisible)"),
    ("conv", "conv2d(max(c).bit_length(), 3)", "8:15: 'max(c).bit_length' is not a function of the spec language in "
     "'conv2d(max(c).bit_length(), 3)' (functions: min, max, round, int, ceil, floor, make_divisible)"),
    ("conv", "conv2d(int(c, 2), 3)", "8:15: int() takes one number, got 2 arguments in 'conv2d(int(c, 2), 3)'"),
    ("conv", "conv2d(c ** 2, 3)", "8:15: powers ('c ** 2') are not part of the spec language in 'conv2d(c ** 2, 3)': "
     "write the product (k * k)"),
    ("conv", "conv2d(c if c else 1, 3)", "8:15: 'if' needs a boolean, got int 16 in 'c if c else 1' (write a "
     "comparison: n != 0)"),
    ("conv", "conv2d(make_divisible(c, 0), 3)", "8:15: make_divisible needs a positive int divisor and an int "
     "min_value, in 'make_divisible(c, 0)'"),
    ("if", "c.bit_length() > 3", "9:13: 'c.bit_length' is not a function of the spec language in "
     "'c.bit_length() > 3' (functions: min, max, round, int, ceil, floor, make_divisible)"),
    ("if", "c and true", "9:13: 'and' needs a boolean, got int 16 in 'c and True' (write a comparison: n != 0)"),
])
def test_what_an_expression_may_not_say(tmp_path, where, text, message):
    """Located, and in the spec's own words: the message shows the expression as written (never the
    parser's internal f(...) wrapper)."""
    item = f"- conv: {text}" if where == "conv" else f"- conv: conv2d(c, 3)\n        if: {text}"
    spec = ("archspec: 1\nname: bad\ninput: [3, 8, 8]\nblocks:\n  B:\n    args: {c: int}\n    layers:\n"
            f"      {item}\nlayers:\n  - b: B(16)\n")
    got = errors(tmp_path, spec)
    assert got == [message]
    assert "f(" not in got[0]
