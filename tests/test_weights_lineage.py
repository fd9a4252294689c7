"""Weight compatibility beyond torchvision: the lineage specs load the weights of the established
implementations they name (docs/lineage.md) and give the same outputs.

timm 1.0.31 (inception_v4, inception_resnet_v2) and Cadene's pretrainedmodels 0.7.4 (bninception)
are test-only dependencies; both import torchvision, hence the `torchvision` fixture first.
"""
from __future__ import annotations

import pytest

from conftest import ROOT

torch = pytest.importorskip("torch")

from archspec.verify import import_generated  # noqa: E402


def _timm(name):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False)


def _bninception():
    pytest.importorskip("six")  # pretrainedmodels imports it without declaring it
    pretrainedmodels = pytest.importorskip("pretrainedmodels")
    return pretrainedmodels.bninception(pretrained=None)


CASES = [
    ("inception_v2", "BNInception", _bninception, 224),
    ("inception_v4", "InceptionV4", lambda: _timm("inception_v4"), 299),
    ("inception_resnet_v2", "InceptionResnetV2", lambda: _timm("inception_resnet_v2"), 299),
]


@pytest.mark.parametrize("name,cls,make,size", CASES, ids=[c[0] for c in CASES])
def test_reference_weights_load_and_outputs_match(torchvision, name, cls, make, size):
    torch.manual_seed(0)
    ref = make().eval()
    state = ref.state_dict()
    for key, value in state.items():  # BatchNorm statistics that are not 0/1, so they matter
        if key.endswith("running_mean"):
            value.normal_(0, 0.1)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 1.5)
    mine = getattr(import_generated(str(ROOT / "generated" / f"{name}.py")), cls)().eval()
    assert list(mine.state_dict()) == list(state)  # same keys, same order: no renaming needed
    mine.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert (ref(x) - mine(x)).abs().max().item() <= 1e-5
