"""Measure the reference facts the tests compare the specs with, and write them to reference.json.

    python tests/reference/measure.py            # rewrites tests/reference/reference.json
    python tests/reference/measure.py --check    # exit 1 if the committed file differs

Every fact is measured on the reference implementation itself, built with random weights (no
download): torchvision 0.28 for the torchvision-layout specs, timm 1.0.31 for Inception-v4,
Inception-ResNet-v2 and Xception (`legacy_xception`), Cadene's pretrainedmodels 0.7.4 for
BN-Inception. MACs are measured twice,
independently: fvcore's conv + linear count and ``torch.utils.flop_counter`` (FLOPs = 2 x MACs).
Needs the test extras plus fvcore (``pip install fvcore==0.1.5.post20221221``); see README.md here
for the versions. The output is deterministic (no timestamp, no path): running it again with the same
versions gives the same bytes.
"""
from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "reference.json"

# reference name -> (builder, keyword arguments, input size)
TORCHVISION = {
    "alexnet": ("alexnet", {}, 224),
    "vgg16": ("vgg16", {}, 224),
    "vgg16_bn": ("vgg16_bn", {}, 224),
    "googlenet_aux": ("googlenet", {"aux_logits": True, "init_weights": False}, 224),
    "googlenet_noaux": ("googlenet", {"aux_logits": False, "init_weights": False}, 224),
    "inception_v3_aux": ("inception_v3", {"aux_logits": True, "init_weights": False}, 299),
    "inception_v3_noaux": ("inception_v3", {"aux_logits": False, "init_weights": False}, 299),
    "resnet18": ("resnet18", {}, 224),
    "resnet50": ("resnet50", {}, 224),
    "resnet152": ("resnet152", {}, 224),
    "mobilenet_v2": ("mobilenet_v2", {}, 224),
    "efficientnet_b0": ("efficientnet_b0", {}, 224),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}, 224),
}
# reference name -> (builder, input size)
TIMM = {"inception_v4": ("inception_v4", 299), "inception_resnet_v2": ("inception_resnet_v2", 299),
        "xception": ("legacy_xception", 299)}
PRETRAINEDMODELS = {"inception_v2": ("bninception", 224)}
# the models whose leaf modules, dropout rates and training outputs the tests compare
DETAILED = ("googlenet_aux", "googlenet_noaux", "inception_v3_aux", "inception_v3_noaux")
# the models whose every module's class name is recorded (the specs name their blocks after them)
CLASSES = ("mobilenet_v2", "efficientnet_b0", "shufflenet_v2_x1_0", "xception")
# reference name -> (module, the classes, functions and methods that define the network): the
# source a spec replaces, counted in `definition` (the specs must be shorter, docs/zoo.md). Only the
# network's own code in its file: not the shared blocks it borrows (Conv2dNormActivation,
# SqueezeExcitation, StochasticDepth, _make_divisible), not the builders, weight enums and their
# docs, not the configurations of sibling networks (EfficientNet's B1-B7 and V2 tables), not timm's
# feature-extraction API (forward_intermediates, prune_intermediate_layers, group_matcher, ...).
DEFINITIONS = {
    "mobilenet_v2": ("torchvision.models.mobilenetv2", ["InvertedResidual", "MobileNetV2"]),
    "efficientnet_b0": ("torchvision.models.efficientnet", ["_MBConvConfig", "MBConvConfig", "MBConv", "EfficientNet"]),
    "shufflenet_v2_x1_0": ("torchvision.models.shufflenetv2", ["channel_shuffle", "InvertedResidual", "ShuffleNetV2"]),
    "xception": ("timm.models.xception", ["SeparableConv2d", "Block", "Xception.__init__", "Xception.forward_features",
                                          "Xception.forward_head", "Xception.forward"]),
}


def _type_name(obj) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _eval_children(torch, model, x) -> dict:
    """Each top-level child's output shape in an eval forward pass (None: did not run)."""
    shapes = {name: None for name, _ in model.named_children()}
    handles = []
    for name, child in model.named_children():
        def hook(m, inp, out, name=name):
            shapes[name] = list(out.shape)
        handles.append(child.register_forward_hook(hook))
    with torch.no_grad():
        out = model(x)
    for h in handles:
        h.remove()
    return shapes, out


def _macs(torch, model, x) -> tuple:
    """(fvcore conv + linear MACs, torch.utils.flop_counter FLOPs), eval, batch 1."""
    from fvcore.nn import FlopCountAnalysis
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    analysis = FlopCountAnalysis(model, x)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    conv_linear = sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm", "matmul"))
    return conv_linear, counter.get_total_flops()


def _definition(module_name: str, names: list) -> dict:
    """Lines of source of the named objects: every line, and the lines of code (not blank, not a
    comment, not a docstring)."""
    import ast
    import importlib
    import inspect
    import textwrap

    module = importlib.import_module(module_name)
    lines = code = 0
    for name in names:
        obj = module
        for part in name.split("."):
            obj = getattr(obj, part)
        source = textwrap.dedent(inspect.getsource(obj))
        docstrings = set()
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
        rows = source.splitlines()
        lines += len(rows)
        code += sum(1 for i, row in enumerate(rows, 1)
                    if row.strip() and not row.strip().startswith("#") and i not in docstrings)
    return {"source": module_name, "objects": names, "lines": lines, "code_lines": code}


def measure(torch, model, size: int, detailed: bool, classes: bool = False) -> dict:
    model.eval()
    x = torch.randn(1, 3, size, size)
    children, out = _eval_children(torch, model, x)
    conv_linear, flops = _macs(torch, model, x)
    state = model.state_dict()
    facts = {
        "input_size": [1, 3, size, size],
        "params_total": sum(p.numel() for p in model.parameters()),
        "buffer_elements": sum(b.numel() for b in model.buffers()),
        "child_names": list(children),
        "child_param_counts": {n: sum(p.numel() for p in c.parameters()) for n, c in model.named_children()},
        "eval_output_shape": list(out.shape),
        "eval_child_output_shapes": children,
        "eval_children_not_executed": [n for n, s in children.items() if s is None],
        "fvcore_conv_linear_macs": conv_linear,
        "flopcounter_total": flops,
        # [key, shape], a third element for a dtype other than float32 (num_batches_tracked)
        "state_dict": [[k, list(v.shape)] + ([str(v.dtype).replace("torch.", "")] if v.dtype != torch.float32 else [])
                       for k, v in state.items()],
    }
    if classes:
        facts["module_classes"] = [[n, type(m).__name__] for n, m in model.named_modules()]
    if detailed:
        facts["leaf_modules"] = [[n, repr(m)] for n, m in model.named_modules() if n and not list(m.children())]
        facts["dropout_p"] = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
        model.train()
        torch.manual_seed(0)
        with torch.no_grad():
            train_out = model(torch.randn(2, 3, size, size))
        facts["train_output_type"] = _type_name(train_out) if hasattr(train_out, "_fields") else "torch.Tensor"
        facts["train_output_fields"] = list(train_out._fields) if hasattr(train_out, "_fields") else None
    return facts


def measure_all() -> dict:
    sys.path.insert(0, str(HERE.parent))
    from conftest import import_torchvision  # the nms stub that CPU torch needs

    import torch

    torchvision = import_torchvision()
    import pretrainedmodels
    import timm

    models = {}
    for name, (builder, kwargs, size) in TORCHVISION.items():
        torch.manual_seed(0)
        model = getattr(torchvision.models, builder)(weights=None, **kwargs)
        models[name] = {"source": f"torchvision.models.{builder}", "kwargs": {"weights": None, **kwargs},
                        **measure(torch, model, size, name in DETAILED, name in CLASSES)}
    for name, (builder, size) in TIMM.items():
        torch.manual_seed(0)
        models[name] = {"source": f"timm.create_model('{builder}')", "kwargs": {"pretrained": False},
                        **measure(torch, timm.create_model(builder, pretrained=False), size, False, name in CLASSES)}
    for name, (builder, size) in PRETRAINEDMODELS.items():
        torch.manual_seed(0)
        models[name] = {"source": f"pretrainedmodels.{builder}", "kwargs": {"pretrained": None},
                        **measure(torch, getattr(pretrainedmodels, builder)(pretrained=None), size, False)}
    for name, (module_name, names) in DEFINITIONS.items():
        models[name]["definition"] = _definition(module_name, names)
    meta = {
        "generated_by": "tests/reference/measure.py",
        "versions": {p: version(p) for p in ("torch", "torchvision", "timm", "pretrainedmodels", "fvcore")},
        "conventions": {
            "weights": "random (no download); the values are not part of the reference, only shapes and counts",
            "eval": "eval mode, batch 1, no_grad",
            "fvcore_conv_linear_macs": "fvcore FlopCountAnalysis by_operator, conv + linear (1 MAC per 'flop'); "
                                       "archspec's MACs convention",
            "flopcounter_total": "torch.utils.flop_counter.FlopCounterMode total: 2 FLOPs per MAC of "
                                 "convolution/mm/addmm",
            "eval_child_output_shapes": "forward hook on each named child; null: the child did not run in eval "
                                        "(the aux heads)",
            "state_dict": "[key, shape] in state_dict order; a third element gives the dtype when not float32",
            "leaf_modules": "[path, repr()] of every module without children, in named_modules() order",
            "module_classes": "[path, class name] of every module in named_modules() order, the model first (path '')",
            "definition": "the objects (classes, functions, methods) whose source defines the network, their "
                          "lines and lines of code (not blank, comment or docstring); see DEFINITIONS in measure.py",
            "train_output_type": "type of a training-mode forward's result at batch 2",
        },
    }
    return {"meta": meta, "models": models}


def dumps(value, indent: int = 0) -> str:
    """JSON with one line per dict entry and per list of lists: readable diffs, a few hundred KB."""
    pad = " " * indent
    if isinstance(value, dict) and value and (any(isinstance(v, (dict, list)) for v in value.values())
                                              or len(json.dumps(value)) > 100):
        items = [f'{pad} {json.dumps(k)}: {dumps(v, indent + 1).lstrip()}' for k, v in value.items()]
        return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return pad + "[\n" + ",\n".join(f"{pad} {json.dumps(v)}" for v in value) + "\n" + pad + "]"
    return pad + json.dumps(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    parser.add_argument("-o", "--output", default=str(OUT))
    args = parser.parse_args()
    text = dumps(measure_all()) + "\n"
    if args.check:
        same = Path(args.output).read_text() == text
        print(f"{args.output}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
