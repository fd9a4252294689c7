"""The deploy build (archspec build --deploy): inference-only modules that compute what the training
module computes in eval, with BatchNorm folded, aux heads and dropout removed and sibling
convolutions fused."""
from __future__ import annotations

import ast
import os
import re

import pytest

from conftest import ROOT, SPECS, run_cli

pytestmark = pytest.mark.slow  # builds and runs full-size networks (pytest -m "not slow" leaves them out)
torch = pytest.importorskip("torch")

from archspec.deploy import generate_deploy  # noqa: E402
from archspec.emit import is_hand_edited, split_header  # noqa: E402
from archspec.pipeline import spec_files  # noqa: E402
from archspec.verify import import_generated, model_class  # noqa: E402

ALL_SPECS = [os.path.relpath(p, ROOT) for p in spec_files(str(SPECS))]
# Inputs smaller than the spec's where the network pools adaptively (the deploy module works at any
# size the training module accepts); specs not listed run at their own input size.
SMALL_INPUT = {"inception_v3": 107, "inception_v4": 107, "inception_resnet_v2": 107, "googlenet": 64,
               "googlenet_factorized": 64, "alexnet": 64, "vgg16": 32, "vgg16_bn": 64, "resnet18": 64,
               "resnet50": 64, "resnet152": 64}


@pytest.fixture(scope="session")
def deployed(tmp_path_factory, compiled):
    """(compiled, training module, deploy module, deploy text) per spec, generated once."""
    out = tmp_path_factory.mktemp("deploy")
    cache = {}

    def get(spec: str):
        if spec not in cache:
            c = compiled(spec)
            text = generate_deploy(c)
            path = out / f"{c.name}_deploy.py"
            path.write_text(text)
            cache[spec] = (c, import_generated(str(ROOT / "generated" / f"{c.name}.py")),
                           import_generated(str(path)), text)
        return cache[spec]

    return get


def _deploy_class(c, training, deploy):
    return getattr(deploy, model_class(training, c).__name__ + "Deploy")


def _trained(cls, shape, **kwargs):
    """A training module with non-trivial BatchNorm state: random affine parameters and running
    statistics measured on a random batch (momentum None: the batch's own statistics), so that
    activations stay of order one through the network and folding changes real numbers."""
    torch.manual_seed(0)
    model = cls(**kwargs)
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            m.momentum = None
            m.train()
    with torch.no_grad():
        model(torch.randn(4, *shape))
    return model.eval()


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_deploy_equals_training_module_in_eval(deployed, spec):
    """float64: equal to 1e-9 (the rewrites are exact); float32: within 1e-4, or within twice the
    training module's own float32 rounding error where that is larger (the deepest networks)."""
    c, training, deploy, _ = deployed(spec)
    size = SMALL_INPUT.get(c.name)
    shape = (3, size, size) if size else c.expanded.input
    model = _trained(model_class(training, c), shape)
    cls = _deploy_class(c, training, deploy)
    fast = cls.from_trained(model)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want32, got32 = model(x), fast(x)
    assert got32.dtype == torch.float32
    folds = any(n.op in ("batchnorm2d", "scale") for n in c.graph)
    if not folds:  # AlexNet, VGG, GoogLeNet (paper): weights are copied, nothing is folded
        assert (got32 - want32).abs().max().item() <= 1e-6
        return
    with torch.no_grad():
        model64 = model.double()
        want64, got64 = model64(x.double()), cls.from_trained(model64)(x.double())
    assert got64.dtype == torch.float64
    scale = max(1.0, want64.abs().max().item())
    assert (got64 - want64).abs().max().item() <= 1e-9 * scale
    own_error = (want32.double() - want64).abs().max().item()
    assert (got32.double() - want64).abs().max().item() <= max(1e-4, 2 * own_error)
    if own_error <= 2.5e-5:
        assert (got32 - want32).abs().max().item() <= 1e-4


@pytest.mark.parametrize("spec", ["specs/googlenet.yaml", "specs/inception_v3.yaml"])
def test_benchmarked_networks_at_full_size_within_1e4(deployed, spec):
    c, training, deploy, _ = deployed(spec)
    model = _trained(model_class(training, c), c.expanded.input)
    fast = _deploy_class(c, training, deploy).from_trained(model)
    x = torch.randn(2, *c.expanded.input)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max().item() <= 1e-4


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_parameters_match_the_docstring_and_the_folding(deployed, spec):
    """Deploy parameters = eval parameters - BatchNorm affine parameters + the biases folding adds."""
    c, training, deploy, text = deployed(spec)
    model = _deploy_class(c, training, deploy)()
    count = sum(p.numel() for p in model.parameters())
    assert f"Parameters: {count:,}." in " ".join(text.split())
    g = c.graph
    main = [n for n in g if n.part == "main"]
    bn = sum(n.meta["params"] for n in main if n.op == "batchnorm2d")
    added = sum(n.attrs["out_channels"] for n in main if n.op == "conv2d" and not n.attrs["bias"]
                and any(s.op == "batchnorm2d" for s in g.successors(n)))
    assert count == c.analysis.totals.params_eval - bn + added
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.Dropout)) for m in model.modules())


def test_inception_v3_structure(deployed):
    c, training, deploy, text = deployed("specs/inception_v3.yaml")
    model = _deploy_class(c, training, deploy)()
    names = [n for n, _ in model.named_children()]
    fused = [n for n in names if n.endswith("_fused")]
    # the 1x1 heads of the 11 Inception blocks, except Mixed_6a (a 3x3 and a 1x1 read x)
    assert fused == ["Mixed_5b_fused", "Mixed_5c_fused", "Mixed_5d_fused", "Mixed_6b_fused", "Mixed_6c_fused",
                     "Mixed_6d_fused", "Mixed_6e_fused", "Mixed_7a_fused", "Mixed_7b_fused", "Mixed_7c_fused"]
    assert model.Mixed_5b_fused.out_channels == 64 + 48 + 64 and model.Mixed_5b_fused.kernel_size == (1, 1)
    assert model.Mixed_7b_fused.out_channels == 320 + 384 + 448
    assert len(names) == 94 - 9 * 2 - 1 + 1  # 94 convs, 9 groups of 3 and Mixed_7a's group of 2 fused, plus fc
    code = text.split("def __init__", 1)[1]
    assert '"AuxLogits.' not in text and "AuxLogits" not in code and "dropout" not in code
    assert "branch1x1, branch5x5, branch3x3dbl = F.relu(self.Mixed_5b_fused(x), inplace=True).split([64, 48, 64], 1)" in text


def test_googlenet_from_torchvision_weights(torchvision, deployed):
    """from_trained reads module paths, so torchvision's own GoogLeNet converts as the generated one does."""
    c, training, deploy, _ = deployed("specs/googlenet.yaml")
    torch.manual_seed(0)
    ref = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    ref.eval()
    for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    fast = _deploy_class(c, training, deploy).from_trained(ref)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        want = ref(x)
        assert (fast(x) - want).abs().max().item() <= 1e-4 * max(1.0, want.abs().max().item())


def test_channels_last_is_a_switch(deployed):
    c, training, deploy, _ = deployed("specs/googlenet.yaml")
    model = _trained(model_class(training, c), (3, 64, 64))
    cls = _deploy_class(c, training, deploy)
    cl, plain = cls.from_trained(model), cls.from_trained(model, channels_last=False)
    assert cl.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.conv1.weight.is_contiguous() and not plain.channels_last
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (cl(x) - plain(x)).abs().max().item() <= 1e-4
    assert not model.training and model.conv1.bn.weight.requires_grad  # the source is not changed


def test_num_classes_follows_the_trained_model(deployed):
    c, training, deploy, text = deployed("specs/inception_v3.yaml")
    assert "def __init__(self, num_classes: int = 1000, channels_last: bool = True)" in text
    model = _trained(model_class(training, c), (3, 107, 107), num_classes=10)
    fast = _deploy_class(c, training, deploy).from_trained(model)
    x = torch.randn(2, 3, 107, 107)
    with torch.no_grad():
        out = fast(x)
        assert tuple(out.shape) == (2, 10)
        assert (out - model(x)).abs().max().item() <= 1e-4 * max(1.0, out.abs().max().item())


def test_residual_scale_is_folded(deployed):
    """Inception-ResNet-v2: `conv2d -> scale(0.17) -> add` becomes a convolution whose weights carry 0.17."""
    _, _, _, text = deployed("specs/inception_resnet_v2.yaml")
    assert '("repeat.0.conv2d", None, 0.17)' in text
    assert " * 0.17" not in text.split("def forward", 1)[1]


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_deploy_module_imports_only_torch(deployed, spec):
    *_, text = deployed(spec)
    roots = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots == {"torch"}


def test_build_deploy_writes_checks_and_is_deterministic(tmp_path, deployed):
    out = tmp_path / "generated"  # the default output directory, where the command runs
    spec = str(SPECS / "googlenet.yaml")
    proc = run_cli("build", "--deploy", spec, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = (out / "googlenet_deploy.py").read_text()
    c, training, deploy, text = deployed("specs/googlenet.yaml")
    assert written == text
    # the deploy module's own parameter count: no aux heads, BatchNorm folded (not 13,004,888)
    count = sum(p.numel() for p in _deploy_class(c, training, deploy)().parameters())
    assert count == 6_617_624
    assert f"generated/googlenet_deploy.py: written ({count:,} params)" in proc.stdout.splitlines()
    assert written.startswith("# Generated by archspec 0.1.0 from specs/googlenet.yaml. Do not edit: "
                              "run `archspec build --deploy specs/googlenet.yaml`.\n")
    assert split_header(written)[0] is not None and not is_hand_edited(written)
    assert run_cli("build", "--deploy", "--check", spec, cwd=tmp_path).returncode == 0
    assert run_cli("build", "--check", spec, cwd=tmp_path).returncode == 1  # training file missing
    again = run_cli("build", "--deploy", spec, cwd=tmp_path, env={"PYTHONHASHSEED": "7"})
    assert "unchanged" in again.stdout
    assert re.search(r"class GoogLeNetDeploy\(nn\.Module\):", written)
