"""The rest of the Inception lineage: BN-Inception, Inception-v4 and Inception-ResNet-v2.

Each spec matches an established implementation outside torchvision, measured with random weights
(eval, batch 1; MACs = fvcore's conv + linear count = torch.utils.flop_counter total / 2) by
tests/reference/measure.py into tests/reference/reference.json; the numbers are also written out
here, and one test checks that the two agree. These tests need neither that implementation nor torch:

* inception_v2: Cadene's pretrainedmodels 0.7.4, ``bninception`` (Caffe layout, flat names);
* inception_v4, inception_resnet_v2: timm 1.0.31, ``inception_v4`` / ``inception_resnet_v2``.

The state_dict fingerprints are sha256 over the reference's ordered ``key:shape`` lines (the shape
written as ``AxBxC``, empty for a scalar), taken from the reference model itself. The hand-computed numbers below are
written out as arithmetic so that a reader can check them against the papers' figures.
"""
from __future__ import annotations

import hashlib

import pytest

from archspec.analyse import state_dict_shapes
from archspec.errors import ArchspecError
from archspec.pipeline import compile_spec

# name -> (params, buffers, conv+linear MACs, depth, state_dict keys, sha256 of the key:shape lines)
MEASURED = {
    "inception_v2": (11_295_240, 20_101, 2_032_600_064, 34, 485,
                     "b56c15ec8fc9ad4d131fc7817719f93d27c32e76c74ac3a40771156303ff8ee7"),
    "inception_v4": (42_679_816, 63_317, 12_253_974_624, 76, 896,
                     "1ea1a56b49b65b981e8f9e5adfbcfda89c65010a61bbe9295fda33a143c54fac"),
    "inception_resnet_v2": (55_843_464, 60_748, 13_155_794_016, 176, 1306,
                            "fcf0d54bd7e3c897e55197707d2ad8d2bb60aae4eea91b86f460ae795c22c210"),
}
INPUT = {"inception_v2": [3, 224, 224], "inception_v4": [3, 299, 299], "inception_resnet_v2": [3, 299, 299]}


def _fingerprint(entries) -> str:
    lines = [f"{key}:{'x'.join(str(d) for d in shape)}" for key, shape in entries]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _params(c, prefix: str) -> int:
    """Parameters of every module whose path starts with ``prefix``."""
    return sum(n.meta["params"] for n in c.graph if n.path.startswith(prefix))


def _ops(c, op: str) -> list:
    return [n for n in c.graph if n.op == op]


def _shape(c, path: str) -> list:
    return list(c.analysis.modules[path]["output_shape"])


@pytest.mark.parametrize("name", list(MEASURED))
def test_totals_match_the_measured_reference(name, compiled):
    c = compiled(f"specs/{name}.yaml")  # compile_spec also checks the spec's expect: block
    params, buffers, macs, depth, nkeys, digest = MEASURED[name]
    t = c.analysis.totals
    assert (t.params, t.params_eval, t.buffers, t.macs, t.depth) == (params, params, buffers, macs, depth)
    assert t.flops == 2 * macs
    assert list(c.analysis.output) == [1000]
    assert list(c.resolved.spec.input) == INPUT[name]
    assert not c.graph.aux  # none of the three references has an aux head
    e = c.resolved.spec.expect
    assert (e.params, e.params_eval, e.buffers, e.macs, e.depth, e.output) == (params, params, buffers, macs, depth, [1000])


@pytest.mark.parametrize("name", list(MEASURED))
def test_measured_numbers_are_the_reference_files(name, compiled, reference):
    params, buffers, macs, _, nkeys, digest = MEASURED[name]
    ref = reference[name]
    assert (ref["params_total"], ref["buffer_elements"], ref["fvcore_conv_linear_macs"]) == (params, buffers, macs)
    assert ref["flopcounter_total"] == 2 * macs
    assert ref["eval_output_shape"] == [1, 1000] and ref["input_size"] == [1, *INPUT[name]]
    assert ref["eval_children_not_executed"] == []
    entries = [(key, tuple(shape)) for key, shape, *_ in ref["state_dict"]]
    assert (len(entries), _fingerprint(entries)) == (nkeys, digest)
    assert state_dict_shapes(compiled(f"specs/{name}.yaml").graph) == entries


@pytest.mark.parametrize("name", list(MEASURED))
def test_state_dict_is_the_reference_one(name, compiled):
    entries = state_dict_shapes(compiled(f"specs/{name}.yaml").graph)
    _, _, _, _, nkeys, digest = MEASURED[name]
    assert len(entries) == nkeys
    assert _fingerprint(entries) == digest


def test_state_dict_spot_checks(compiled):
    v2 = dict(state_dict_shapes(compiled("specs/inception_v2.yaml").graph))
    assert v2["conv1_7x7_s2.weight"] == (64, 3, 7, 7)
    assert v2["conv1_7x7_s2.bias"] == (64,)  # Caffe convolutions keep their bias
    assert v2["inception_3a_double_3x3_2.weight"] == (96, 96, 3, 3)
    assert v2["inception_3c_3x3.weight"] == (160, 128, 3, 3)
    assert v2["inception_5b_pool_proj_bn.running_var"] == (128,)
    assert v2["last_linear.weight"] == (1000, 1024)
    assert not any("5x5" in k for k in v2)
    v4 = list(state_dict_shapes(compiled("specs/inception_v4.yaml").graph))
    assert v4[0] == ("features.0.conv.weight", (32, 3, 3, 3))
    assert v4[-2:] == [("last_linear.weight", (1000, 1536)), ("last_linear.bias", (1000,))]
    assert dict(v4)["features.21.branch2_3b.conv.weight"] == (256, 512, 3, 1)
    assert dict(v4)["features.11.branch2.4.conv.weight"] == (256, 224, 1, 7)
    ir = dict(state_dict_shapes(compiled("specs/inception_resnet_v2.yaml").graph))
    assert ir["repeat.9.conv2d.bias"] == (320,)
    assert ir["repeat_1.19.branch1.2.conv.weight"] == (192, 160, 7, 1)
    assert ir["block8.conv2d.weight"] == (2080, 448, 1, 1)
    assert ir["classif.weight"] == (1000, 1536)


def test_bn_inception_module_by_arithmetic(compiled):
    c = compiled("specs/inception_v2.yaml")
    # inception_3a on 192 x 28 x 28 (Figure 5, row 3a): every conv has a bias, every BN 2 x C.
    conv = lambda cin, cout, k: cin * cout * k * k + cout
    bn = lambda ch: 2 * ch
    expected = (conv(192, 64, 1) + bn(64)                                          # 1x1
                + conv(192, 64, 1) + bn(64) + conv(64, 64, 3) + bn(64)             # 3x3 reduce, 3x3
                + conv(192, 64, 1) + bn(64) + conv(64, 96, 3) + bn(96)             # double 3x3
                + conv(96, 96, 3) + bn(96)
                + conv(192, 32, 1) + bn(32))                                       # avg pool + proj
    assert expected == 219_552
    assert _params(c, "inception_3a_") == expected
    macs = 28 * 28 * (192 * 64 + 192 * 64 + 64 * 64 * 9 + 192 * 64 + 64 * 96 * 9 + 96 * 96 * 9 + 192 * 32)
    assert sum(c.analysis.modules[p]["macs"] for p in c.analysis.modules if p.startswith("inception_3a_")) == macs


def test_bn_inception_structure(compiled):
    c = compiled("specs/inception_v2.yaml")
    convs = _ops(c, "conv2d")
    assert len(convs) == 3 + 8 * 7 + 2 * 5  # stem; 7 convs in each module, 5 in the stride-2 ones
    assert not [n for n in convs if n.attrs["kernel_size"] == 5]  # every 5x5 is a double 3x3
    for n in convs:  # Conv -> BN -> ReLU everywhere
        (bn,) = c.graph.successors(n)
        assert bn.op == "batchnorm2d"
        (relu,) = c.graph.successors(bn)
        assert relu.op == "relu"
    assert not _ops(c, "local_response_norm") and not _ops(c, "dropout")
    # The ten module outputs (concat nodes in order): channels and grid, as in Figure 5's table.
    concats = [n.meta["shape"] for n in _ops(c, "concat")]
    assert [list(s) for s in concats] == [
        [256, 28, 28], [320, 28, 28], [576, 14, 14],                    # 3a, 3b, 3c (stride 2)
        [576, 14, 14], [576, 14, 14], [608, 14, 14], [608, 14, 14],    # 4a-4d
        [1056, 7, 7],                                                   # 4e (stride 2)
        [1024, 7, 7], [1024, 7, 7]]                                     # 5a, 5b
    pools = {p: c.analysis.modules[p]["type"] for p in c.analysis.modules if p.endswith("_pool") and p.startswith("inception_")}
    assert [p for p, t in pools.items() if t == "maxpool2d"] == ["inception_3c_pool", "inception_4e_pool", "inception_5b_pool"]
    assert _shape(c, "pool2_3x3_s2") == [192, 28, 28]
    assert _shape(c, "global_pool") == [1024, 1, 1]


def test_inception_v4_blocks_by_arithmetic(compiled):
    c = compiled("specs/inception_v4.yaml")
    basic = lambda cin, cout, kh, kw=None: cin * cout * kh * (kw or kh) + 2 * cout  # conv, no bias + BN
    inception_a = (basic(384, 96, 1)
                   + basic(384, 64, 1) + basic(64, 96, 3)
                   + basic(384, 64, 1) + basic(64, 96, 3) + basic(96, 96, 3)
                   + basic(384, 96, 1))
    assert inception_a == 317_632
    for i in range(6, 10):
        assert c.analysis.modules[f"features.{i}"]["params"] == inception_a
    reduction_a = basic(384, 384, 3) + basic(384, 192, 1) + basic(192, 224, 3) + basic(224, 256, 3)
    assert c.analysis.modules["features.10"]["params"] == reduction_a == 2_306_112
    assert c.analysis.modules["features.6"]["macs"] == 35 * 35 * (
        384 * 96 + 384 * 64 + 64 * 96 * 9 + 384 * 64 + 64 * 96 * 9 + 96 * 96 * 9 + 384 * 96)


def test_inception_v4_stage_shapes(compiled):
    c = compiled("specs/inception_v4.yaml")
    # timm's feature_info: 64 @ features.2, 160 @ 3, 384 @ 9, 1024 @ 17, 1536 @ 21.
    expected = {"2": [64, 147, 147], "3": [160, 73, 73], "4": [192, 71, 71], "5": [384, 35, 35],
                "9": [384, 35, 35], "10": [1024, 17, 17], "17": [1024, 17, 17], "18": [1536, 8, 8],
                "21": [1536, 8, 8]}
    assert {i: _shape(c, f"features.{i}") for i in expected} == expected
    assert [c.analysis.modules[f"features.{i}"]["type"] for i in (3, 4, 5, 6, 10, 11, 18, 19)] == [
        "Mixed3a", "Mixed4a", "Mixed5a", "InceptionA", "ReductionA", "InceptionB", "ReductionB", "InceptionC"]
    assert _shape(c, "global_pool") == [1536]


def test_inception_resnet_v2_residual_block_by_arithmetic(compiled):
    c = compiled("specs/inception_resnet_v2.yaml")
    basic = lambda cin, cout, kh, kw=None: cin * cout * kh * (kw or kh) + 2 * cout
    block35 = (basic(320, 32, 1)
               + basic(320, 32, 1) + basic(32, 32, 3)
               + basic(320, 32, 1) + basic(32, 48, 3) + basic(48, 64, 3)
               + (32 + 32 + 64) * 320 + 320)  # conv2d: 1x1 back to 320 channels, with bias, no BN
    assert block35 == 123_168
    assert c.analysis.modules["repeat.0"]["params"] == block35
    assert c.analysis.modules["repeat"]["params"] == 10 * block35
    block17 = basic(1088, 192, 1) + basic(1088, 128, 1) + basic(128, 160, 1, 7) + basic(160, 192, 7, 1) + 384 * 1088 + 1088
    assert c.analysis.modules["repeat_1"]["params"] == 20 * block17 == 22_535_680
    block8 = basic(2080, 192, 1) + basic(2080, 192, 1) + basic(192, 224, 1, 3) + basic(224, 256, 3, 1) + 448 * 2080 + 2080
    assert c.analysis.modules["block8"]["params"] == block8 == 2_035_424


def test_inception_resnet_v2_scaling_and_activations(compiled):
    c = compiled("specs/inception_resnet_v2.yaml")
    factors = [n.attrs["factor"] for n in _ops(c, "scale")]
    assert factors == [0.17] * 10 + [0.10] * 20 + [0.20] * 9 + [1.0]
    adds = _ops(c, "add")
    assert len(adds) == 40
    for n in adds:  # relu(x + scale * conv2d(concat(...))): the shortcut is the block's input
        shortcut, branch = n.inputs
        assert shortcut.meta["shape"] == n.meta["shape"]
        assert shortcut is c.graph.modules[n.path].input
        assert branch.op == "scale"
    assert c.analysis.modules["repeat_2.8.relu"]["type"] == "relu"
    assert "block8.relu" not in c.analysis.modules  # the last block is not activated


def test_inception_resnet_v2_stage_shapes(compiled):
    c = compiled("specs/inception_resnet_v2.yaml")
    # Every top-level child's eval output shape, as measured on timm 1.0.31 (batch dim dropped).
    measured = {
        "conv2d_1a": [32, 149, 149], "conv2d_2a": [32, 147, 147], "conv2d_2b": [64, 147, 147],
        "maxpool_3a": [64, 73, 73], "conv2d_3b": [80, 73, 73], "conv2d_4a": [192, 71, 71],
        "maxpool_5a": [192, 35, 35], "mixed_5b": [320, 35, 35], "repeat": [320, 35, 35],
        "mixed_6a": [1088, 17, 17], "repeat_1": [1088, 17, 17], "mixed_7a": [2080, 8, 8],
        "repeat_2": [2080, 8, 8], "block8": [2080, 8, 8], "conv2d_7b": [1536, 8, 8],
        "global_pool": [1536], "head_drop": [1536], "classif": [1000]}
    top = [p for p in c.analysis.modules if p and "." not in p]
    assert top == list(measured)
    assert {p: _shape(c, p) for p in top} == measured


def test_reduction_a_is_shared_by_v4_and_irv2(compiled):
    v4 = compiled("specs/inception_v4.yaml").analysis.modules["features.10"]
    ir = compiled("specs/inception_resnet_v2.yaml").analysis.modules["mixed_6a"]
    assert v4["type"] == ir["type"] == "ReductionA"
    # concat of n + m + the pooled input: v4 (k,l,m,n) = (192,224,256,384), IRv2 (256,256,384,384)
    assert v4["output_shape"][0] == 384 + 256 + 384
    assert ir["output_shape"][0] == 384 + 384 + 320


def test_repeat_names_a_module_unless_it_has_a_body(tmp_path):
    # timm calls Inception-ResNet-v2's 35x35 stage `repeat`; only {repeat: N, body: [...]} unrolls.
    spec = tmp_path / "s.yaml"
    spec.write_text("archspec: 1\nname: s\ninput: [3, 8, 8]\nlayers:\n"
                    "  - repeat: [\"conv2d(4, 3)\", {repeat: 2, body: [\"conv2d(4, 1)\"]}]\n"
                    "  - flatten\n  - fc: linear(2)\n")
    c = compile_spec(str(spec))
    assert [k for k, _ in state_dict_shapes(c.graph)][:6] == [
        "repeat.0.weight", "repeat.0.bias", "repeat.1.weight", "repeat.1.bias", "repeat.2.weight", "repeat.2.bias"]
