"""The language of issue 11 (items 2 and 3): expressions, structure and op arguments, each through
the whole pipeline: the analysis's exact figures, the generated module (read as text where its form
matters) and ``build --verify``'s comparison of the generated and deploy modules with the reference
interpreter (archspec/interpret.py) in eval and training. Messages for what a spec may not say are
asserted exactly, with their position."""
from __future__ import annotations

import textwrap

import pytest

from archspec.analyse import state_dict_shapes
from archspec.errors import ArchspecError, flatten
from archspec.pipeline import compile_spec
from conftest import ROOT

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
    ("conv", "conv2d(make_divisible(None, 8), 3)", "8:15: make_divisible() on a non-number (none) in "
     "'make_divisible(None, 8)'"),
    ("conv", "conv2d(make_divisible(None, 8, None), 3)", "8:15: make_divisible() on a non-number (none) in "
     "'make_divisible(None, 8, None)'"),
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


# --- the input's size in scope ------------------------------------------------------------------------

def test_a_block_reads_its_input_size(tmp_path):
    c, source = built(tmp_path, (ROOT / "tests/specs/ok/input_size.yaml").read_text())
    mods = c.analysis.modules
    assert mods["sep1.depthwise"]["params"] == 16 * 9 and mods["trans1.conv"]["output_shape"] == (8, 8, 8)
    assert mods["pool"]["output_shape"] == (12, 1, 1) and mods["sep2.expand"]["output_shape"] == (24, 4, 4)
    # in_h and in_w are constructor arguments of the one class that reads them, given per instance
    assert "        self.pool = GlobalPool(12, 4, 4)\n" in source
    assert "    def __init__(self, in_channels: int, in_h: int, in_w: int) -> None:\n" in source
    assert "        self.depthwise = nn.Conv2d(in_channels * t, in_channels * t, kernel_size=3, padding=1, " \
           "groups=in_channels * t, bias=False)\n" in source


@pytest.mark.parametrize("layers, message", [
    ("- conv: conv2d(in_channels * 2, 1)", "12:11: unknown name 'in_channels' in conv2d (arguments in scope: "
     "num_classes); in_channels, in_h and in_w are in scope inside a block (its input's size)"),
    ("- flatten\n  - b: Pool", "8:9: 'in_h' in avgpool2d: block Pool reads a 48 tensor, not a C x H x W map: it has "
     "no in_h and in_w"),
])
def test_where_the_input_size_is_not_in_scope(tmp_path, layers, message):
    spec = ("archspec: 1\nname: bad\ninput: [3, 4, 4]\nnum_classes: 2\nblocks:\n  Pool:\n    layers:\n"
            f"      - avgpool2d((in_h, in_w))\nlayers:\n  - relu\n  - relu\n  {layers}\n")
    assert errors(tmp_path, spec) == [message]


def test_the_input_size_cannot_be_declared(tmp_path):
    spec = ("archspec: 1\nname: bad\ninput: [3, 4, 4]\nblocks:\n  B:\n    args: {in_h: int = 2}\n    layers: [relu]\n"
            "layers:\n  - b: B\n")
    assert errors(tmp_path, spec) == ["6:12: 'in_h' is the size of a block's input and cannot be declared"]


# --- structure: conditional items, groups and branches -------------------------------------------------

def test_conditional_group_branch_and_merge(tmp_path):
    """A false item in an nn.Sequential is not there (the later entries are numbered one lower); the
    shortcut is there only where its condition holds; the gate only where se is true."""
    c, source = built(tmp_path, (ROOT / "tests/specs/ok/conditional_blocks.yaml").read_text())
    keys = [k for k, _ in state_dict_shapes(c.graph)]
    assert [k for k in keys if k.startswith("block1.conv.") and k.endswith("weight")] == \
        ["block1.conv.0.weight", "block1.conv.1.weight"]  # t = 1: the depthwise conv is conv.0
    assert [k for k in keys if k.startswith("block2.conv.") and k.endswith("weight")] == \
        ["block2.conv.0.weight", "block2.conv.1.weight", "block2.conv.3.weight", "block2.conv.4.weight"]
    assert [k for k in keys if ".fc" in k] == ["block3.fc1.weight", "block3.fc1.bias", "block3.fc2.weight",
                                              "block3.fc2.bias"]
    add = {n.path: n for n in c.graph if n.op == "add"}
    assert sorted(add) == ["block1", "block3"]  # block2 (stride 2, 8 -> 16) has no shortcut: the branch alone
    assert "        if t != 1:\n            layers.append(nn.Conv2d(in_channels, in_channels * t, kernel_size=1, " \
           "bias=False))\n" in source
    # the shortcut's line runs in block1 (8 x 16 x 16) and block3 (another shape): no comment; the
    # branch alone only in block2, whose shape it shows
    assert "        if self.stride == 1 and self.in_channels == self.out:\n            x = out_ + x\n" \
           "        else:\n            x = out_  # N x 16 x 8 x 8\n" in source
    assert "        if self.se:\n            scale = F.adaptive_avg_pool2d(out_, 1)" in source


def test_a_false_module_whose_input_size_cannot_be_written_symbolically(tmp_path):
    """The fuzzer's refusal ("an if:-false module whose input size can't be written"): a module that
    is in no instance is written with the size it would have had (its code never runs for this spec)."""
    c, source = built(tmp_path, """\
        archspec: 1
        name: absent
        input: [3, 8, 8]
        num_classes: 4
        blocks:
          H:
            args: {use: bool = false}
            layers:
              - flatten
              - fc: linear(4)
                if: use
              - if: use
                body:
                  - fc2: linear(8)
                  - fc3: linear(4)
        layers:
          - concat:
              - h1: H
              - - pool: maxpool2d(2)
                - h2: H
        """)
    # h1 would read 192 features, h2 48: the first instance's size, written as a number
    assert "            self.fc = nn.Linear(192, 4)\n" in source and "            self.fc2 = nn.Linear(192, 8)\n" in source
    assert c.analysis.totals.params == 0 and c.analysis.output == (240,)


# --- structure: loops -------------------------------------------------------------------------------------

def test_a_stage_table_is_torchvisions_mobilenet_v2(tmp_path, torchvision):
    """for: rows and a repeat with its index, make_divisible, a conditional group in an nn.Sequential
    and a conditional shortcut: torchvision's MobileNetV2 at width 0.5 with three of its rows,
    loaded strictly, equal outputs in eval and training with BatchNorm randomised."""
    from conftest import randomise_batchnorm

    c, _ = built(tmp_path, (ROOT / "tests/specs/ok/stage_table.yaml").read_text())
    ref = torchvision.models.MobileNetV2(num_classes=10, width_mult=0.5,
                                         inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2]])
    randomise_batchnorm(ref)
    from archspec.generate import generate

    mine = _exec(generate(c), "stage_table")()
    assert list(mine.state_dict()) == list(ref.state_dict())
    mine.load_state_dict(ref.state_dict(), strict=True)
    assert sum(p.numel() for p in ref.parameters()) == c.analysis.totals.params == 55_850
    x = 4 * torch.randn(2, 3, 32, 32)
    for training in (False, True):
        mine.train(training), ref.train(training)
        torch.manual_seed(1)
        want = ref(x)
        torch.manual_seed(1)
        got = mine(x)
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()


def test_named_repeats_are_torchvisions_dense_block(tmp_path, torchvision):
    """A repeat with its index in the modules' names (denselayer{i + 1}), in a block used with
    different counts: a Python loop in the generated class; torchvision's _DenseBlock loaded strictly."""
    from conftest import randomise_batchnorm
    from torchvision.models.densenet import _DenseBlock

    c, source = built(tmp_path, (ROOT / "tests/specs/ok/named_repeat.yaml").read_text())
    assert "        for i in range(num_layers):\n            self.add_module(f\"denselayer{i + 1}\", " \
           "DenseLayer(channels, growth))\n            channels = channels + growth\n" in source
    assert "            x = torch.cat([x, branch2], 1)" in source
    model = _exec(source, "named_repeat")()
    for name, layers, width in (("denseblock1", 2, 8), ("denseblock2", 3, 8)):
        ref = _DenseBlock(layers, width, bn_size=2, growth_rate=4, drop_rate=0.0)
        randomise_batchnorm(ref)
        mine = getattr(model, name)
        assert list(mine.state_dict()) == list(ref.state_dict())
        mine.load_state_dict(ref.state_dict(), strict=True)
        x = 4 * torch.randn(2, width, 8, 8)
        for training in (False, True):
            mine.train(training), ref.train(training)
            want = ref(x)
            assert (mine(x) - want).abs().max() <= 1e-5 * want.abs().max()


def test_a_repeat_directly_inside_a_repeat(tmp_path):
    """The fuzzer's SyntaxError: *(*(...) for _ in range(n)) ...; written out where the counts are
    numbers, else nested loops appending to the list."""
    _, source = built(tmp_path, """\
        archspec: 1
        name: rr
        input: [3, 8, 8]
        num_classes: 4
        blocks:
          B:
            args: {n: int, m: int}
            layers:
              - seq:
                  - conv2d(4, 1)
                  - repeat: n
                    body:
                      - repeat: m
                        body: [relu]
                      - conv2d(4, 3, padding=1)
        layers:
          - f:
              - repeat: 2
                body:
                  - repeat: 3
                    body: [relu]
          - b1: B(1, 2)
          - b2: B(2, 1)
          - flatten
          - fc: linear(num_classes)
        """)
    assert "        self.f = nn.Sequential(\n" + "            nn.ReLU(),\n" * 6 + "        )\n" in source
    assert ("        for _ in range(n):\n            for _2 in range(m):\n                layers.append(nn.ReLU())\n"
            "            layers.append(nn.Conv2d(4, 4, kernel_size=3, padding=1))\n") in source


def test_a_python_loop_reads_its_index(tmp_path):
    """The fuzzer's mismatch: scale(i + 1) in a loop the class runs was written x * i + 1."""
    _, source = built(tmp_path, """\
        archspec: 1
        name: idx
        input: [3, 4, 4]
        num_classes: 2
        blocks:
          B:
            args: {n: int}
            layers:
              - repeat: n
                as: i
                body:
                  - "act{i}": tanh
                    if: i != 1
                  - scale(i + 1)
        layers:
          - b1: B(3)
          - b2: B(1)
          - flatten
          - fc: linear(num_classes)
        """)
    assert "        for i in range(self.n):\n            x = getattr(self, f\"act{i}\")(x) if getattr(self, f\"act{i}\") " \
           "is not None else x  # N x 3 x 4 x 4\n            x = x * (i + 1)  # N x 3 x 4 x 4\n" in source
    assert "            else:\n                self.add_module(f\"act{i}\", None)\n" in source


@pytest.mark.parametrize("text, message", [
    ("  - repeat: 2\n    body:\n      - conv: conv2d(3, 1)", "10:9: duplicate module name 'conv' in the model: a loop "
     "names its modules by a template over its variable, e.g. 'conv{i}' with as: i"),
    ("  - \"conv{i}\": conv2d(3, 1)", "8:5: 'conv{i}': a name with {...} is a template over a loop variable; it "
     "belongs in the body of a repeat: (with as:) or a for: table"),
    ("  - for: [a, b]\n    in: [[1, 2], [3]]\n    body: [relu]", "9:18: this row has 1 value, the table 2 (a, b)"),
    ("  - repeat: 2\n    as: num_classes\n    body: [relu]", "9:9: 'num_classes' is in scope already and cannot be a "
     "loop variable"),
    ("  - if: 3\n    body: [relu]", "8:9: if: must be a boolean, got int 3 (write a comparison: n != 0)"),
    ("  - add:\n      - []\n      - if: true\n        body: []\n      - if: false\n        body: []",
     "9:7: add has 2 conditional branches; one is allowed (write the others' conditions into a block, or nest the "
     "merges)"),
])
def test_what_a_structure_may_not_say(tmp_path, text, message):
    spec = f"archspec: 1\nname: bad\ninput: [3, 4, 4]\nnum_classes: 2\nargs:\n  k: int = 2\nlayers:\n{text}\n"
    assert errors(tmp_path, spec) == [message]


# --- op arguments -------------------------------------------------------------------------------------

def test_a_block_takes_its_norm_and_activation_as_arguments(tmp_path, torchvision):
    from conftest import randomise_batchnorm
    from torchvision.ops import Conv2dNormActivation

    c, source = built(tmp_path, (ROOT / "tests/specs/ok/op_arguments.yaml").read_text())
    assert "from functools import partial\nfrom typing import Callable\n\nimport torch\n" in source
    assert "        norm: Callable[..., nn.Module] = partial(nn.BatchNorm2d, eps=0.001),\n" in source
    assert "        self.stage2 = Stage(8, 16, act=partial(nn.LeakyReLU, 0.2))\n" in source
    assert "        self.head = ConvNormAct(16, 16, norm=partial(nn.GroupNorm, 4), act=head_act)\n" in source
    assert "        self.norm = norm(out)\n        self.act = act()\n" in source
    ops = {n.path: n.op for n in c.graph if n.is_module}
    assert [ops[p] for p in ("stage1.down.act", "stage1.refine.1", "stage2.down.act", "head.norm", "head.act")] == \
        ["relu", "relu", "leaky_relu", "groupnorm", "hardswish"]
    # the head is torchvision's Conv2dNormActivation with the same layers (its keys are 0, 1, 2)
    ref = Conv2dNormActivation(16, 16, norm_layer=lambda ch: torch.nn.GroupNorm(4, ch),
                               activation_layer=torch.nn.Hardswish)
    mine = _exec(source, "op_arguments")().head
    mine.load_state_dict({k.replace("0.", "conv.", 1).replace("1.", "norm.", 1): v
                          for k, v in ref.state_dict().items()}, strict=True)
    x = torch.randn(2, 16, 4, 4)
    assert torch.equal(mine(x), ref(x))


@pytest.mark.parametrize("text, message", [
    ("args:\n      act: op = conv2d(8, 3)", "7:12: the default of 'act': 'conv2d' cannot be an argument's op: an argument "
     "of type op takes a module that keeps the channels"),
    ("args: {relu: op = relu6}", "6:12: argument 'relu' of type op has the name of a built-in op: '- relu' would be "
     "ambiguous; name it after its role (act, norm)"),
])
def test_what_an_op_argument_may_not_be(tmp_path, text, message):
    spec = (f"archspec: 1\nname: bad\ninput: [3, 4, 4]\nblocks:\n  B:\n    {text}\n    layers:\n"
            "      - a: relu\nlayers:\n  - b: B\n")
    got = errors(tmp_path, spec)
    assert len(got) == 1 and got[0].startswith(message)


@pytest.mark.parametrize("use, call, message", [
    ("- act", "B", "9:9: 'act' is an argument of type op, a module class: in a body it needs a name (write "
     "'- act: act'); in an nn.Sequential it is an entry"),
    ("- a: act(0.1)", "B", "9:12: 'act' is an argument of type op: use it without arguments (its attributes come "
     "with the op it is given, e.g. leaky_relu(0.2))"),
    ("- a: act", "B(act=linear(4))", "11:8: argument 'act' of block B: 'linear' cannot be an argument's op"),
    ("- a: act", "B(act=3)", "11:8: argument 'act' of block B must be an op such as relu or leaky_relu(0.2), got '3'"),
    ("- a: act", "B(act=leaky_relu(-1e400))", "11:8: 1e400 is not a finite number"),
])
def test_what_an_op_argument_is_given(tmp_path, use, call, message):
    spec = (f"archspec: 1\nname: bad\ninput: [3, 4, 4]\nblocks:\n  B:\n    args: {{act: op = relu}}\n    layers:\n"
            f"      - c: conv2d(4, 1)\n      {use}\nlayers:\n  - b: {call}\n")
    got = errors(tmp_path, spec)
    assert len(got) == 1 and got[0].startswith(message), got


# --- named nn.Sequential entries (RegNet's block1-0) ---------------------------------------------

def test_named_sequential_entries_keep_their_keys(tmp_path):
    """Named entries are the keys of an OrderedDict: names that are no identifiers keep their keys,
    generated == interpreter == deploy (build --verify), and draw quotes or rewrites them."""
    from archspec.draw import to_dot, to_mermaid, view

    text = (ROOT / "tests/specs/ok/named_entries.yaml").read_text()
    c, source = built(tmp_path, text, "named_entries")
    assert [k for k, _ in state_dict_shapes(c.graph) if k.startswith("trunk.stage")][:2] == [
        "trunk.stage1.stage1-0.conv.weight", "trunk.stage1.stage1-0.bn.weight"]
    assert "from collections import OrderedDict\n" in source
    assert ('        self.trunk = nn.Sequential(OrderedDict([\n'
            '            ("stage1", nn.Sequential(OrderedDict([\n'
            '                ("stage1-0", Unit(8, 8)),\n') in source
    assert '"trunk.stage1.stage1-0.bn" [' in to_dot(view(c, depth=0))
    mermaid = to_mermaid(view(c, depth=0))
    assert "trunk_stage1_stage1_0_bn[" in mermaid and "stage1-0  (Unit)" in mermaid


@pytest.mark.parametrize("name,message", [
    ("eval", "7:9: nn.Sequential entry 'eval' would hide nn.Module's own eval"),
    ("s", "7:9: duplicate module name 's' in trunk (first at line 6)"),
])
def test_named_entries_pytorch_refuses_are_errors(tmp_path, name, message):
    spec = f"""\
        archspec: 1
        name: net
        input: [3, 8, 8]
        layers:
          - trunk:
              - s: conv2d(4, 3)
              - {name}: relu
          - flatten
        """
    assert errors(tmp_path, spec)[0] == message
