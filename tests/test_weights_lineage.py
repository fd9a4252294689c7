"""Weight compatibility beyond torchvision: the lineage specs load the weights of the established
implementations they name (docs/lineage.md) and give the same outputs.

timm 1.0.31 (inception_v4, inception_resnet_v2, legacy_xception) and Cadene's pretrainedmodels 0.7.4 (bninception)
are test-only dependencies; both import torchvision, hence the `torchvision` fixture first.
"""
from __future__ import annotations

import pytest

from conftest import ROOT, compare_with_reference, load_into, randomise_batchnorm

pytestmark = pytest.mark.slow  # builds and runs full-size networks (pytest -m "not slow" leaves them out)
torch = pytest.importorskip("torch")

from archspec.verify import import_generated  # noqa: E402


def _timm(name):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False)


def _bninception():
    pytest.importorskip("six")  # pretrainedmodels imports it without declaring it
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    return pretrainedmodels.bninception(pretrained=None)


# name, generated class, reference, input size: timm's networks pool adaptively and run at 139
# (a fifth of the work of 299; their last feature map is still 3x3), BN-Inception's fixed 7x7
# pool needs 224
CASES = [
    ("inception_v2", "BNInception", _bninception, 224),
    ("inception_v4", "InceptionV4", lambda: _timm("inception_v4"), 139),
    ("inception_resnet_v2", "InceptionResnetV2", lambda: _timm("inception_resnet_v2"), 139),
    ("xception", "Xception", lambda: _timm("legacy_xception"), 71),  # its last feature map: 3x3
]


@pytest.mark.parametrize("name,cls,make,size", CASES, ids=[c[0] for c in CASES])
def test_reference_weights_load_and_outputs_match(torchvision, name, cls, make, size):
    """Eval and training outputs, and the running statistics a training pass leaves, agree to 1e-5 of
    their scale, with BatchNorm statistics measured on a batch and perturbed, affine values random."""
    torch.manual_seed(0)
    ref = make()
    randomise_batchnorm(ref, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2)))
    mine = load_into(getattr(import_generated(str(ROOT / "generated" / f"{name}.py")), cls), ref.state_dict())
    diff = compare_with_reference(ref, mine, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3)))
    assert max(diff.values()) <= 1e-5, diff
