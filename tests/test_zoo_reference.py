"""The torchvision-layout zoo checks, to the unit, against torchvision 0.28 and timm 1.0.31 (no torch
needed).

For each spec the reference file (tests/reference/reference.json) gives what torchvision
measured: total parameters with and without aux heads, fvcore's conv+linear MACs, the eval output
shape of every top-level child, the ordered state_dict and, for the Inception family, every leaf
module's repr. Each spec is compiled once per session (``compiled`` fixture); ``compile_spec``
also checks the spec's own ``expect:`` block.
"""
from __future__ import annotations

import pytest

from archspec.analyse import state_dict_shapes
from archspec.ops import OPS, pair

# spec name -> (reference model with aux heads, reference model without them or None)
ZOO = {
    "alexnet": ("alexnet", None),
    "vgg16": ("vgg16", None),
    "vgg16_bn": ("vgg16_bn", None),
    "googlenet": ("googlenet_aux", "googlenet_noaux"),
    "inception_v3": ("inception_v3_aux", "inception_v3_noaux"),
    "resnet18": ("resnet18", None),
    "resnet50": ("resnet50", None),
    "resnet152": ("resnet152", None),
    "mobilenet_v2": ("mobilenet_v2", None),
    "efficientnet_b0": ("efficientnet_b0", None),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", None),
    "xception": ("xception", None),  # timm's legacy_xception
}


@pytest.fixture(params=list(ZOO))
def case(request, compiled, reference):
    name = request.param
    train, noaux = ZOO[name]
    return name, compiled(f"specs/{name}.yaml"), reference[train], reference[noaux] if noaux else None


def _sd(entries) -> list:
    # A third element in the reference gives the dtype (int64 num_batches_tracked): not compared.
    return [(e[0], tuple(e[1])) for e in entries]


def test_totals_equal_reference(case):
    name, c, ref, ref_noaux = case
    t = c.analysis.totals
    assert t.params == ref["params_total"]
    assert t.params_eval == (ref_noaux or ref)["params_total"]
    assert t.macs == ref["fvcore_conv_linear_macs"]
    assert t.flops == ref["flopcounter_total"]
    assert [1, *c.analysis.output] == ref["eval_output_shape"]
    if ref_noaux:  # aux heads do not run in eval: same MACs without them
        assert ref_noaux["fvcore_conv_linear_macs"] == t.macs
        assert set(c.graph.aux) == set(ref["eval_children_not_executed"])
    else:
        assert not c.graph.aux


def test_expect_block_is_complete_and_matches_reference(case):
    name, c, ref, ref_noaux = case
    e = c.resolved.spec.expect
    assert e is not None
    assert (e.params, e.params_eval, e.macs, e.output) == (
        ref["params_total"], (ref_noaux or ref)["params_total"], ref["fvcore_conv_linear_macs"], ref["eval_output_shape"][1:])
    assert e.depth == c.analysis.totals.depth


def test_top_level_children_and_output_shapes(case):
    name, c, ref, ref_noaux = case
    children = [m.name for m in c.expanded.model.children]
    assert children == ref["child_names"]
    if ref_noaux:
        aux = set(c.graph.aux)
        assert [n for n in children if n not in aux] == ref_noaux["child_names"]
    modules = c.analysis.modules
    for child, shape in ref["eval_child_output_shapes"].items():
        if shape is None:  # not executed in eval: only the aux heads
            assert child in c.graph.aux, child
            assert modules[child]["part"] == child
            continue
        assert modules[child]["part"] == "main"
        assert [1, *modules[child]["output_shape"]] == shape, child


def test_state_dict_keys_order_and_shapes(case):
    name, c, ref, ref_noaux = case
    assert state_dict_shapes(c.graph) == _sd(ref["state_dict"])
    if ref_noaux:
        assert state_dict_shapes(c.graph, aux=False) == _sd(ref_noaux["state_dict"])


# --- leaf module reprs (the reference records them for the Inception family) ------------------

def _repr(op: str, attrs: dict, in_shape: tuple) -> str:
    """What ``repr()`` of the PyTorch module for this node prints (torch 2.13)."""
    if op == "conv2d":
        parts = [str(in_shape[0]), str(attrs["out_channels"]), f"kernel_size={pair(attrs['kernel_size'])}",
                 f"stride={pair(attrs['stride'])}"]
        if pair(attrs["padding"]) != (0, 0):
            parts.append(f"padding={pair(attrs['padding'])}")
        if pair(attrs["dilation"]) != (1, 1):
            parts.append(f"dilation={pair(attrs['dilation'])}")
        if attrs["groups"] != 1:
            parts.append(f"groups={attrs['groups']}")
        if not attrs["bias"]:
            parts.append("bias=False")
        return f"Conv2d({', '.join(parts)})"
    if op == "batchnorm2d":
        return (f"BatchNorm2d({in_shape[0]}, eps={attrs['eps']}, momentum={attrs['momentum']}, affine={attrs['affine']}, "
                f"bias={attrs['affine']}, track_running_stats={attrs['track_running_stats']})")
    if op == "maxpool2d":
        stride = attrs["stride"] if attrs["stride"] is not None else attrs["kernel_size"]
        return (f"MaxPool2d(kernel_size={attrs['kernel_size']}, stride={stride}, padding={attrs['padding']}, "
                f"dilation={attrs['dilation']}, ceil_mode={attrs['ceil_mode']})")
    if op == "adaptive_avgpool2d":
        return f"AdaptiveAvgPool2d(output_size={pair(attrs['output_size'])})"
    if op == "linear":
        return f"Linear(in_features={in_shape[0]}, out_features={attrs['out_features']}, bias={attrs['bias']})"
    if op == "dropout":
        return f"Dropout(p={attrs['p']}, inplace=False)"
    raise AssertionError(f"no repr rule for {op}")


@pytest.mark.parametrize("spec,model", [("googlenet", "googlenet_aux"), ("inception_v3", "inception_v3_aux")])
def test_leaf_module_reprs(compiled, reference, spec, model):
    g = compiled(f"specs/{spec}.yaml").graph
    ours = []
    leaves = [span.output for span in g.modules.values() if span.module.kind == "op"]
    for node in leaves:
        ours.append([node.name, _repr(node.op, node.attrs, node.inputs[0].meta["shape"])])
    # Same modules with the same constructor arguments. The order is compared through the
    # state_dict test: it can differ only for stateless modules, and does once: torchvision
    # registers GoogLeNet's aux dropout after fc2 although it runs before it, while a spec
    # registers modules in the order they run.
    assert dict(ours) == dict(reference[model]["leaf_modules"])
    assert len(ours) == len(reference[model]["leaf_modules"])
    dropout = {n.name: n.attrs["p"] for n in leaves if n.op == "dropout"}
    assert dropout == reference[model]["dropout_p"]


# --- depth: weight layers on the longest path ---------------------------------------------------

@pytest.mark.parametrize("spec,depth,weight_layers", [
    ("alexnet", 8, 8),
    ("vgg16", 16, 16),
    ("googlenet", 22, 58),       # 57 convs + fc; 9 parallel branches make it only 22 deep
    ("inception_v3", 48, 95),    # 94 convs + fc
    ("resnet50", 50, 54),        # the 4 downsample 1x1 convs sit on the shortcut, a shorter path
    ("resnet152", 152, 156),
    ("mobilenet_v2", 53, 53),      # stem + 17 inverted residuals (2 or 3 convs) + 1x1 + fc: no shortcut has a conv
    ("efficientnet_b0", 82, 82),   # stem + 16 MBConv (the squeeze-and-excitation's two 1x1 convs on the path) + 1x1 + fc
    ("shufflenet_v2_x1_0", 51, 57),  # 3 convs a unit on the path; the 3 down-sampling units' branch1 (2 convs) beside it
    ("xception", 71, 75),          # depthwise and pointwise count one each; the 4 strided 1x1 skips are beside the path
])
def test_depth_counts_weight_layers_on_the_longest_path(compiled, spec, depth, weight_layers):
    c = compiled(f"specs/{spec}.yaml")
    main = [n for n in c.graph if n.part == "main"]
    assert sum(1 for n in main if OPS[n.op].weight_layer) == weight_layers
    assert c.analysis.totals.depth == depth


@pytest.mark.parametrize("spec,model", [("googlenet", "googlenet_aux"), ("inception_v3", "inception_v3_aux")])
def test_training_outputs_are_torchvisions(compiled, reference, spec, model):
    """The namedtuple a training forward returns: torchvision's type name, fields and order."""
    from archspec.emit import outputs_class_of

    c = compiled(f"specs/{spec}.yaml")
    ref = reference[model]
    assert outputs_class_of(c.resolved.spec) == ref["train_output_type"].rsplit(".", 1)[1]
    assert [name for name, _ in c.resolved.output_fields()] == ref["train_output_fields"]
    assert reference[model.replace("_aux", "_noaux")]["train_output_fields"] is None  # without aux heads: a tensor



# --- module classes (the reference records every module's class for the four newest specs) -----

# the PyTorch class of each op's module form, as the generated module registers it
TORCH_CLASS = {"conv2d": "Conv2d", "batchnorm2d": "BatchNorm2d", "relu": "ReLU", "relu6": "ReLU6", "silu": "SiLU",
               "sigmoid": "Sigmoid", "linear": "Linear", "dropout": "Dropout", "maxpool2d": "MaxPool2d",
               "adaptive_avgpool2d": "AdaptiveAvgPool2d", "flatten": "Flatten", "stochastic_depth": "StochasticDepth"}


def _classes(c) -> dict:
    """Module path -> the class the generated module registers there."""
    out = {}
    for m in c.expanded.model.walk():
        out[m.path] = {"model": c.resolved.spec.class_name, "block": m.type, "sequential": "Sequential"}.get(m.kind) \
            or TORCH_CLASS[m.type]
    return out


@pytest.mark.parametrize("spec", ["mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0", "xception"])
def test_module_classes_are_the_references(compiled, reference, spec):
    """Every module has the reference's path and class name, the model and each block included, except
    where the language cannot follow: torchvision's Conv2dNormActivation is an nn.Sequential subclass
    (a spec writes an nn.Sequential: same children, same keys); EfficientNet registers its
    StochasticDepth in every MBConv but runs it only in those with a shortcut (a spec registers a
    module where it runs; the module has no state); ShuffleNet's one InvertedResidual class is two
    blocks (docs/zoo.md: the stride-2 unit is DownsamplingUnit)."""
    ours = _classes(compiled(f"specs/{spec}.yaml"))
    ref = dict(reference[spec]["module_classes"])
    renamed = {p: (r, ours.get(p)) for p, r in ref.items() if ours.get(p) not in (r, None)}
    missing = {p for p in ref if p not in ours}
    assert set(ours) <= set(ref)
    assert set(renamed.values()) <= {("Conv2dNormActivation", "Sequential"), ("InvertedResidual", "DownsamplingUnit")}
    assert sorted(p for p, (_, mine) in renamed.items() if mine == "DownsamplingUnit") == (
        ["stage2.0", "stage3.0", "stage4.0"] if spec == "shufflenet_v2_x1_0" else [])
    assert all(p.endswith(".stochastic_depth") for p in missing), missing
    # the stochastic depth module is missing exactly where the block has no shortcut
    no_shortcut = {p for p in ours if ours[p] == "MBConv" and f"{p}.stochastic_depth" not in ours}
    assert missing == {f"{p}.stochastic_depth" for p in no_shortcut}
    assert len(missing) == {"efficientnet_b0": 7}.get(spec, 0)
    assert ours[""] == ref[""]


@pytest.mark.parametrize("spec", ["mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0", "xception"])
def test_spec_is_shorter_than_the_references_definition(root, reference, spec):
    """The spec, comments included, has fewer lines than the reference's own source that defines the
    network has lines of code (blanks, comments and docstrings left out; shared blocks such as
    Conv2dNormActivation, builders and weight enums not counted at all: DEFINITIONS in
    tests/reference/measure.py); docs/zoo.md gives the figures."""
    ref = reference[spec]["definition"]
    lines = len((root / "specs" / f"{spec}.yaml").read_text().splitlines())
    assert lines < ref["code_lines"] < ref["lines"]
    objects = ", ".join(ref["objects"])
    row = f"| `{spec}.yaml` | {lines} | `{ref['source']}`: {objects} | {ref['lines']} | {ref['code_lines']} |"
    assert row in (root / "docs" / "zoo.md").read_text(), row
