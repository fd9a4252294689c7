"""Wrong code of issue 10, classes 1 and 2: valid specs whose generated module computed wrong
numbers, or failed at import or in forward, while `check`, `build` and the old `build --verify`
(parameters, shapes, MACs) all passed.

Each test runs `archspec build --verify` on one such spec and asserts what must happen once the
bug is fixed: the build verifies (exit 0), or the spec is refused with a located error (a name
that cannot be kept verbatim). Today each fails in exactly the way its xfail reason quotes, and
only that way: the test raises ``CaughtToday`` when `build --verify` fails with that message,
which is the interpreter comparison (or the import/forward check) catching the wrong code (or, for
a module named `input`, an internal error before any code is written). Any
other failure is a real test failure, and a fix makes the test pass, which `strict` turns red
until the mark is removed.
"""
from __future__ import annotations

import contextlib
import io
import re

import pytest

pytest.importorskip("torch")

from archspec import cli  # noqa: E402


class CaughtToday(Exception):
    """`build --verify` rejects today's wrong code with the expected message."""


HEAD = "archspec: 1\nname: {name}\ninput: [2, 6, 6]\nnum_classes: 3\n"
TAIL = "  - flatten\n  - fc: linear(num_classes)\n"

# (id, spec body after the head, extra build options, the message build --verify gives today, xfail reason)
CASES = [
    ("relu_first_in_add", """layers:
  - c: conv2d(2, 1)
  - add:
      - - r: relu
      - []
""" + TAIL, [], "output in eval: generated differs from the interpreter by 7.19",
     "issue 10 class 1 (in-place aliasing): a named relu first in an add: branch is nn.ReLU(inplace=True) and "
     "overwrites the tensor the identity branch reads (2*relu(x) instead of relu(x)+x): build --verify exits 1, "
     "'output in eval: generated differs from the interpreter by 7.19 (max |difference|; the interpreter's max "
     "|value| is 11.4, tolerance 1e-06 of it)'"),
    ("relu_after_dropout", """layers:
  - c: conv2d(2, 1)
  - add:
      - - d: dropout(0.5)
        - r: relu
      - []
""" + TAIL, [], "output in eval: generated differs from the interpreter by 7.19",
     "issue 10 class 1 (in-place aliasing): dropout is the identity in eval, so the in-place relu after it "
     "overwrites the shared input: build --verify exits 1, 'output in eval: generated differs from the "
     "interpreter by 7.19'"),
    ("relu_after_identity_in_sequential", """layers:
  - c: conv2d(2, 1)
  - add:
      - - s: [identity, relu]
      - []
""" + TAIL, [], "output in eval: generated differs from the interpreter by 7.19",
     "issue 10 class 1 (in-place aliasing): nn.ReLU(inplace=True) after nn.Identity() in a Sequential writes "
     "into the block's input: build --verify exits 1, 'output in eval: generated differs from the interpreter "
     "by 7.19'"),
    ("two_relu_in_a_row", """layers:
  - c: conv2d(2, 1)
  - r1: relu
  - r2: relu
""" + TAIL, [], "the generated module fails in backward (training): RuntimeError: one of the variables needed "
                "for gradient computation has been modified by an inplace operation",
     "issue 10 class 1 (in-place aliasing): the second in-place relu overwrites the output the first one's "
     "backward needs: build --verify exits 1, 'the generated module fails in backward (training): RuntimeError: "
     "one of the variables needed for gradient computation has been modified by an inplace operation'"),
    ("aux_named_out", """layers:
  - c: conv2d(2, 1)
  - add:
      - - c1: conv2d(2, 3, padding=1)
      - - c2: conv2d(2, 1)
""" + TAIL + """aux:
  out: {from: c, loss_weight: 0.3, module: [flatten, "linear(num_classes)"]}
""", [], "aux head out in training: generated shape [2, 2, 6, 6], interpreter [2, 3]",
     "issue 10 class 2 (names): the aux head's local `out` is overwritten by the add's `out`, so the model "
     "returns a feature map as the aux output: build --verify exits 1, 'aux head out in training: generated "
     "shape [2, 2, 6, 6], interpreter [2, 3]'"),
    ("aux_named_branch1", """layers:
  - c: conv2d(2, 1)
  - concat:
      - - maxpool2d(3, stride=1, padding=1)
      - - avgpool2d(3, stride=1, padding=1)
""" + TAIL + """aux:
  branch1: {from: c, loss_weight: 0.3, module: [flatten, "linear(num_classes)"]}
""", [], "aux head branch1 in training: generated shape [2, 2, 6, 6], interpreter [2, 3]",
     "issue 10 class 2 (names): the aux head's local `branch1` is overwritten by the concat's first branch: "
     "build --verify exits 1, 'aux head branch1 in training: generated shape [2, 2, 6, 6], interpreter [2, 3]'"),
    ("module_named_eval", "layers:\n  - eval: conv2d(2, 1)\n" + TAIL, [],
     "the generated module fails in forward (eval): TypeError: Module.eval() takes 1 positional argument but 2 were given",
     "issue 10 class 2 (names): self.eval is nn.Module.eval, not the conv: build --verify exits 1, 'the "
     "generated module fails in forward (eval): TypeError: Module.eval() takes 1 positional argument but 2 were given'"),
    ("module_named_to", "layers:\n  - to: conv2d(2, 1)\n" + TAIL, [],
     "the generated module fails in forward (eval): TypeError: flatten(): argument 'input' (position 1) must be Tensor",
     "issue 10 class 2 (names): self.to(x) is nn.Module.to and returns the model: build --verify exits 1, 'the "
     "generated module fails in forward (eval): TypeError: flatten(): argument 'input' (position 1) must be "
     "Tensor, not ModuleNamedTo'"),
    ("module_named_parameters", "layers:\n  - parameters: conv2d(2, 1)\n" + TAIL, [],
     "the generated module fails in forward (eval): TypeError: flatten(): argument 'input' (position 1) must be Tensor, not generator",
     "issue 10 class 2 (names): self.parameters(x) is nn.Module.parameters: build --verify exits 1, 'the "
     "generated module fails in forward (eval): TypeError: flatten(): argument 'input' (position 1) must be "
     "Tensor, not generator'"),
    ("module_named__modules", "layers:\n  - _modules: conv2d(2, 1)\n" + TAIL, [],
     "the generated module fails in construction: AttributeError: cannot assign module before Module.__init__() call",
     "issue 10 class 2 (names): `self._modules = nn.Conv2d(...)` replaces nn.Module's own dict: build --verify "
     "exits 1, 'the generated module fails in construction: AttributeError: cannot assign module before "
     "Module.__init__() call'"),
    ("aux_named_train", """layers:
  - c: conv2d(2, 1)
""" + TAIL + """aux:
  train: {from: c, loss_weight: 0.3, module: [flatten, "linear(num_classes)"]}
""", [], "the generated module fails in forward (training): ValueError: training mode is expected to be boolean",
     "issue 10 class 2 (names): the aux head attribute `train` shadows nn.Module.train: build --verify exits 1, "
     "'the generated module fails in forward (training): ValueError: training mode is expected to be boolean'"),
    ("aux_named__aux", """layers:
  - c: conv2d(2, 1)
""" + TAIL + """aux:
  _aux: {from: c, loss_weight: 0.3, module: [flatten, "linear(num_classes)"]}
""", [], "the generated module fails in import: ValueError: Field names cannot start with an underscore: '_aux'",
     "issue 10 class 2 (names): namedtuple refuses the field `_aux`: build --verify exits 1, 'the generated "
     "module fails in import: ValueError: Field names cannot start with an underscore: '_aux''"),
    ("block_argument__modules", """blocks:
  B:
    args: {_modules: float}
    layers:
      - c: conv2d(2, 1)
      - scale(_modules)
layers:
  - b: B(0.5)
""" + TAIL, [], "AttributeError: 'float' object has no attribute 'items'",
     "issue 10 class 2 (names): forward reads the argument from `self._modules = _modules`, which replaces "
     "nn.Module's module dict: build --verify exits 1, 'the generated module fails in construction: "
     "AttributeError: 'float' object has no attribute 'items''"),
    ("model_argument_read_before_a_module_of_its_name", """args:
  s: float = 2.0
layers:
  - c: conv2d(2, 1)
  - scale(s)
  - s: conv2d(2, 1)
""" + TAIL, [], "the generated module fails in construction: TypeError: cannot assign 'float' as child module 's'",
     "issue 10 class 2 (names): `self.s` is both the stored argument and the module: build --verify exits 1, "
     "'the generated module fails in construction: TypeError: cannot assign 'float' as child module 's' "
     "(torch.nn.Module or None expected)'"),
    ("argument_underscore_rebound_by_a_loop", """blocks:
  B:
    args: {_: int}
    layers:
      - seq:
          - conv2d(_, 1)
          - repeat: 2
            body: ["conv2d(_, 1)"]
layers:
  - b: B(3)
""" + TAIL, [], "the generated module fails in forward (eval): RuntimeError: Given groups=1, expected weight to be "
                "at least 1 at dimension 0, but got weight of size [0, 0, 1, 1] instead",
     "issue 10 class 2 (names): `*(nn.Conv2d(_, _, kernel_size=1) for _ in range(2))` rebinds the argument `_` "
     "to the loop counter: build --verify exits 1, 'the generated module fails in forward (eval): RuntimeError: "
     "Given groups=1, expected weight to be at least 1 at dimension 0, but got weight of size [0, 0, 1, 1] instead'"),
    ("deploy_attribute_starting_with_two_underscores", """blocks:
  B:
    layers:
      - _c: conv2d(2, 1)
      - relu
layers:
  - _: B
""" + TAIL, ["--deploy"], "the generated module fails in from_trained: AttributeError: "
                            "DeployAttributeStartingWithTwoUnderscoresDeploy has no attribute `___c`",
     "issue 10 class 2 (names): the deploy attribute `___c` (from the path `_._c`) is name-mangled inside the "
     "class: build --deploy --verify exits 1, 'the generated module fails in from_trained: AttributeError: "
     "DeployAttributeStartingWithTwoUnderscoresDeploy has no attribute `___c`'"),
    ("module_named_input", "layers:\n  - input: conv2d(2, 1)\n" + TAIL, [],
     "archspec: internal error: ValueError: duplicate node name 'input'",
     "issue 10 class 2 (names): the module `input` takes the graph node name of the network input: build exits "
     "3, 'archspec: internal error: ValueError: duplicate node name 'input' (run with --debug for the traceback)'"),
    ("spec_named_torch", "layers:\n  - c: conv2d(2, 1)\n" + TAIL, [],
     "torch.py shadows the module 'torch' it imports",
     "issue 10 class 2 (names): `name: torch` writes torch.py, which `import torch` finds first in its own "
     "directory: build --verify exits 1, 'torch.py shadows the module 'torch' it imports: run from its "
     "directory, 'import torch' imports the generated file itself'"),
]


def _build_verify(tmp_path, name: str, body: str, extra: list) -> tuple:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(HEAD.format(name=name) + body)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["build", "--verify", *extra, str(spec), "-o", str(tmp_path / "out")])
    return rc, err.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name,body,extra,today", [
    pytest.param(name if name != "spec_named_torch" else "torch", body, extra, today, id=name,
                 marks=pytest.mark.xfail(strict=True, raises=CaughtToday, reason=reason))
    for name, body, extra, today, reason in CASES])
def test_build_verify_passes_or_refuses_with_a_located_error(tmp_path, name, body, extra, today):
    rc, err = _build_verify(tmp_path, name, body, extra)
    if rc != 0 and today in err:
        raise CaughtToday(err)
    located = re.search(rf"{re.escape(name)}\.yaml:\d+:\d+: error: ", err)
    assert rc == 0 or (rc == 1 and located and "differs from" not in err), err
