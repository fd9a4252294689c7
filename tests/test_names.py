"""One namespace for generated identifiers (archspec/emit.py; issue 10, item 3 and class 2).

Both code generators allocate every identifier they write in an ``emit.Namespace``: names that
are state_dict keys (modules, aux heads) or constructor parameters (arguments) are kept as they
are or refused with a located error saying why; everything else (class names, locals, stored
arguments, loop variables, the outputs namedtuple's fields, deploy attributes) is renamed away
from Python's names, nn.Module's attributes, the file's imports and each other. The renamed
modules are checked against the reference interpreter by `build --verify`.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from archspec import cli
from archspec.emit import (NN_MODULE_ATTRS, TRAINING_IMPORTS, Namespace, attribute_names, file_names, new_class)
from archspec.errors import GenerateError, Loc


def test_the_static_list_of_nn_module_attributes_is_not_stale():
    """NN_MODULE_ATTRS is written out so that building needs no torch; a torch that adds an
    attribute to nn.Module fails here until the list has it."""
    torch = pytest.importorskip("torch")
    assert {name for name in dir(torch.nn.Module()) if not name.startswith("__")} - NN_MODULE_ATTRS == set()
    assert {"eval", "to", "train", "parameters", "training", "_modules", "forward", "_parameters"} <= NN_MODULE_ATTRS


def test_a_namespace_hands_out_each_name_once():
    forward = Namespace({"self": "forward's self"}, outer=file_names(TRAINING_IMPORTS))
    wanted = ["out", "out", "torch", "range", "__x", "_", "_", "1x", "self", "out_"]
    assert [forward.fresh(w) for w in wanted] == ["out", "out_2", "torch_", "range_", "x", "_", "_2", "t", "self_",
                                                  "out_"]
    forward.release("out")  # a dead local's name is free again
    assert forward.fresh("out") == "out"
    with pytest.raises(GenerateError) as caught:
        forward.claim("out_2", "argument", Loc("n.yaml", 3, 5), " of block B", ": rename it")
    assert caught.value.format(with_source=False) == "n.yaml:3:5: error: argument 'out_2' of block B would hide a generated name: rename it"


def test_a_class_is_never_named_like_a_parameter_of_its_methods():
    files = file_names(TRAINING_IMPORTS)
    assert [new_class(files, want, "a class") for want in ("F", "self", "x", "num_classes", "Net", "Net")] == \
        ["F_", "self_", "x_", "num_classes_", "Net", "Net_2"]


def test_module_attributes_are_kept_or_refused():
    attrs = attribute_names({"aux_logits": "the model's own aux_logits switch"})
    assert attrs.claim("conv", "module", None) == "conv"
    assert attrs.fresh("conv") == "conv_2"  # an argument stored beside the module conv
    assert attrs.fresh("_modules") == "_modules_"
    for name, why in (("eval", "nn.Module's own eval"), ("_buffers", "nn.Module's own _buffers"),
                      ("aux_logits", "the model's own aux_logits switch"), ("conv", "the module conv")):
        with pytest.raises(GenerateError) as caught:
            attrs.claim(name, "module", None)
        assert caught.value.message == f"module '{name}' would hide {why}"


# --- through build --verify: renamed names compute what the spec says ---------------------------

def _build(tmp_path, name: str, text: str, *options) -> tuple:
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["build", *options, str(spec), "-o", str(tmp_path / "out")])
    return rc, err.getvalue()


HOSTILE = """archspec: 1
name: renamed
class_name: F               # the F the file imports
input: [2, 6, 6]
num_classes: 3
args:
  s: float = 2.0            # read in forward before the module s
blocks:
  torch:                    # a class named like an import
    args: {_modules: float, _: int = 2}    # stored as nn.Module's _modules; hidden by `for _ in`
    layers:
      - seq:
          - conv2d(_, 1)
          - repeat: _
            body: ["conv2d(_, 1)"]
      - scale(_modules)
  target:                   # loss()'s parameter
    layers:
      - relu
      - c: conv2d(2, 1)
layers:
  - b: torch(0.5)
  - scale(s)
  - s: conv2d(2, 1)
  - channels_last: conv2d(2, 1)   # the deploy module's own switch
  - t: target
  - add:
      - - relu
      - []
  - flatten
  - fc: linear(num_classes)
aux:
  count: {from: b, loss_weight: 0.3, module: [flatten, "linear(num_classes)"]}    # tuple.count
  _aux: {from: s, loss_weight: 0.2, module: [flatten, "linear(num_classes)"]}     # no namedtuple field
  out: {from: t, loss_weight: 0.1, module: [flatten, "linear(num_classes)"]}      # the add's local
"""


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_hostile_names_are_renamed_and_the_module_verifies(tmp_path):
    pytest.importorskip("torch")
    assert _build(tmp_path, "renamed", HOSTILE, "--verify") == (0, "")
    text = (tmp_path / "out" / "renamed.py").read_text()
    for line in ('F_Outputs = namedtuple("F_Outputs", ["logits", "count_", "aux", "out"])',
                 "class F_(nn.Module):", "class torch_(nn.Module):", "class target_(nn.Module):",
                 "        self.b = torch_(2, 0.5)",
                 "        for _2 in range(_):", "            layers.append(nn.Conv2d(_, _, kernel_size=1))",
                 "        self._modules_ = _modules", "        self.s_2 = s", "        x = x * self.s_2  # N x 2 x 6 x 6",
                 "        out_2 = F.relu(x)  # N x 2 x 6 x 6", "            return F_Outputs(x, count, _aux, out)",
                 "            + 0.2 * F.cross_entropy(outputs.aux, target)"):
        assert line in text.splitlines(), line
    assert _build(tmp_path, "renamed", HOSTILE, "--deploy", "--verify") == (0, "")
    deploy = (tmp_path / "out" / "renamed_deploy.py").read_text()
    assert "class F_Deploy(nn.Module):" in deploy
    assert '    ("channels_last_", [("channels_last", None, 1.0)]),' in deploy.splitlines()


SMALL = "archspec: 1\nname: {name}\ninput: [2, 6, 6]\nnum_classes: 3\n{rest}"
TAIL = "  - flatten\n  - fc: linear(num_classes)\n"
KEEP_MODULE = ": rename it (archspec cannot: a module's name starts its state_dict keys)"
KEEP_ARG = ": rename it (archspec cannot: an argument is a parameter of the generated class)"

REFUSED = [
    ("block_module", "blocks:\n  B:\n    layers:\n      - _parameters: conv2d(2, 1)\nlayers:\n  - b: B\n" + TAIL,
     "8:9", "module '_parameters' of block B would hide nn.Module's own _parameters" + KEEP_MODULE),
    ("aux_logits", "layers:\n  - aux_logits: conv2d(2, 1)\n" + TAIL + "aux:\n  a: {from: aux_logits, loss_weight: 1, "
     "module: [flatten, 'linear(3)']}\n", "6:5", "module 'aux_logits' would hide the model's own aux_logits switch" + KEEP_MODULE),
    ("block_argument", "blocks:\n  B:\n    args: {nn: int}\n    layers: [{c: 'conv2d(nn, 1)'}]\nlayers:\n  - b: B(2)\n" + TAIL,
     "7:12", "argument 'nn' of block B would hide the nn that the generated file imports" + KEEP_ARG),
    ("model_argument", "args:\n  range: int = 2\nlayers:\n  - c: conv2d(range, 1)\n" + TAIL,
     "6:3", "argument 'range' of the model would hide Python's builtin range" + KEEP_ARG),
    ("argument_named_like_a_block", "args:\n  B: int = 2\nblocks:\n  B:\n    layers: [relu]\nlayers:\n  - b: B\n" + TAIL,
     "6:3", "argument 'B' of the model would hide the class of block B" + KEEP_ARG),
    ("aux_logits_field", "layers:\n  - c: conv2d(2, 1)\n" + TAIL + "aux:\n  logits: {from: c, loss_weight: 1, "
     "module: [flatten, 'linear(3)']}\n", "10:3", "aux head 'logits' would hide the main output's field logits of the "
     "outputs namedtuple: rename it, or name the fields with outputs:"),
    ("typing", "layers:\n" + TAIL, "2:7", "name 'typing' would write typing.py, which Python, run in its directory, "
     "imports in place of the module typing (the generated file imports torch, and torch much of Python's library): "
     "choose another name"),
]


@pytest.mark.parametrize("name,rest,where,message", REFUSED, ids=[r[0] for r in REFUSED])
def test_names_that_must_be_kept_are_refused_where_they_are_written(tmp_path, name, rest, where, message):
    rc, err = _build(tmp_path, name, SMALL.format(name=name, rest=rest))
    assert rc == 1 and err.startswith(f"{tmp_path / name}.yaml:{where}: error: {message}\n"), err
    assert not (tmp_path / "out").exists()


AUX_LOCAL = """archspec: 1
name: auxlocal
input: [2, 6, 6]
num_classes: 3
layers:
  - c: conv2d(4, 1)
  - concat:
      - aux: conv2d(2, 1)       # a branch named aux: its local wants `aux` too
      - - relu
  - flatten
  - fc: linear(num_classes)
aux:
  head: {from: c, loss_weight: 0.5, module: [flatten, "linear(num_classes)"]}
"""


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_one_aux_heads_output_is_aux_and_a_module_aux_does_not_take_it(tmp_path):
    """One aux head: its output is the local `aux` (torchvision's Inception3); a concat branch whose
    module is called aux, read after it, gets the next free name, and the module verifies."""
    pytest.importorskip("torch")
    assert _build(tmp_path, "auxlocal", AUX_LOCAL, "--verify") == (0, "")
    lines = (tmp_path / "out" / "auxlocal.py").read_text().splitlines()
    for line in ("        aux: Optional[Tensor] = None", "            aux = self.head(x)  # N x 3",
                 "        aux_2 = self.aux(x)  # N x 2 x 6 x 6", "        x = torch.cat([aux_2, branch2], 1)  # N x 6 x 6 x 6",
                 "            return AuxlocalOutputs(x, aux)"):
        assert line in lines, line
