"""`archspec import` (docs/import.md): a PyTorch model -> a spec -> a generated module holding the
same state_dict (keys, order, shapes) and computing the same outputs.

The small models of tests/import_models.py show what the import reads and what it refuses; every
stock spec goes round the loop (its generated module imported, built again); torchvision's own
models import to the stock specs' totals and load into the imported spec's module.
"""
from __future__ import annotations

import os
import sys

import pytest
import yaml

from conftest import ROOT, load_into, randomise_batchnorm

torch = pytest.importorskip("torch")

from archspec.errors import ErrorList, ImportModelError, flatten  # noqa: E402
from archspec.generate import generate  # noqa: E402
from archspec.importer import import_model, import_target  # noqa: E402
from archspec.pipeline import compile_spec  # noqa: E402
from archspec.verify import import_generated, model_class  # noqa: E402

MODELS = ROOT / "tests" / "import_models.py"
TOTALS = ("params", "params_eval", "buffers", "macs", "depth", "output")


def _totals(c) -> dict:
    t = c.analysis.totals
    return {k: getattr(t, k) if k != "output" else list(c.analysis.output) for k in TOTALS}


def _module_of(compiled, tmp_path):
    """The class of the module the imported spec generates."""
    path = tmp_path / f"{compiled.name}_imported.py"
    path.write_text(generate(compiled))
    return model_class(import_generated(str(path)), compiled)


def _at(result, tmp_path, shape):
    """The imported spec compiled at another input size (expect: is then not checked)."""
    path = tmp_path / f"{result.name}.yaml"
    path.write_text(result.text)
    return compile_spec(str(path), input_shape=shape)


def _randomised(model, size: int):
    """BatchNorm statistics measured on a batch, then perturbed, affine values drawn wide: deep
    networks (ResNet-152) stay finite and every BatchNorm and activation matters."""
    randomise_batchnorm(model, 4 * torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3)))
    return model


def _outputs(a, b, size: int, training: bool = False):
    torch.manual_seed(1)
    x = 4 * torch.randn(2, 3, size, size)  # both signs and large values: every nonlinearity is hit
    a.train(training)
    b.train(training)
    with torch.no_grad():
        torch.manual_seed(2)
        ya = a(x)
        torch.manual_seed(2)
        yb = b(x)
    for y in (ya, yb):
        for t in (y if isinstance(y, tuple) else (y,)):  # a namedtuple of outputs in training
            assert torch.isfinite(t).all(), "outputs that are not finite compare nothing"
    return ya, yb


def _line_of(text: str) -> int:
    return next(i for i, line in enumerate(MODELS.read_text().splitlines(), 1) if text in line)


# --- what import reads ------------------------------------------------------------------------------

def test_functional_calls_become_catalog_ops_and_merges(tmp_path):
    import import_models

    torch.manual_seed(0)
    model = import_models.Functional()
    randomise_batchnorm(model)
    r = import_model(model, "functional", (3, 16, 16))
    layers = yaml.safe_load(r.text)["layers"]
    assert layers == [
        {"conv": "conv2d(16, 3, padding=1, bias=false)"}, {"bn": "batchnorm2d"}, "relu",   # F.relu(..., inplace=True)
        "maxpool2d(3, stride=2, padding=1, ceil_mode=true)",                                 # F.max_pool2d
        {"concat": [{"left": "conv2d(8, 3, padding=1)"}, []], "split": 2},                   # x.chunk(2, 1), torch.cat
        {"add": [[], [{"mul": [[], [{"gate": "conv2d(16, 1)"}, "sigmoid"]]}]]},              # x + x * torch.sigmoid(.)
        {"layer_scale": "parameter((16, 1, 1), 0.5)"}, "scale(0.5)",                         # nn.Parameter * x * 0.5
        {"dropout": "dropout(0.1)"},                 # F.dropout(training=self.training): a module, no state_dict key
        "adaptive_avgpool2d(1)", "flatten",          # x.mean([2, 3])
        {"fc": "linear(num_classes)"}]
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())
    ya, yb = _outputs(model, mine, 16)
    assert (ya - yb).abs().max() <= 1e-6 * ya.abs().max()  # mean and adaptive pooling round alike, not bitwise


def test_densenet_layers_given_the_features_so_far_are_concats(torchvision, tmp_path):
    """torchvision's _DenseBlock passes each layer the list of the features so far, which the layer
    concatenates: x = cat([x, layer(x)]) each time (concatenation is associative), written as the
    language writes dense connectivity; the keys are torchvision's and the outputs equal."""
    torch.manual_seed(0)
    model = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 3), num_init_features=8, bn_size=2,
                                        num_classes=10)
    randomise_batchnorm(model)
    r = import_model(model, "densenet", (3, 32, 32))
    blocks = yaml.safe_load(r.text)["blocks"]
    assert blocks["DenseBlock2"]["layers"] == [{"concat": [[], {f"denselayer{i}": "DenseLayer"}]} for i in (1, 2, 3)]
    assert blocks["DenseLayer"]["layers"] == [
        {"norm1": "batchnorm2d"}, {"relu1": "relu"}, {"conv1": "conv2d(8, 1, bias=false)"},
        {"norm2": "batchnorm2d"}, {"relu2": "relu"}, {"conv2": "conv2d(4, 3, padding=1, bias=false)"}]
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())
    ya, yb = _outputs(model, mine, 32)
    assert torch.equal(ya, yb)


def test_one_block_per_class_with_the_constructors_argument_names(tmp_path):
    r = import_target(f"{MODELS}:units", {"width": 4}, (3, 16, 16))
    spec = yaml.safe_load(r.text)
    assert spec["blocks"] == {"Unit": {
        "doc": "import_models.Unit (5 instances in the model).",
        "args": {"out": "int", "stride": "size = 1", "project": "bool = false"},  # the constructor's flag: if:
        "layers": [{"add": [[{"conv": "conv2d(out, 3, stride=stride, padding=1, bias=false)"},
                             {"bn": "batchnorm2d(eps=0.001)"}],
                            {"proj": "conv2d(out, 1, stride=stride, bias=false)", "if": "project"}]},
                   "relu"]}}
    assert spec["layers"][1:3] == [{"stage1": [{"repeat": 3, "body": ["Unit(4)"]}]},
                                   {"stage2": ["Unit(8, stride=2, project=true)", "Unit(8)"]}]
    # stem 112 + 3 x 152 + (288 + 16 + 32) + (576 + 16) + fc 90; MACs at 16 x 16 (conv and linear)
    assert spec["expect"] == {"params": 1586, "params_eval": 1586, "buffers": 61, "macs": 195664, "output": [10]}
    import import_models

    torch.manual_seed(0)
    model = import_models.units(width=4)
    randomise_batchnorm(model)
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())
    ya, yb = _outputs(model, mine, 16)
    assert torch.equal(ya, yb)


def test_a_module_list_called_in_a_loop_is_a_sequential(tmp_path):
    import import_models

    torch.manual_seed(0)
    model = import_models.Stacked()
    randomise_batchnorm(model)
    r = import_model(model, "stacked", (3, 16, 16))
    assert yaml.safe_load(r.text)["layers"][1] == {"blocks": [{"repeat": 3, "body": ["Unit"]}]}
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())  # blocks.0.conv.weight, ...
    ya, yb = _outputs(model, mine, 16)
    assert (ya - yb).abs().max() <= 1e-6 * ya.abs().max()


def test_aux_heads_and_the_training_outputs(tmp_path):
    import import_models

    model = import_models.WithAux()
    r = import_model(model, "with_aux", (3, 16, 16))
    spec = yaml.safe_load(r.text)
    assert spec["aux"] == {"aux": {"from": "stage1", "loss_weight": 0.3, "module": "Head(num_classes)"}}
    assert "loss_weight: 0.3  # archspec import's default: the model does not say; edit it" in r.text
    assert spec["outputs"] == {"type": "Outputs", "fields": {"logits": "main", "aux_logits": "aux"}}
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())
    ya, yb = _outputs(model, mine, 16, training=True)
    assert type(yb).__name__ == "Outputs" and yb._fields == ("logits", "aux_logits")
    assert torch.equal(ya.logits, yb.logits) and torch.equal(ya.aux_logits, yb.aux_logits)
    ya, yb = _outputs(model, mine, 16)
    assert torch.equal(ya, yb)


# --- what import refuses: the module, the op or the source line ------------------------------------

REFUSED = [
    ("DataDependent", "DataDependent: data-dependent control flow (a Python if, loop or assert on a tensor's value "
                      "or shape)", "if x.sum() > 0:"),
    ("Transposed", "Transposed: torch.transpose is not in the op catalog (archspec/ops.py)", "torch.transpose("),
    ("Shared", "Shared: calls 'conv' 2 times (a spec's modules are used once; shared weights cannot be written)",
     "self.conv(self.conv("),
    ("Dense", "Dense: its value is read again after the merge that follows it (the spec's merges read one common "
              "input) (cat)", "y = torch.cat("),
    ("Unused", "spare (Linear): is never called by its parent's forward: its state_dict keys would be lost",
     "self.spare ="),
    ("GivenList", "pick (Picked): is given a list of tensors and uses it other than by torch.cat(list, 1)",
     "self.pick = Picked()"),
]


@pytest.mark.parametrize("name,message,line", REFUSED, ids=[c[0] for c in REFUSED])
def test_what_cannot_be_imported_is_named_and_located(name, message, line):
    with pytest.raises(ImportModelError) as info:
        import_target(f"{MODELS}:{name}", input_shape=(3, 16, 16))
    (err,) = flatten(info.value)
    assert err.message == message
    assert (err.loc.file, err.loc.line) == (str(MODELS), _line_of(line))


def test_modules_refused_for_one_reason_at_one_line_are_one_error():
    with pytest.raises(ErrorList) as info:
        import_target(f"{MODELS}:Rolled", input_shape=(3, 16, 16))
    errors = {e.message: e.loc for e in flatten(info.value)}
    assert sorted(errors) == [
        "blocks.0 (Partly): torch.roll is not in the op catalog (archspec/ops.py) (and 2 more modules like it)",
        "blocks.2 (Unflatten): nn.Unflatten is not in the op catalog (archspec/ops.py) (and 1 more module like it)"]
    assert errors[sorted(errors)[0]].line == _line_of("torch.roll(")


def test_partial_writes_the_rest_with_the_unsupported_part_marked(cli, tmp_path):
    out = tmp_path / "partly.yaml"
    proc = cli("import", f"{MODELS}:Partly", "--input", "3x16x16", "--partial", "-o", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"{MODELS}:{_line_of('torch.roll(')}:9: error: Partly: torch.roll is not in the op catalog" in proc.stderr
    text = out.read_text()
    assert "UNSUPPORTED: 1 part(s) could not be imported" in text
    assert f"  - identity  # UNSUPPORTED ({MODELS}:{_line_of('torch.roll(')}): torch.roll is not in the op catalog " \
           "(archspec/ops.py)\n" in text
    assert "expect:" not in text
    assert yaml.safe_load(text)["layers"][:3] == [{"conv": "conv2d(4, 3, padding=1)"}, "relu", "identity"]


def test_the_command_writes_a_spec_that_checks(cli, tmp_path):
    out = tmp_path / "units.yaml"
    proc = cli("import", f"{MODELS}:units", "--arg", "width=4", "--arg", "num_classes=7", "--input", "3x16x16",
               "--name", "small_units", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == f"{out}: written (small_units)\n"
    text = out.read_text()
    assert text.startswith("# Imported by `archspec import ")
    assert "--arg width=4 --arg num_classes=7 --input 3x16x16` (archspec " in text.splitlines()[0]
    check = cli("check", out)
    assert check.returncode == 0, check.stderr
    assert "Params (training, all parts): 1,559" in check.stdout and "[1, 7]" in check.stdout


@pytest.mark.parametrize("args,message", [
    (["nocolon"], "TARGET must be package.module:callable or path/to/file.py:Name, got 'nocolon'"),
    (["no_such_module_xyz:build"], "no module named 'no_such_module_xyz' (TARGET is package.module:callable or "
                                   "file.py:Name)"),
    ([f"{MODELS}:Nope"], f"'{MODELS}' has no attribute 'Nope'"),
    ([f"{MODELS}:units", "--arg", "1x=3"], "--arg takes key=value with a Python name as the key, got '1x=3'"),
    ([f"{MODELS}:units", "--arg", "depth=3"], f"{MODELS}:units: units() got an unexpected keyword argument 'depth'"),
    ([f"{MODELS}:units", "--name", "a-b"], "--name must be a Python identifier (letters, digits, _), got 'a-b'"),
], ids=["target", "module", "attribute", "arg", "keyword", "name"])
def test_usage_errors(cli, args, message):
    proc = cli("import", *args)
    assert proc.returncode == 2
    assert proc.stderr == f"archspec: error: {message}\n"


def test_without_torch_import_is_a_usage_error():
    import subprocess

    code = "import sys; sys.modules['torch'] = None; from archspec.cli import main; sys.exit(main(['import', 'a:b']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert "archspec import builds and traces the model, which needs torch; it is not installed" in proc.stderr


def test_torchvision_imports_from_a_fresh_process(cli, tmp_path):
    """torchvision beside this CPU torch wheel needs the nms schemas first (tests/conftest.py): the
    command defines them when `import torchvision` fails for that reason."""
    out = tmp_path / "resnet18.yaml"
    proc = cli("import", "torchvision.models:resnet18", "--input", "3x64x64", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert cli("check", out).returncode == 0


# --- docs/import.md shows real output -----------------------------------------------------------------

def _doc_blocks(kind: str) -> list:
    import re

    text = (ROOT / "docs" / "import.md").read_text()
    return re.findall(rf"<!-- {kind}: archspec import (.+?) -->\s*```yaml\n(.*?)```", text, flags=re.S)


def test_docs_example_is_the_commands_output(cli):
    import shlex

    (args, shown), = _doc_blocks("output")
    proc = cli("import", *shlex.split(args))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == shown


@pytest.mark.slow
def test_docs_excerpt_is_in_the_commands_output(torchvision_imports):
    (args, shown), = _doc_blocks("excerpt")
    assert args == "torchvision.models:inception_v3 --input 3x299x299"
    assert shown in torchvision_imports("inception_v3")[1].text


# --- every stock spec round the loop -------------------------------------------------------------------

# the size each generated module is imported and run at: small where the network allows (adaptive
# pooling before its linear layers, aux heads included; the paper's GoogLeNet pools its aux heads 5x5/3
# and Inception v3's aux head needs its 17x17 grid: their own sizes)
STOCK = {"alexnet": 127, "googlenet": 96, "googlenet_paper": 224, "googlenet_factorized": 224, "inception_v2": 224,
         "inception_v3": 299, "inception_v4": 139, "inception_resnet_v2": 139, "resnet18": 64, "resnet50": 64,
         "resnet152": 64, "vgg16": 64, "vgg16_bn": 64, "mobilenet_v2": 64, "efficientnet_b0": 64,
         "shufflenet_v2_x1_0": 64, "xception": 71}


def test_every_stock_spec_is_in_the_round_trip():
    assert sorted(STOCK) == sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STOCK))
def test_stock_spec_round_trip(name, compiled, tmp_path):
    """build -> import the generated module -> build again: the same state_dict keys (in order) and
    shapes, the same totals, the same outputs (BatchNorm statistics randomised)."""
    stock = compiled(f"specs/{name}.yaml")
    generated = ROOT / "generated" / f"{name}.py"
    cls = model_class(import_generated(str(generated)), stock)
    size = STOCK[name]
    r = import_target(f"{generated}:{cls.__name__}", input_shape=(3, size, size), name=name)
    assert _totals(_at(r, tmp_path, stock.graph.input_shape)) == _totals(stock)
    torch.manual_seed(0)
    model = _randomised(cls(), size)
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())  # keys in the same order, strictly
    ya, yb = _outputs(model, mine, size)
    assert torch.equal(ya, yb)


# --- torchvision's own models -----------------------------------------------------------------------

TORCHVISION = {"alexnet": ({}, 127), "vgg16": ({}, 64), "vgg16_bn": ({}, 64),
               "googlenet": ({"aux_logits": True, "init_weights": False}, 96),
               "inception_v3": ({"aux_logits": True, "init_weights": False}, 299),
               "resnet18": ({}, 64), "resnet50": ({}, 64), "resnet152": ({}, 64), "mobilenet_v2": ({}, 64),
               "efficientnet_b0": ({}, 64), "shufflenet_v2_x1_0": ({}, 64)}


@pytest.fixture(scope="session")
def torchvision_imports(torchvision):
    """name -> (torchvision's model, BatchNorm randomised; its import), each built once."""
    from archspec.importer.target import build

    cache = {}

    def get(name):
        if name not in cache:
            kwargs, size = TORCHVISION[name]
            torch.manual_seed(0)
            model, records = build(getattr(torchvision.models, name), kwargs, name)
            _randomised(model, size)
            cache[name] = (model, import_model(model, name, (3, size, size), records))
        return cache[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_model_imports_to_the_stock_spec(name, torchvision_imports, compiled, tmp_path):
    """The stock spec's totals; torchvision's state_dict loads strictly into the imported spec's
    module (same keys in the same order), which computes the same outputs."""
    model, r = torchvision_imports(name)
    stock = compiled(f"specs/{name}.yaml")
    assert _totals(_at(r, tmp_path, stock.graph.input_shape)) == _totals(stock)
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())
    ya, yb = _outputs(model, mine, TORCHVISION[name][1])
    assert torch.equal(ya, yb)


@pytest.mark.slow
def test_regnet_names_its_stages_entries_as_torchvision_does(torchvision, tmp_path):
    """RegNet's AnyStage adds its blocks as `block1-0`, no identifier: they are named entries of an
    nn.Sequential, and the keys, the totals and the outputs are torchvision's."""
    from archspec.importer.target import build

    torch.manual_seed(0)
    model, records = build(torchvision.models.regnet_x_400mf, {}, "regnet_x_400mf")
    _randomised(model, 32)
    r = import_model(model, "regnet_x_400mf", (3, 32, 32), records)
    assert yaml.safe_load(r.text)["blocks"]["Sequential"]["layers"][1]["block2"] == [
        {"block2-0": "ResBottleneckBlock(64, stride=2)"}, {"block2-1": "ResBottleneckBlock(64)"}]
    t = r.compiled.analysis.totals
    assert (t.params, t.buffers) == (sum(p.numel() for p in model.parameters()),
                                     sum(b.numel() for b in model.buffers())) == (5495976, 37927)
    mine = load_into(_module_of(r.compiled, tmp_path), model.state_dict())  # strictly, in order
    assert "trunk_output.block4.block4-11.f.c.1.running_var" in mine.state_dict()
    ya, yb = _outputs(model, mine, 32)
    assert torch.equal(ya, yb)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["googlenet", "inception_v3"])
def test_imported_inception_specs_read_like_the_stock_ones(name, torchvision_imports):
    """Blocks, not a flat list: the stock spec's block definitions, about its length."""
    _, r = torchvision_imports(name)
    ours = yaml.safe_load(r.text)
    stock = yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text())
    assert set(ours["blocks"]) - {"BasicConv2d"} == set(stock["blocks"])
    assert len(ours["layers"]) == len(stock["layers"])

    def lines(text):
        return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))

    own = r.text
    if "BasicConv2d" in ours["blocks"]:  # the stock spec's library block (lib/basic.yaml), defined here
        start = own.index("  BasicConv2d:\n")
        own = own[:start] + own[own.index("\n\n", start):]
    assert lines(own) <= 1.2 * lines((ROOT / "specs" / f"{name}.yaml").read_text())


@pytest.mark.slow
def test_variants_of_a_class_are_one_block_with_conditions(torchvision_imports):
    """MobileNet v2's blocks with and without the expansion 1x1 and the shortcut are one block,
    as specs/mobilenet_v2.yaml writes it: the expansion's condition tests the argument its own
    widths use, the shortcut's says the shapes agree; widths of the input are in_channels (the
    expansion in_channels times the constructor's expand_ratio), so runs of blocks are repeats."""
    _, r = torchvision_imports("mobilenet_v2")
    spec = yaml.safe_load(r.text)
    block = spec["blocks"]["InvertedResidual"]
    assert block["args"] == {"oup": "int", "expand_ratio": "int", "stride": "size = 1"}
    wide = "in_channels * expand_ratio"
    assert block["layers"] == [{"add": [{"if": "stride == 1 and in_channels == oup", "body": []}, {"conv": [
        {"if": "expand_ratio != 1", "body": [[f"conv2d({wide}, 1, bias=false)", "batchnorm2d", "relu6"]]},
        [f"conv2d({wide}, 3, stride=stride, padding=1, groups={wide}, bias=false)", "batchnorm2d", "relu6"],
        "conv2d(oup, 1, bias=false)", "batchnorm2d"]}]}]
    assert {"repeat": 3, "body": ["InvertedResidual(96, expand_ratio=6)"]} in spec["layers"][0]["features"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_imported_mobile_specs_read_like_the_stock_ones(name, torchvision_imports):
    """One block per class, as the stock spec has (its variants merged: the items only some
    instances have carry if:), and about its length."""
    _, r = torchvision_imports(name)
    ours = yaml.safe_load(r.text)
    stock = yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text())
    assert sorted(ours["blocks"]) == sorted(stock["blocks"])
    body = yaml.safe_dump(ours["blocks"])
    assert body.count("if:") == yaml.safe_dump(stock["blocks"]).count("if:")

    def lines(text):
        return sum(1 for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))

    assert lines(r.text) <= 1.2 * lines((ROOT / "specs" / f"{name}.yaml").read_text())
