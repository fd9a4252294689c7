"""In place only where the graph proves it safe (issue 10, class 1 and item 4).

``emit.in_place_nodes`` decides from the lowered graph which relu may overwrite its input: the
input has no other reader (aux heads included), is fresh memory no backward keeps (not the output
of relu, dropout, identity or flatten) and is not a tensor a forward was given or returns. The
training module applies it in every instance of a block; the deploy module applies the same rule
to its own graph. tests/test_wrong_code.py holds the wrong-code cases this fixes, each checked
against the reference interpreter.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from archspec import cli
from archspec.emit import in_place_nodes
from archspec.pipeline import compile_spec

# One relu of each kind; the comment says whether it may run in place and why.
SPEC = """archspec: 1
name: inplace
input: [2, 6, 6]
num_classes: 3
blocks:
  B:
    layers:
      - relu                 # no: the block's input
      - c: conv2d(2, 1)
      - relu                 # yes: a convolution's output, read once
layers:
  - c1: conv2d(2, 1)
  - r1: relu                 # yes
  - r2: relu                 # no: relu's backward reads r1's output
  - c2: conv2d(2, 1)
  - add:
      - - relu               # no: the identity branch reads c2's output too
      - []
  - c3: conv2d(2, 1)
  - d: dropout(0.5)
  - relu                     # no: dropout is its input in eval
  - c4: conv2d(2, 1)
  - s: [identity, relu]      # no: identity is its input
  - b: B
  - c5: conv2d(2, 1)
  - relu                     # no: the aux head a reads c5's output too
  - c6: conv2d(2, 1)
  - flatten
  - relu                     # no: flatten returns a view of c6's output
  - fc: linear(num_classes)
aux:
  a: {from: c5, loss_weight: 0.3, module: [flatten, "linear(num_classes)"]}
  o: {from: fc, loss_weight: 0.3, module: relu}   # no: fc's output is the network's output
"""


def test_in_place_is_decided_from_the_graph(tmp_path):
    spec = tmp_path / "inplace.yaml"
    spec.write_text(SPEC)
    graph = compile_spec(str(spec)).graph
    assert sorted(n.name for n in graph if n.op == "relu") == \
        ["/relu", "/relu_1", "/relu_2", "/relu_3", "b/relu", "b/relu_1", "o", "r1", "r2", "s.1"]
    assert sorted(n.name for n in in_place_nodes(graph)) == ["b/relu_1", "r1"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_generated_module_runs_in_place_exactly_there_and_verifies(tmp_path):
    pytest.importorskip("torch")
    spec = tmp_path / "inplace.yaml"
    spec.write_text(SPEC)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["build", "--verify", str(spec), "-o", str(tmp_path)]) == 0
    lines = [line.strip() for line in (tmp_path / "inplace.py").read_text().splitlines()
             if "nn.ReLU(" in line or "F.relu(" in line]
    assert lines == ["self.r1 = nn.ReLU(inplace=True)", "self.r2 = nn.ReLU()", "nn.ReLU(),", "self.o = nn.ReLU()",
                     "out = F.relu(x)  # N x 2 x 6 x 6", "x = F.relu(x)  # N x 2 x 6 x 6",
                     "x = F.relu(x)  # N x 2 x 6 x 6", "x = F.relu(x)  # N x 72",
                     "x = F.relu(x)  # N x 2 x 6 x 6", "x = F.relu(x, inplace=True)  # N x 2 x 6 x 6"]


FUSED = """archspec: 1
name: fused
input: [2, 6, 6]
num_classes: 3
layers:
  - c: conv2d(4, 1)
  - concat:
      - - a: conv2d(2, 1)
        - relu
      - - b: conv2d(2, 1)
  - relu
  - flatten
  - fc: linear(num_classes)
"""


def test_the_deploy_module_writes_no_view_in_place_and_runs_with_gradients(tmp_path):
    """Sibling convolutions fused into one, of which only some are followed by relu: the pieces
    are views split() returns, which autograd forbids writing in place. A deploy module made with
    its constructor (to load a saved state_dict) has parameters that require gradients."""
    torch = pytest.importorskip("torch")
    spec = tmp_path / "fused.yaml"
    spec.write_text(FUSED)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["build", "--deploy", "--verify", str(spec), "-o", str(tmp_path)]) == 0
    text = (tmp_path / "fused_deploy.py").read_text()
    section = text.split("x = x.contiguous(memory_format=torch.channels_last)\n")[1].split("@classmethod")[0]
    forward = [line.strip() for line in section.splitlines() if line.strip()]
    assert forward == ["x = self.c(x)  # N x 4 x 6 x 6",
                       "a, x = self.fused(x).split([2, 2], 1)  # N x (2 + 2) x 6 x 6",
                       "a = F.relu(a)",  # was F.relu(a, inplace=True)
                       "a = torch.cat([a, x], 1)  # N x 4 x 6 x 6",
                       "a = F.relu(a, inplace=True)  # N x 4 x 6 x 6",  # the output of cat, read once
                       "a = torch.flatten(a, 1)  # N x 144",
                       "x = self.fc(a)  # N x 3",
                       "return x"]
    namespace: dict = {}
    exec(compile(text, "fused_deploy.py", "exec"), namespace)
    model = namespace["FusedDeploy"]()
    x = torch.randn(2, 2, 6, 6, requires_grad=True)
    model(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
