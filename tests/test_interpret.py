"""The reference interpreter (archspec/interpret.py): one rule per catalog op, no in-place op,
PyTorch's semantics for BatchNorm and dropout, aux heads in training only."""
from __future__ import annotations

import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")

from archspec.errors import InterpretError  # noqa: E402
from archspec.interpret import RULES, Instr, Program, program, run  # noqa: E402
from archspec.ops import OPS  # noqa: E402
from archspec.pipeline import compile_spec  # noqa: E402
from archspec.verify import random_state  # noqa: E402

EVERY_OP = """archspec: 1
name: every_op
input: [4, 9, 9]
num_classes: 5
layers:
  - c: conv2d(8, 3, padding=1, groups=2)
  - bn: batchnorm2d(eps=0.01, momentum=0.3)
  - relu
  - concat:
      - maxpool2d(3, stride=1, padding=1)
      - avgpool2d(3, stride=1, padding=1, count_include_pad=false)
      - local_response_norm(3)
  - add:
      - []
      - identity
      - scale(0.5)
  - mul:
      - relu6
      - leaky_relu(0.1)
      - elu
      - gelu(approximate='tanh')
  - concat:
      - [silu, mish]
      - [sigmoid, tanh]
      - [hardswish, hardsigmoid, 'hardtanh(-2.0, 2.0)']
      - []
    split: [6, 6, 6, 6]
  - channel_shuffle(2)
  - ln2d: layernorm2d
  - gn: groupnorm(4)
  - ls: parameter((24, 1, 1), init=0.5)
  - sd: stochastic_depth(0.2)
  - permute((0, 2, 3, 1))
  - ln: layernorm
  - mlp: linear(8)
  - permute((0, 3, 1, 2))
  - reshape((8, -1))
  - softmax(-1)
  - reshape((8, 9, 9))
  - pool: adaptive_maxpool2d(4)
  - adaptive_avgpool2d(2)
  - flatten
  - drop: dropout(0.25)
  - fc: linear(num_classes)
aux:
  head: {from: c, loss_weight: 0.3, module: [adaptive_avgpool2d(1), flatten, "linear(num_classes)"]}
"""


@pytest.fixture(scope="module")
def every_op(tmp_path_factory):
    path = tmp_path_factory.mktemp("interpret") / "every_op.yaml"
    path.write_text(EVERY_OP)
    return compile_spec(str(path))


def _one_layer(tmp_path, layer: str, shape="[3, 4, 5]"):
    path = tmp_path / "one.yaml"
    path.write_text(f"archspec: 1\nname: one\ninput: {shape}\nlayers:\n  - {layer}\n")
    return compile_spec(str(path))


def test_every_catalog_op_has_a_rule():
    assert set(RULES) == set(OPS)


def test_the_every_op_spec_uses_every_op(every_op):
    assert {n.op for n in program(every_op).nodes} == set(OPS)


def test_an_op_without_a_rule_is_refused_before_anything_runs(every_op):
    prog = program(every_op)
    bogus = Instr("new", "new_op", {}, (prog.output,), "new", "main", True, (), None)
    with pytest.raises(InterpretError, match="no interpreter rule for op new_op"):
        run(Program((*prog.nodes, bogus), "new", {}, prog.input_shape), {}, torch.zeros(1, 4, 9, 9))


@pytest.mark.parametrize("training", [False, True])
def test_no_tensor_changes_once_computed(every_op, training):
    """No in-place op: every input, state tensor and node output keeps its version counter."""
    state = random_state(every_op)
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    seen = [(t, t._version) for t in (x, *state.values())]
    result = run(every_op, state, x, training=training,
                 observe=lambda node, ins, out: seen.extend((t, t._version) for t in (*ins, out)))
    assert len(seen) > 40 and [v for _, v in seen] == [t._version for t, _ in seen]
    assert (set(result.aux), set(result.state) == set(state)) == ({"head"} if training else set(), True)


def test_batchnorm_is_pytorch_batchnorm(tmp_path):
    c = _one_layer(tmp_path, "bn: batchnorm2d(eps=0.01, momentum=0.3)")
    ref = torch.nn.BatchNorm2d(3, eps=0.01, momentum=0.3).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in (ref.weight, ref.bias, ref.running_mean):
            p.copy_(torch.randn(3, generator=gen, dtype=torch.float64))
        ref.running_var.copy_(torch.rand(3, generator=gen, dtype=torch.float64) + 0.5)
    state = {f"bn.{k}": v.clone() for k, v in ref.state_dict().items()}
    x = 3 * torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        assert (run(c, state, x).output - ref.eval()(x)).abs().max().item() < 1e-12
        trained = run(c, state, x, training=True)
        want = ref.train()(x)
    assert (trained.output - want).abs().max().item() < 1e-12
    for key in ("running_mean", "running_var"):
        assert (trained.state[f"bn.{key}"] - ref.state_dict()[key]).abs().max().item() < 1e-12
    assert trained.state["bn.num_batches_tracked"].item() == 1 and state["bn.num_batches_tracked"].item() == 0


def test_batchnorm_without_running_statistics_uses_the_batch_in_eval(tmp_path):
    c = _one_layer(tmp_path, "bn: batchnorm2d(affine=false, track_running_stats=false)")
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    ref = torch.nn.BatchNorm2d(3, affine=False, track_running_stats=False).double().eval()
    assert program(c).nodes[1].tensors == ()
    assert (run(c, {}, x).output - ref(x)).abs().max().item() < 1e-12


def test_dropout_masks_are_explicit_and_seeded(tmp_path):
    c = _one_layer(tmp_path, "drop: dropout(0.25)")
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    mask = (torch.arange(120).reshape(2, 3, 4, 5) % 3 == 0)
    assert torch.equal(run(c, {}, x).output, x)  # eval: the identity
    assert torch.equal(run(c, {}, x, training=True, masks={"drop": mask}).output, x * mask / 0.75)
    a, b, other = (run(c, {}, x, training=True, seed=s).output for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, other)
    kept = a != 0
    assert torch.allclose(a[kept], x[kept] / 0.75) and 0 < kept.sum().item() < 120
    with pytest.raises(InterpretError, match="no mask for dropout drop"):
        run(c, {}, x, training=True, masks={})


def test_dropout_with_p_1_gives_zeros(tmp_path):
    c = _one_layer(tmp_path, "drop: dropout(1.0)")
    out = run(c, {}, torch.randn(2, 3, 4, 5, dtype=torch.float64), training=True).output
    assert torch.count_nonzero(out).item() == 0


def test_aux_heads_run_in_training_only():
    c = compile_spec(str(ROOT / "tests/specs/ok/aux_heads.yaml"))
    state = random_state(c)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert run(c, state, x).aux == {}
    result = run(c, state, x, training=True)
    assert {k: tuple(v.shape) for k, v in result.aux.items()} == {"aux1": (2, 10), "aux2": (2, 10)}


def test_the_verifier_state_exercises_every_nonlinearity():
    """BatchNorm calibrated then perturbed, He weights, inputs 4 x N(0, 1): every ReLU sees negative
    values and values beyond 6 (where a ReLU6 would clip), and eval differs from training."""
    c = compile_spec(str(ROOT / "tests/specs/ok/residual.yaml"))
    state = random_state(c)
    assert all(not torch.equal(v, torch.zeros_like(v)) for k, v in state.items() if k.endswith("running_mean"))
    ranges = []

    def observe(node, ins, out):
        if node.op == "relu":
            ranges.append((ins[0].min().item(), ins[0].max().item()))

    x = 4 * torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eval_out = run(c, state, x, observe=observe).output
    assert len(ranges) == 9 and all(lo < 0 and hi > 6 for lo, hi in ranges), ranges
    assert (run(c, state, x, training=True).output - eval_out).abs().max().item() > 0.1
