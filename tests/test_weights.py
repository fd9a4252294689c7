"""Weight compatibility with torchvision 0.28: load its state_dict into the generated module
(strict) and compare outputs on the same random input, in eval and in training, with BatchNorm
statistics and affine values randomised (fresh BatchNorm is the identity in eval and hides a
misplaced one), relative to the output's scale."""
from __future__ import annotations

import pytest

from conftest import ROOT, compare_with_reference, load_into, randomise_batchnorm, relative_difference

pytestmark = pytest.mark.slow  # builds and runs full-size networks (pytest -m "not slow" leaves them out)
torch = pytest.importorskip("torch")
F = torch.nn.functional

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
    ("mobilenet_v2", "mobilenet_v2", {}, "MobileNetV2", 64),          # 2x2 before the pool
    ("efficientnet_b0", "efficientnet_b0", {}, "EfficientNet", 64),   # 2x2
    ("shufflenet_v2_x1_0", "shufflenet_v2_x1_0", {}, "ShuffleNetV2", 64),  # 2x2
]
BY_NAME = {c[0]: c for c in CASES}


def _pair(torchvision, name, builder, kwargs, calibrate=None):
    module = import_generated(str(ROOT / "generated" / f"{name}.py"))
    torch.manual_seed(0)
    ref = getattr(torchvision.models, builder)(weights=None, **kwargs)
    randomise_batchnorm(ref, calibrate)
    cls = next(getattr(module, n) for n in module.__all__ if n not in ("loss",) and not n.endswith("Outputs"))
    return ref, load_into(cls, ref.state_dict())


def _compared(torchvision, name):
    """The reference and the generated module holding its weights, and the input to compare them on.
    BatchNorm statistics are measured on another batch, then perturbed, and the affine values are
    drawn wide (``randomise_batchnorm``), so that every BatchNorm matters, in eval too, and a clipping
    activation clips (MobileNet's ReLU6: ``test_the_comparison_reaches_relu6s_clip``)."""
    _, builder, kwargs, cls, size = BY_NAME[name]
    calibrate = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    ref, mine = _pair(torchvision, name, builder, kwargs, calibrate)
    assert type(mine).__name__ == cls
    return ref, mine, torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", BY_NAME)
def test_torchvision_weights_load_and_outputs_match(torchvision, name):
    """Eval and training outputs (dropout and stochastic depth drawing the same masks: the same
    seed on both sides) and the running statistics the training pass leaves agree to 1e-5 of their
    scale."""
    diff = compare_with_reference(*_compared(torchvision, name))
    assert max(diff.values()) <= 1e-5, diff


def test_the_comparison_reaches_relu6s_clip(torchvision):
    """On the compared input every ReLU6 of MobileNet v2 clips some values at 6 and zeroes others, in
    eval and in training: a ReLU in its place would show (small activations never reach 6)."""
    ref, _, x = _compared(torchvision, "mobilenet_v2")
    seen = []
    for m in ref.modules():
        if isinstance(m, torch.nn.ReLU6):
            m.register_forward_hook(lambda m, i, out: seen.append(((out == 6).float().mean().item(),
                                                                    (out == 0).float().mean().item())))
    for training in (False, True):
        ref.train(training)
        seen.clear()
        with torch.no_grad():
            ref(x)
        assert len(seen) == 35
        assert min(s[0] for s in seen) > 0.001 and min(s[1] for s in seen) > 0.3, seen


def test_efficientnets_stochastic_depth_draws_torchvisions_masks(torchvision):
    """Stochastic depth alone (dropout set to 0) changes the training output with the seed, and the
    generated module draws the same rows as torchvision's for each seed."""
    ref, mine, x = _compared(torchvision, "efficientnet_b0")
    ref.classifier[0].p = mine.classifier[0].p = 0.0
    ref.train()
    mine.train()
    outputs = []
    with torch.no_grad():
        for seed in (5, 6):
            torch.manual_seed(seed)
            want = ref(x)
            torch.manual_seed(seed)
            assert relative_difference(mine(x), want) <= 1e-5
            outputs.append(want)
    assert relative_difference(outputs[0], outputs[1]) > 1e-2


# Training steps written for torchvision's models, as a user's loop would be: they unpack the
# outputs by position and read them by name, and weight the aux losses as torchvision's models are
# trained (GoogLeNet: 0.3 each; Inception v3: 0.4). They return each cross-entropy separately, so
# that an aux head in the wrong field shows (both of GoogLeNet's are weighted 0.3).
def googlenet_step(model, x, target):
    outputs = model(x)
    logits, aux2, aux1 = outputs  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    terms = [F.cross_entropy(logits, target), F.cross_entropy(aux1, target), F.cross_entropy(aux2, target)]
    by_name = [F.cross_entropy(outputs.logits, target), F.cross_entropy(outputs.aux_logits1, target),
               F.cross_entropy(outputs.aux_logits2, target)]
    return terms[0] + 0.3 * terms[1] + 0.3 * terms[2], terms + by_name, outputs


def inception_v3_step(model, x, target):
    outputs = model(x)
    logits, aux = outputs  # InceptionOutputs(logits, aux_logits)
    terms = [F.cross_entropy(logits, target), F.cross_entropy(aux, target)]
    by_name = [F.cross_entropy(outputs.logits, target), F.cross_entropy(outputs.aux_logits, target)]
    return terms[0] + 0.4 * terms[1], terms + by_name, outputs


@pytest.mark.parametrize("name,builder,step,size", [
    ("googlenet", "googlenet", googlenet_step, 224),
    ("inception_v3", "inception_v3", inception_v3_step, 299),
], ids=["googlenet", "inception_v3"])
def test_torchvision_training_loops_run_unchanged(torchvision, name, builder, step, size):
    """The same loop, the same weights (BatchNorm randomised), the same batches and the same dropout
    masks (one seed before each step on both sides): the same losses, step after step, and the
    same weights and BatchNorm statistics after them."""
    ref, mine = _pair(torchvision, name, builder, {"aux_logits": True, "init_weights": False})
    ref_type = {"googlenet": torchvision.models.GoogLeNetOutputs, "inception_v3": torchvision.models.InceptionOutputs}[name]
    losses = {}
    for side, model in (("torchvision", ref), ("generated", mine)):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        data = torch.Generator().manual_seed(1)
        losses[side] = []
        for i in range(2):
            x = torch.randn(2, 3, size, size, generator=data)
            target = torch.randint(0, 1000, (2,), generator=data)
            torch.manual_seed(100 + i)  # the dropout masks
            loss, terms, outputs = step(model, x, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[side].append([loss.item()] + [t.item() for t in terms])
        assert type(outputs).__name__ == ref_type.__name__ and outputs._fields == ref_type._fields
    assert losses["generated"] == losses["torchvision"]  # identical, to the last bit
    assert len(set(losses["generated"][0])) > 2  # the terms differ from one another: a swap would show
    for (k, va), (_, vb) in zip(ref.state_dict().items(), mine.state_dict().items()):
        assert torch.equal(va, vb), k  # weights after two SGD steps, BatchNorm running statistics
