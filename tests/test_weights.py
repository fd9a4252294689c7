"""Weight compatibility with torchvision 0.28: load its state_dict into the generated module
(strict) and compare outputs on the same random input."""
from __future__ import annotations

import pytest

from conftest import ROOT, load_into, randomise_batchnorm

pytestmark = pytest.mark.slow  # builds and runs full-size networks (pytest -m "not slow" leaves them out)
torch = pytest.importorskip("torch")

from archspec.verify import import_generated  # noqa: E402

# spec, torchvision builder, kwargs, generated class, input size. The networks that pool adaptively
# run below their training size (a fraction of the work), still large enough that their last
# feature map has several pixels per side, so a wrong padding, pooling or flatten order shows.
# GoogLeNet and Inception v3, whose pooling quirks are the point, run at their own size.
CASES = [
    ("alexnet", "alexnet", {}, "AlexNet", 127),        # 3x3 before the adaptive 6x6 pool
    ("vgg16", "vgg16", {}, "VGG16", 64),               # 2x2 before the adaptive 7x7 pool
    ("vgg16_bn", "vgg16_bn", {}, "VGG16BN", 64),
    ("googlenet", "googlenet", {"aux_logits": True, "init_weights": False}, "GoogLeNet", 224),
    ("inception_v3", "inception_v3", {"aux_logits": True, "init_weights": False}, "Inception3", 299),
    ("resnet18", "resnet18", {}, "ResNet18", 64),      # 2x2 before the adaptive 1x1 pool
    ("resnet50", "resnet50", {}, "ResNet50", 64),
    ("resnet152", "resnet152", {}, "ResNet152", 64),
]


def _pair(torchvision, name, builder, kwargs):
    module = import_generated(str(ROOT / "generated" / f"{name}.py"))
    torch.manual_seed(0)
    ref = getattr(torchvision.models, builder)(weights=None, **kwargs)
    randomise_batchnorm(ref)
    cls = next(getattr(module, n) for n in module.__all__ if n not in ("loss",) and not n.endswith("Outputs"))
    return ref, load_into(cls, ref.state_dict())


@pytest.mark.parametrize("name,builder,kwargs,cls,size", CASES, ids=[c[0] for c in CASES])
def test_torchvision_weights_load_and_outputs_match(torchvision, name, builder, kwargs, cls, size):
    ref, mine = _pair(torchvision, name, builder, kwargs)
    assert type(mine).__name__ == cls
    ref.eval()
    mine.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        diff = (ref(x) - mine(x)).abs().max().item()
    assert diff <= 1e-5


@pytest.mark.parametrize("name,builder,kwargs,fields", [
    ("googlenet", "googlenet", {"aux_logits": True, "init_weights": False},
     {"logits": "logits", "aux1": "aux_logits1", "aux2": "aux_logits2"}),
    ("inception_v3", "inception_v3", {"aux_logits": True, "init_weights": False},
     {"logits": "logits", "AuxLogits": "aux_logits"}),
], ids=["googlenet", "inception_v3"])
def test_training_aux_outputs_match(torchvision, name, builder, kwargs, fields):
    ref, mine = _pair(torchvision, name, builder, kwargs)
    for model in (ref, mine):
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    size = 299 if name == "inception_v3" else 224
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        a, b = ref(x), mine(x)
    for ours, theirs in fields.items():
        assert (getattr(a, theirs) - getattr(b, ours)).abs().max().item() <= 1e-5, ours
    # BatchNorm running statistics were updated identically in training mode
    for (k, va), (_, vb) in zip(ref.state_dict().items(), mine.state_dict().items()):
        assert torch.equal(va, vb), k
