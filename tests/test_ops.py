"""The ops of issue 11 against PyTorch's own modules and functions, and torchvision's blocks.

For each op a one-layer spec (``m: op(...)``): the generated module loads the reference module's
state_dict strictly and computes what it computes, in eval and in a training step; the reference
interpreter's rule does too; ``build --verify`` (analysis == runtime for params, MACs and every
shape; generated == interpreter, gradients included) and the deploy build pass. Inputs are
8 x N(0, 1): both signs, and far beyond +-6, where relu6, hardtanh, hardswish and hardsigmoid clip.
"""
from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from archspec.deploy import generate_deploy  # noqa: E402
from archspec.errors import ArchspecError  # noqa: E402
from archspec.generate import generate  # noqa: E402
from archspec.interpret import run  # noqa: E402
from archspec.pipeline import compile_spec  # noqa: E402
from archspec.verify import verify, verify_deploy  # noqa: E402

SCALE = 8.0
CL = (0, 2, 3, 1)  # channels last


def _spec(tmp_path, layers: str, shape=(8, 6, 5), blocks: str = "", name="one"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"archspec: 1\nname: {name}\ninput: {list(shape)}\nnum_classes: 3\n{blocks}layers:\n{layers}")
    return compile_spec(str(path))


def _module(c):
    namespace: dict = {"__name__": "_archspec_ops_test"}
    exec(compile(generate(c), "generated.py", "exec"), namespace)
    return namespace[namespace["__all__"][0]]


def _deploy_cls(c):
    namespace: dict = {"__name__": "_archspec_ops_test_deploy"}
    exec(compile(generate_deploy(c), "deploy.py", "exec"), namespace)
    return namespace[namespace["__all__"][0]]


def _close(got, want, what):
    scale = max(want.abs().max().item(), 1e-12)
    assert (got - want).abs().max().item() <= 1e-12 * scale, what


def _randomise(module, gen):
    """Random affine parameters and statistics: a fresh norm is too close to the identity to test."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen, dtype=t.dtype) + 0.5 if "var" in name
                        else torch.randn(t.shape, generator=gen, dtype=t.dtype))


# op call, reference module factory, how the reference reads x (for channels-last ops), input shape
ACTIVATIONS = [
    ("relu6", lambda: nn.ReLU6()),
    ("leaky_relu(0.2)", lambda: nn.LeakyReLU(0.2)),
    ("elu(alpha=0.5)", lambda: nn.ELU(alpha=0.5)),
    ("gelu", lambda: nn.GELU()),
    ("gelu(approximate='tanh')", lambda: nn.GELU(approximate="tanh")),
    ("silu", lambda: nn.SiLU()),
    ("mish", lambda: nn.Mish()),
    ("sigmoid", lambda: nn.Sigmoid()),
    ("tanh", lambda: nn.Tanh()),
    ("hardswish", lambda: nn.Hardswish()),
    ("hardsigmoid", lambda: nn.Hardsigmoid()),
    ("hardtanh(-2.0, 3.0)", lambda: nn.Hardtanh(-2.0, 3.0)),
    ("softmax(1)", lambda: nn.Softmax(dim=1)),
    ("softmax(dim=-1)", lambda: nn.Softmax(dim=-1)),
    ("groupnorm(4, eps=0.001)", lambda: nn.GroupNorm(4, 8, eps=0.001)),
    ("groupnorm(2, affine=false)", lambda: nn.GroupNorm(2, 8, affine=False)),
    ("channel_shuffle(2)", lambda: nn.ChannelShuffle(2)),
]


class _Last(nn.Module):
    """A reference module applied channels last (nn.LayerNorm, nn.Linear in ConvNeXt's MLP)."""

    def __init__(self, inner):
        super().__init__()
        self.m = inner

    def forward(self, x):
        return self.m(x.permute(*CL))


def _compare_one(tmp_path, layers: str, ref: nn.Module, shape=(8, 6, 5), prefix="m."):
    """The generated module and the interpreter against ``ref`` (whose state_dict is the spec's,
    under ``prefix``), in eval and training; then build --verify and the deploy build."""
    c = _spec(tmp_path, layers, shape)
    gen = torch.Generator().manual_seed(1)
    ref = ref.double()
    _randomise(ref, gen)
    state = {prefix + k: v.clone() for k, v in ref.state_dict().items()}
    model = _module(c)().double()
    model.load_state_dict(state, strict=True)
    x = SCALE * torch.randn(2, *shape, generator=gen, dtype=torch.float64)
    assert (x > 6).any() and (x < -6).any()
    for training in (False, True):
        ref.train(training), model.train(training)
        want = ref(x)
        _close(model(x), want, f"generated, training={training}")
        _close(run(c, state, x, training=training).output, want, f"interpreter, training={training}")
    verify(c, _module(c))
    if c.analysis.totals.params:  # from_trained reads the model's dtype from a parameter (fuzz KNOWN)
        verify_deploy(c, _deploy_cls(c))
    return c


@pytest.mark.parametrize("call,factory", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_op_matches_pytorch(tmp_path, call, factory):
    c = _compare_one(tmp_path, f"  - m: {call}\n", factory())
    assert c.analysis.totals.macs == 0  # elementwise ops and norms count 0 (torchvision's _ops)


@pytest.mark.parametrize("call,factory", ACTIVATIONS[:14], ids=[a[0] for a in ACTIVATIONS[:14]])
def test_functional_form_matches_the_module(tmp_path, call, factory):
    c = _spec(tmp_path, f"  - {call}\n")
    x = SCALE * torch.randn(2, 8, 6, 5, dtype=torch.float64)
    _close(_module(c)()(x), factory()(x), call)


def test_layernorm_over_channels_last_and_linear_over_the_last_dimension(tmp_path):
    class MLP(nn.Module):  # ConvNeXt's channels-last MLP
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(8, eps=1e-6)
            self.fc = nn.Linear(8, 12)

        def forward(self, x):
            return self.fc(self.norm(x.permute(*CL))).permute(0, 3, 1, 2)

    layers = ("  - permute((0, 2, 3, 1))\n  - norm: layernorm(eps=1e-6)\n  - fc: linear(12)\n"
              "  - permute((0, 3, 1, 2))\n")
    c = _compare_one(tmp_path, layers, MLP(), prefix="")
    assert c.analysis.totals.macs == 6 * 5 * 12 * 8  # prod(output) x in_features
    assert c.graph.node("fc").meta["shape"] == (6, 5, 12)
    assert c.analysis.totals.params == 2 * 8 + 8 * 12 + 12


def test_layernorm2d_is_torchvisions(tmp_path, torchvision):
    from torchvision.models.convnext import LayerNorm2d

    _compare_one(tmp_path, "  - m: layernorm2d(eps=1e-6)\n", LayerNorm2d(8, eps=1e-6))


def test_reshape_and_permute_as_modules_and_functions(tmp_path):
    class Ref(nn.Module):
        def forward(self, x):
            return x.reshape(x.shape[0], 4, 60).permute(0, 2, 1).reshape(x.shape[0], -1)

    layers = "  - reshape((4, -1))\n  - p: ['permute((0, 2, 1))']\n  - reshape((240,))\n"
    c = _compare_one(tmp_path, layers, Ref())
    assert c.analysis.output == (240,)
    assert "x.reshape(x.shape[0], 4, -1)" in generate(c) and "Permute([0, 2, 1])" in generate(c)


def test_channel_shuffle_is_shufflenets(tmp_path, torchvision):
    from torchvision.models.shufflenetv2 import channel_shuffle

    c = _spec(tmp_path, "  - channel_shuffle(4)\n")
    x = torch.randn(2, 8, 6, 5, dtype=torch.float64)
    assert torch.equal(_module(c)()(x), channel_shuffle(x, 4))
    assert torch.equal(run(c, {}, x).output, channel_shuffle(x, 4))


def test_stochastic_depth_draws_as_torchvision_does(tmp_path, torchvision):
    """Seeded, a training step of the generated module equals torchvision's StochasticDepth bit for bit."""
    from torchvision.ops import StochasticDepth

    for mode in ("row", "batch"):
        c = _spec(tmp_path, f"  - sd: stochastic_depth(0.4, '{mode}')\n")
        model, ref = _module(c)().train(), StochasticDepth(0.4, mode).train()
        x = torch.randn(16, 8, 6, 5)
        outs = []
        for m in (model, ref):
            torch.manual_seed(7)
            outs.append([m(x) for _ in range(3)])
        assert all(torch.equal(a, b) for a, b in zip(*outs))
        kept = {bool(o[i].abs().sum() > 0) for o in outs[0] for i in range(16)}
        assert kept == {True, False}  # some samples dropped, some kept
        assert torch.equal(model.eval()(x), x)
        verify(c, _module(c))
        assert "StochasticDepth" not in generate_deploy(c)  # the identity in eval: removed


def test_convnext_block_is_torchvisions(tmp_path, torchvision):
    """torchvision's CNBlock: layer scale (a parameter whose key is `layer_scale`, first in the
    state_dict), stochastic depth, permutes, LayerNorm and linears over the channels."""
    from torchvision.models.convnext import CNBlock

    blocks = """blocks:
  CNBlock:
    args: {dim: int, layer_scale: float, sd_prob: float}
    layers:
      - add:
          - - block:
                - conv2d(dim, 7, padding=3, groups=dim)
                - permute((0, 2, 3, 1))
                - layernorm(eps=1e-6)
                - linear(4 * dim)
                - gelu
                - linear(dim)
                - permute((0, 3, 1, 2))
            - layer_scale: parameter((dim, 1, 1), init=layer_scale)
            - stochastic_depth: stochastic_depth(sd_prob, 'row')
          - []
"""
    c = _spec(tmp_path, "  - b: CNBlock(8, 0.5, 0.25)\n", (8, 7, 7), blocks)
    ref = CNBlock(8, 0.5, 0.25, functools.partial(nn.LayerNorm, eps=1e-6)).double()
    gen = torch.Generator().manual_seed(3)
    _randomise(ref, gen)
    model = _module(c)().double()
    want_keys = [(f"b.{k}", tuple(v.shape)) for k, v in ref.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == want_keys
    assert want_keys[0] == ("b.layer_scale", (8, 1, 1))
    model.load_state_dict({f"b.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    assert c.analysis.totals.params == sum(p.numel() for p in ref.parameters())
    x = SCALE * torch.randn(8, 8, 7, 7, generator=gen, dtype=torch.float64)
    _close(model.eval()(x), ref.eval()(x), "eval")
    torch.manual_seed(11)
    got = model.train()(x)
    torch.manual_seed(11)
    _close(got, ref.train()(x), "training, seeded")
    verify(c, _module(c))
    verify_deploy(c, _deploy_cls(c))


SE_BLOCK = """blocks:
  SE:
    args: {squeeze: int}
    layers:
      - mul:
          - []
          - - adaptive_avgpool2d(1)
            - fc1: conv2d(squeeze, 1)
            - silu
            - fc2: conv2d(8, 1)
            - sigmoid
"""


def test_squeeze_and_excitation_is_torchvisions(tmp_path, torchvision):
    from torchvision.ops import SqueezeExcitation

    c = _spec(tmp_path, "  - se: SE(2)\n", blocks=SE_BLOCK)
    ref = SqueezeExcitation(8, 2, activation=nn.SiLU).double()
    gen = torch.Generator().manual_seed(2)
    _randomise(ref, gen)
    model = _module(c)().double()
    model.load_state_dict({f"se.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    x = SCALE * torch.randn(2, 8, 6, 5, generator=gen, dtype=torch.float64)
    _close(model(x), ref(x), "SE")
    assert "x = x * scale" in generate(c)
    assert c.analysis.totals.macs == 8 * 2 + 2 * 8
    verify(c, _module(c))
    verify_deploy(c, _deploy_cls(c))


SHUFFLE_BLOCK = """blocks:
  InvertedResidual:
    layers:
      - concat:
          - []
          - branch2:
              - conv2d(4, 1, bias=false)
              - batchnorm2d
              - relu
              - conv2d(4, 3, padding=1, groups=4, bias=false)
              - batchnorm2d
              - conv2d(4, 1, bias=false)
              - batchnorm2d
              - relu
        split: SPLIT
      - channel_shuffle(2)
"""


@pytest.mark.parametrize("split", ["2", "[4, 4]"])
def test_split_is_shufflenets_inverted_residual(tmp_path, torchvision, split):
    from torchvision.models.shufflenetv2 import InvertedResidual

    c = _spec(tmp_path, "  - ir: InvertedResidual\n", blocks=SHUFFLE_BLOCK.replace("SPLIT", split))
    ref = InvertedResidual(8, 8, 1).double()
    gen = torch.Generator().manual_seed(4)
    _randomise(ref, gen)
    model = _module(c)().double()
    model.load_state_dict({f"ir.{k}": v for k, v in ref.state_dict().items()}, strict=True)
    x = SCALE * torch.randn(2, 8, 6, 5, generator=gen, dtype=torch.float64)
    for training in (False, True):
        _close(model.train(training)(x), ref.train(training)(x), f"training={training}")
    text = generate(c)
    assert ("x1, x2 = x.chunk(2, dim=1)" if split == "2" else "x1, x2 = x.split([4, 4], dim=1)") in text
    verify(c, _module(c))
    verify_deploy(c, _deploy_cls(c))


def test_split_with_three_unequal_chunks_and_a_block_argument(tmp_path):
    blocks = """blocks:
  Three:
    args: {a: int}
    layers:
      - add:
          - c1: conv2d(5, 1)
          - c2: conv2d(5, 1)
          - c3: conv2d(5, 1)
        split: (a, 2, 8 - a - 2)
"""
    c = _spec(tmp_path, "  - t: Three(3)\n", blocks=blocks)
    assert [n.meta["shape"][0] for n in c.graph if n.op == "split"] == [3, 2, 3]
    assert "x.split([self.a, 2, 8 - self.a - 2], dim=1)" in generate(c)
    verify(c, _module(c))
    verify_deploy(c, _deploy_cls(c))


def test_mul_broadcasts_as_pytorch(tmp_path):
    c = _spec(tmp_path, "  - mul:\n      - []\n      - - adaptive_avgpool2d((1, 5))\n        - g: conv2d(1, 1)\n")
    assert c.graph.node("/mul").meta["shape"] == (8, 6, 5)
    verify(c, _module(c))
    with pytest.raises(ArchspecError, match=r"mul in the model: the branches do not broadcast \(branch 1 \(identity\) "
                                            r"gives 8x6x5, g gives 3x1x1"):
        _spec(tmp_path, "  - mul:\n      - []\n      - - adaptive_avgpool2d(1)\n        - g: conv2d(3, 1)\n")


def test_no_in_place_op_writes_over_a_view_or_an_output_a_backward_reads(tmp_path):
    """A ReLU after a permute (a view of a tensor the other branch still reads), a sigmoid or a
    tanh (whose backward reads their output) runs out of place; verify's training step passes."""
    layers = """  - c: conv2d(4, 3, padding=1)
  - add:
      - - permute((0, 1, 3, 2))
        - relu
        - permute((0, 1, 3, 2))
      - []
  - s: ['permute((0, 1, 3, 2))', relu, 'permute((0, 1, 3, 2))']
  - sigmoid
  - relu
  - t: tanh
  - relu
"""
    c = _spec(tmp_path, layers, (4, 6, 6))
    text = generate(c)
    assert "inplace" not in text
    verify(c, _module(c))


@pytest.mark.parametrize("key,hint", [("adds", "; did you mean 'add'?"), ("multiply", "; did you mean 'mul'?"),
                                      ("cat", "; did you mean 'concat'?"), ("max", "")])
def test_merges_are_a_closed_set(tmp_path, key, hint):
    with pytest.raises(ArchspecError) as info:
        _spec(tmp_path, f"  - {key}:\n      - []\n      - [relu]\n")
    assert info.value.message.startswith(f"unknown merge '{key}' (merges: concat, add, mul){hint}")


def test_a_sequential_of_calls_may_have_a_merge_like_name(tmp_path):
    """An nn.Sequential's entries are calls: `sum: [relu, ...]` and timm's `repeat` stay Sequentials."""
    c = _spec(tmp_path, "  - sum: [relu, 'conv2d(8, 1)']\n  - repeat: [relu]\n")
    assert [c.analysis.modules[p]["type"] for p in ("sum", "repeat")] == ["Sequential", "Sequential"]


def test_a_block_named_like_a_class_of_the_generated_file_is_renamed(tmp_path):
    blocks = "blocks:\n  Permute:\n    layers:\n      - relu\n"
    c = _spec(tmp_path, "  - b: Permute\n  - p: ['permute((0, 2, 3, 1))']\n", blocks=blocks)
    text = generate(c)
    assert "class Permute(nn.Module):" in text and "self.b = Permute_2(8)" in text
    verify(c, _module(c))


def test_diff_names_a_changed_split(tmp_path):
    from archspec.pipeline import diff_specs

    a = tmp_path / "a.yaml"
    a.write_text(f"archspec: 1\nname: a\ninput: [16, 8, 8]\nnum_classes: 10\n{SHUFFLE_BLOCK.replace('SPLIT', '2')}"
                 "layers:\n  - u: InvertedResidual\n")
    b = tmp_path / "b.yaml"
    b.write_text(a.read_text().replace("split: 2", "split: [8, 8]"))
    assert diff_specs(str(a), str(b)).identical  # the same chunks, written two ways
    b.write_text(a.read_text().replace("split: 2", "split: [4, 12]"))
    texts = [c.summary for c in diff_specs(str(a), str(b)).changes]
    assert "concat split: [8, 8] -> [4, 12]" in texts
