"""outputs: a spec names and orders what its model returns in training (docs/spec.md).

Small synthetic specs: every error with its location, the default layout, and for random layouts
(names, order, type) that each field of the generated namedtuple holds the tensor of the part it
names, and that loss() weights the right ones.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archspec.errors import ArchspecError, flatten
from archspec.pipeline import compile_spec

# a network with three aux heads of different widths, so a field holding the wrong head shows
NET = """archspec: 1
name: net
input: [3, 8, 8]
num_classes: 5
layers:
  - c1: conv2d(4, 3, padding=1)
  - relu
  - c2: conv2d(6, 3, padding=1)
  - relu
  - flatten
  - fc: linear(num_classes)
aux:
  a: {from: c1, loss_weight: 0.5, module: [flatten, 'linear(2)']}
  b: {from: c2, loss_weight: 0.25, module: [flatten, 'linear(3)']}
  c: {from: c2, loss_weight: 2.0, module: [flatten, 'linear(4)']}
"""


def _write(tmp_path, text: str, name: str = "net.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _errors(path) -> list:
    """Every error of compiling the spec and generating its module."""
    from archspec.generate import generate

    with pytest.raises(ArchspecError) as info:
        generate(compile_spec(path))
    return [(e.loc.line, e.loc.col, e.message) for e in flatten(info.value)]


def _generated(c):
    from archspec.generate import class_name_of, generate

    namespace: dict = {}
    exec(compile(generate(c), "net.py", "exec"), namespace)
    return namespace, namespace[class_name_of(c.resolved.spec)]


# --- the spec -----------------------------------------------------------------------------------

@pytest.mark.parametrize("outputs,want", [
    ("outputs: {fields: {logits: main, a: a, b: nope, c: c}}",
     [(16, 19, "outputs.fields must give main and every aux head a field; missing: b"),
      (16, 43, "'nope' is neither main nor an aux head (aux heads: a, b, c)")]),
    ("outputs: {fields: {logits: main, x1: a, x2: a, b: b, c: c}}", [(16, 45, "'a' is already the field 'x1'")]),
    ("outputs: {fields: {logits: main, count: a, _b: b, class: c}}",
     [(16, 34, "output field 'count' would hide the tuple method of that name"),
      (16, 44, "output field '_b' must be a Python identifier, not a keyword and not starting with _"),
      (16, 51, "output field 'class' must be a Python identifier, not a keyword and not starting with _")]),
    ("outputs: {fields: {a: a, b: b, c: c}}",
     [(16, 19, "outputs.fields must give main and every aux head a field; missing: main")]),
    ("outputs: {type: 3Out}", [(16, 17, "'type': '3Out' must be a Python identifier (letters, digits, _; not a keyword; "
                                        "not starting with _ or a digit)")]),
    ("outputs: {fields: [logits, a]}", [(16, 19, "'fields': should be a valid dictionary, got a list")]),
])
def test_errors_are_located(tmp_path, outputs, want):
    assert _errors(_write(tmp_path, NET + outputs + "\n")) == want


def test_outputs_need_aux_heads(tmp_path):
    text = NET.split("aux:")[0] + "outputs: {type: Out}\n"
    assert _errors(_write(tmp_path, text)) == [
        (12, 1, "outputs: this spec has no aux heads, so its model returns the output tensor in training as in eval "
                "(remove outputs:, or set outputs: null in a variant)")]


def test_an_aux_head_cannot_be_called_main(tmp_path):
    text = NET.replace("  a: {from: c1", "  main: {from: c1")
    assert _errors(_write(tmp_path, text)) == [
        (13, 3, "'main' names the main network (its part, and its output in outputs:); an aux head needs another name")]


@pytest.mark.parametrize("type_,hidden", [("torch", "the torch that the generated file imports"),
                                          ("Net", "the model class"), ("loss", "the loss that the generated file defines"),
                                          ("namedtuple", "the namedtuple that the generated file imports"),
                                          ("target", "the parameter or local target of a generated method")])
def test_a_type_that_clashes_is_refused(tmp_path, type_, hidden):
    assert _errors(_write(tmp_path, NET + f"outputs: {{type: {type_}}}\n")) == [
        (16, 17, f"outputs type '{type_}' would hide {hidden}: choose another type name")]


def test_a_variant_that_removes_the_heads_drops_outputs_too(tmp_path):
    _write(tmp_path, NET + "outputs: {type: Out, fields: {logits: main, c: c, b: b, a: a}}\n", "base.yaml")
    plain = "archspec: 1\nextends: base.yaml\nname: plain\naux: {a: null, b: null, c: null}\n"
    assert _errors(_write(tmp_path, plain, "plain.yaml"))[0][2].startswith("outputs: this spec has no aux heads")
    c = compile_spec(_write(tmp_path, plain + "outputs: null\n", "plain.yaml"))
    assert not c.expanded.aux and c.resolved.output_fields() == [("logits", "main")]


def test_the_default_layout(tmp_path):
    c = compile_spec(_write(tmp_path, NET))
    assert c.resolved.output_fields() == [("logits", "main"), ("a", "a"), ("b", "b"), ("c", "c")]
    namespace, _ = _generated(c)
    assert namespace["NetOutputs"]._fields == ("logits", "a", "b", "c")


# --- the generated module -----------------------------------------------------------------------

@st.composite
def layouts(draw):
    """A random order of main and the three heads, random field names and type name."""
    sources = draw(st.permutations(["main", "a", "b", "c"]))
    names = draw(st.lists(st.sampled_from(["logits", "out", "aux_logits1", "aux_logits2", "x", "a", "b", "c", "self",
                                           "torch", "loss", "F", "training", "NetOutputs", "Net", "main"]),
                          min_size=4, max_size=4, unique=True))
    type_ = draw(st.sampled_from([None, "Outputs", "NetOutputs", "GoogLeNetOutputs", "x", "a", "Unit", "Tuple2"]))
    return type_, list(zip(names, sources))


@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(layouts())
def test_each_field_holds_its_part(tmp_path_factory, layout):
    torch = pytest.importorskip("torch")
    type_, fields = layout
    block = "  Unit:\n    layers: [relu]\n" if type_ == "Unit" else ""
    text = NET + (f"blocks:\n{block}" if block else "") + "outputs:\n" + (f"  type: {type_}\n" if type_ else "") + \
        "  fields: {" + ", ".join(f"{n}: {s}" for n, s in fields) + "}\n"
    path = _write(tmp_path_factory.mktemp("outputs"), text)
    try:
        c = compile_spec(path)
        namespace, cls = _generated(c)
    except ArchspecError as exc:  # only a type that clashes with a name the module uses is refused
        assert exc.message == {"x": "outputs type 'x' would hide the parameter or local x of a generated method: "
                                    "choose another type name"}[type_]
        return  # a block Unit is renamed (class Unit_), an aux head a's local too
    out_type = namespace[type_ or "NetOutputs"]
    assert namespace["__all__"] == ["Net", type_ or "NetOutputs", "loss"]
    torch.manual_seed(0)
    model = cls().train()
    seen = {}
    for head in ("a", "b", "c"):
        getattr(model, head).register_forward_hook(lambda m, i, o, head=head: seen.__setitem__(head, o))
    model.fc.register_forward_hook(lambda m, i, o: seen.__setitem__("main", o))
    out = model(torch.randn(2, 3, 8, 8))
    assert type(out) is out_type and out._fields == tuple(n for n, _ in fields)
    for (name, source), value in zip(fields, out):
        assert value is seen[source] and getattr(out, name) is seen[source], (name, source)
    target = torch.tensor([1, 0])
    ce = torch.nn.functional.cross_entropy
    want = ce(seen["main"], target) + 0.5 * ce(seen["a"], target) + 0.25 * ce(seen["b"], target) + \
        2.0 * ce(seen["c"], target)
    assert torch.allclose(namespace["loss"](out, target), want)
    assert isinstance(model.eval()(torch.randn(2, 3, 8, 8)), torch.Tensor)
