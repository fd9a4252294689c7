"""archspec schema: a valid JSON Schema that every shipped spec and library satisfies, and that
refuses the mistakes an editor should underline. Also: diff, draw and schema never import torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from archspec.schema import schema, schema_json

from conftest import ROOT

jsonschema = pytest.importorskip("jsonschema")  # in the `test` extra

SHIPPED = sorted([*(ROOT / "specs").glob("*.yaml"), *(ROOT / "specs" / "lib").glob("*.yaml")])
FIXTURES = sorted((ROOT / "tests" / "golden" / "diff" / "specs").glob("mini*.yaml"))
# the docs' examples of the language's constructs (issue 11)
LANGUAGE = [ROOT / "tests" / "specs" / "ok" / f"{name}.yaml" for name in
            ("expressions", "input_size", "conditional_blocks", "named_repeat", "stage_table", "op_arguments")]


@pytest.fixture(scope="module")
def validator():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def test_shipped_specs_exist():
    names = {p.name for p in SHIPPED}
    assert {"googlenet.yaml", "basic.yaml"} <= names


@pytest.mark.parametrize("path", SHIPPED + FIXTURES + LANGUAGE, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_shipped_spec_satisfies_the_schema(validator, path):
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


BASE = {"archspec": 1, "name": "n", "input": [3, 32, 32], "layers": ["relu"]}


@pytest.mark.parametrize("doc,why", [
    ({**BASE, "layer": []}, "unknown top-level field"),
    ({**BASE, "archspec": 2}, "unsupported version"),
    ({**BASE, "input": [3, 32]}, "input needs C, H, W"),
    ({**BASE, "layers": [{"a": "relu", "b": "relu"}]}, "two layers in one item"),
    ({**BASE, "layers": [{"concat": [["relu"]]}]}, "a merge needs two branches"),
    ({**BASE, "layers": [{"concat": [["relu"], ["relu"]], "x": "relu"}]}, "concat combined with a name"),
    ({**BASE, "layers": [{"repeat": 2, "body": ["relu"], "as": "1i"}]}, "a loop variable that is no identifier"),
    ({**BASE, "layers": [{"for": ["t"], "body": ["relu"]}]}, "a table without in:"),
    ({**BASE, "layers": [{"if": "t", "body": ["relu"], "x": "relu"}]}, "a group with a name beside it"),
    ({**BASE, "args": {"act": "operator = relu"}}, "an unknown argument type"),
    ({**BASE, "layers": [{"repeat": 2}]}, "a module named repeat needs a call or a list"),
    ({**BASE, "layers": [{"1x1": "relu"}]}, "a name that is not an identifier"),
    ({**BASE, "layers": [{"block1-0": "relu"}]}, "a named entry's name outside an nn.Sequential"),
    ({**BASE, "layers": [{"trunk": [{"a.b": "relu"}]}]}, "a '.' in a named entry"),
    ({**BASE, "layers": [{"trunk": [{"": "relu"}]}]}, "an empty name"),
    ({**BASE, "layers": [42]}, "a number is not a layer"),
    ({**BASE, "blocks": {"B": {"args": {"c": "integer"}, "layers": ["relu"]}}}, "unknown argument type"),
    ({**BASE, "aux": {"a": {"from": "x", "module": "relu"}}}, "aux head without loss_weight"),
    ({"archspec": 1, "description": "lib", "blocks": {}, "layers": ["relu"]}, "a network without name/input"),
    ({"archspec": 1, "extends": "g.yaml", "edit": [{"replace": "x"}]}, "replace without with"),
    ({**BASE, "outputs": {"fields": ["logits", "aux1"]}}, "outputs fields are a mapping, not a list"),
    ({**BASE, "outputs": {"order": ["logits"]}}, "an unknown key of outputs"),
])
def test_schema_refuses(validator, doc, why):
    assert list(validator.iter_errors(doc)), why


@pytest.mark.parametrize("doc", [
    BASE,
    {**BASE, "layers": [{"repeat": [{"repeat": 2, "body": ["relu"]}]}]},  # 'repeat' names a module without body:
    {**BASE, "layers": [{"seq": ["relu", ["relu", {"repeat": "n * 2", "body": ["relu"]}]]}, {"bn": "relu", "if": "use_bn"},
                        {"add": [[], ["relu"]]}, {"concat": [{"a": "relu"}, ["relu", {"b": "conv2d(8, 1)"}]]}]},
    {"archspec": 1, "extends": "googlenet.yaml", "name": "v", "blocks": {"Old": None},
     "edit": [{"after": "conv1", "insert": [{"n": "relu"}]}, {"remove": "maxpool1"}]},
    {"archspec": 1, "use": ["basic.yaml"], "blocks": {"B": {"args": {"c": {"type": "size", "default": 1}}, "layers": []}}},
    {**BASE, "layers": [{"trunk": [{"block1": [{"block1-0": "relu"}, {"block1-1": ["relu"]}]}]}]},
    {**BASE, "outputs": {"type": "GoogLeNetOutputs", "fields": {"logits": "main", "aux_logits2": "aux2"}}},
    {**BASE, "args": {"act": "op = relu"}, "layers": [
        {"repeat": 2, "as": "i", "body": [{"conv{i + 1}": "conv2d(8, 1)"}], "if": "true"},
        {"for": ["t", "c"], "in": [[1, 16], [6, "c0 * 2"]], "body": [{"add": [[], {"if": "t == 1", "body": []}]}]},
        {"if": "t != 1", "body": ["relu"]}, {"mul": [[], ["sigmoid"]], "if": "se"},
        {"seq": [{"if": "a", "body": ["relu"]}, {"for": "k", "in": [1, 3], "body": ["relu"]}, "act"]}]},
    {"archspec": 1, "extends": "googlenet.yaml", "aux": {"aux1": None, "aux2": None}, "outputs": None},
])
def test_schema_accepts(validator, doc):
    assert [e.message for e in validator.iter_errors(doc)] == []


def test_layer_items_are_described():
    defs = schema()["$defs"]
    assert defs["Layer"]["anyOf"] == [{"$ref": f"#/$defs/{d}"} for d in ("Call", "Merge", "Group", "Repeat", "For", "Named")]
    assert "conv2d(out_channels, kernel_size, stride, padding, dilation, groups, bias)" in defs["Call"]["description"]
    assert schema()["properties"]["layers"]["items"] == {"$ref": "#/$defs/Layer"}


def test_cli_prints_the_schema_without_torch():
    code = ("import sys, json; from archspec.cli import main; rc = main(['schema']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(schema_json())


def test_diff_and_draw_do_not_import_torch(tmp_path):
    mini = "tests/golden/diff/specs/mini.yaml"
    code = ("import sys; from archspec.cli import main; "
            f"a = main(['diff', '{mini}', 'tests/golden/diff/specs/mini_modern.yaml', '--code']); "
            f"b = main(['draw', '{mini}', '-o', {str(tmp_path / 'm.mmd')!r}]); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(10 * a + b)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 10, proc.stderr
