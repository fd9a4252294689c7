"""archspec diff: matching, grouping, exact deltas, golden outputs and exit codes.

Golden files live in tests/golden/diff/; regenerate them only on purpose, with
``ARCHSPEC_ACCEPT=1 python -m pytest tests/test_diff.py``, and review the git diff.
The small fixture specs in tests/golden/diff/specs/ have totals worked out by hand (see their headers).
"""
from __future__ import annotations

import difflib
import json
import os

import pytest

from archspec.cli import main
from archspec.diff import compact
from archspec.pipeline import diff_specs

from conftest import ROOT, run_cli

GOLDEN = ROOT / "tests" / "golden" / "diff"
FIX = "tests/golden/diff/specs"
PAPER, TV, FACT, ALEX = ("specs/googlenet_paper.yaml", "specs/googlenet.yaml", "specs/googlenet_factorized.yaml",
                         "specs/alexnet.yaml")


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in the output are as given on the command line


def need(*paths):
    missing = [p for p in paths if not (ROOT / p).exists()]
    if missing:
        pytest.skip(f"spec not in this checkout: {', '.join(missing)}")


def diff(capsys, *args):
    code = main(["diff", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def golden(name: str, text: str, folder=GOLDEN) -> None:
    """Compare with a golden file (tests/test_draw.py uses this too); ARCHSPEC_ACCEPT=1 rewrites it."""
    path = folder / name
    if os.environ.get("ARCHSPEC_ACCEPT") == "1":
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.relative_to(ROOT)}; create it with ARCHSPEC_ACCEPT=1 and review it")
    want = path.read_text(encoding="utf-8")
    if text != want:
        delta = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), "golden", "now"))
        pytest.fail(f"output differs from {path.relative_to(ROOT)} (ARCHSPEC_ACCEPT=1 accepts it):\n{delta}")


def groups(d) -> dict:
    return {g.summary: g for g in d.groups}


def assert_deltas_add_up(d) -> None:
    """Every parameter is accounted for by some change; so is every eval MAC."""
    t = d.totals()
    assert sum(c.params_delta for c in d.changes) == t["params"]["delta"]
    assert sum(c.macs_delta for c in d.changes if c.part == "main") == t["macs"]["delta"]


# --- goldens: the three diffs of the issue, and the fixture pair ------------------------------

GOLDENS = [
    ("googlenet_paper__googlenet", PAPER, TV),
    ("googlenet_paper__googlenet_factorized", PAPER, FACT),
    ("alexnet__googlenet", ALEX, TV),
    ("mini__mini_modern", f"{FIX}/mini.yaml", f"{FIX}/mini_modern.yaml"),
    ("mini__mini_factorized", f"{FIX}/mini.yaml", f"{FIX}/mini_factorized.yaml"),
]


@pytest.mark.parametrize("name,a,b", GOLDENS, ids=[g[0] for g in GOLDENS])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_golden(capsys, name, a, b, fmt):
    need(a, b)
    code, out, err = diff(capsys, a, b, "--format", fmt)
    assert (code, err) == (1, "")
    golden(f"{name}.{'txt' if fmt == 'text' else 'json'}", out)
    if fmt == "json":
        assert json.loads(out)["identical"] is False


def test_golden_markdown(capsys):
    code, out, _ = diff(capsys, f"{FIX}/mini.yaml", f"{FIX}/mini_modern.yaml", "--format", "markdown")
    assert code == 1
    golden("mini__mini_modern.md", out)


# --- the torchvision deviations, each with its exact delta ------------------------------------

def test_paper_vs_torchvision_lists_the_deviations():
    need(PAPER, TV)
    d = diff_specs(PAPER, TV)
    g = groups(d)
    k = g["conv2d kernel 5x5 -> 3x3, padding 2 -> 1"]
    # 16 fewer weights per (in, out) channel pair in each "5x5" branch: 16 x sum(ch5x5red x ch5x5)
    assert len(k.changes) == 9 and k.params_delta == -16 * 23_808 == -380_928
    assert k.compact_locations() == ["inception{3a,3b,4a,4b,4c,4d,4e,5a,5b}.branch3.1.conv"]
    assert k.macs_delta == -84_295_680
    assert [c.params_delta for c in k.changes][:2] == [-16 * 16 * 32, -16 * 32 * 96]
    bn = g["batchnorm2d(eps=0.001)"]
    assert (bn.kind, len(bn.changes), bn.params_delta) == ("added", 59, 15_072)  # 2 x every conv's channels
    bias = g["conv2d bias true -> false"]
    assert (len(bias.changes), bias.params_delta) == (59, -7_536)
    lrn = g["local_response_norm(5)"]
    assert (lrn.kind, lrn.compact_locations()) == ("removed", ["norm{1,2}"])
    assert g["maxpool2d kernel 3x3 -> 2x2"].locations == ["maxpool4"]
    assert g["dropout rate 0.4 -> 0.2"].locations == ["dropout"]
    aux = g["pooling kind avg -> adaptive avg: avgpool2d(5, stride=3) -> adaptive_avgpool2d(4)"]
    assert aux.compact_locations() == ["aux{1,2}/adaptive_avgpool2d"] and aux.parts == ["aux1", "aux2"]
    assert d.totals()["params"] == {"a": 13_378_280, "b": 13_004_888, "delta": -373_392, "ratio": 0.9721}
    assert_deltas_add_up(d)


def test_factorized_shows_each_rewrite_with_its_cost():
    need(PAPER, FACT)
    d = diff_specs(PAPER, FACT)
    (g,) = d.groups
    assert g.kind == "replaced" and len(g.changes) == 9
    first = g.changes[0]
    assert first.summary == "ConvReLU(32, kernel_size=5, padding=2) -> 2 x BasicConv2d(32, kernel_size=3, padding=1)"
    # 5x5 16->32 with bias: 12,832; two 3x3 (16->32, 32->32) without bias, each with BN: 13,952
    assert ([s["params"] for s in first.a], sum(s["params"] for s in first.b)) == ([12_832], 13_952)
    assert_deltas_add_up(d)


def test_alexnet_vs_googlenet_states_the_parameter_ratio(capsys):
    need(ALEX, TV)
    code, out, _ = diff(capsys, ALEX, TV)
    assert code == 1
    assert ("Parameters (eval, main network): alexnet 61,100,840, googlenet 6,624,904; "
            "googlenet/alexnet = 0.108 (9.22x fewer)") in out
    assert "googlenet/alexnet = 0.213 (4.70x fewer)" in out  # aux heads included
    assert_deltas_add_up(diff_specs(ALEX, TV))


# --- the machinery, on small specs with hand-computed numbers --------------------------------

def test_fixture_changes_have_hand_computed_deltas():
    d = diff_specs(f"{FIX}/mini.yaml", f"{FIX}/mini_modern.yaml")
    g = groups(d)
    kernel = g["conv2d kernel 5x5 -> 3x3, padding 2 -> 1"]
    # mix1: 8x8 channels, mix2: 16x16, 16 weights fewer each; MACs over 16x16 outputs
    assert [c.params_delta for c in kernel.changes] == [-8 * 8 * 16, -16 * 16 * 16]
    assert [c.macs_delta for c in kernel.changes] == [-8 * 16 * 16 * 8 * 16, -16 * 16 * 16 * 16 * 16]
    assert g["conv2d bias true -> false"].params_delta == -(16 + 8 + 8 + 8 + 8 + 16 + 16)
    assert g["batchnorm2d"].params_delta == 2 * (16 + 8 + 8 + 8 + 8 + 16 + 16)
    assert g["pooling kind max -> avg: maxpool2d(2) -> avgpool2d(2)"].locations == ["pool"]
    assert (g["local_response_norm(3)"].kind, g["local_response_norm(3)"].locations) == ("removed", ["lrn"])
    assert g["dropout rate 0.5 -> 0.2"].locations == ["drop"]
    renamed = g["(same structure)"]
    assert (renamed.kind, renamed.locations) == ("renamed", ["head -> classifier"])
    assert g["aux loss_weight 0.3 -> 0.4"].locations == ["side"]
    assert d.totals()["params"]["delta"] == -5_040
    assert_deltas_add_up(d)


def test_rewrite_is_one_replaced_change_per_place():
    d = diff_specs(f"{FIX}/mini.yaml", f"{FIX}/mini_factorized.yaml")
    (g,) = d.groups
    assert g.summary == "Unit(conv2d 5x5) -> 2 x Unit(conv2d 3x3)"
    assert g.compact_locations() == ["mix{1,2}.right.{1,2}"]
    # 5x5 8->8 + bias = 1,608 -> 2 x (3x3 8->8 + bias) = 1,168; 16 channels: 6,416 -> 4,640
    assert [c.params_delta for c in g.changes] == [1_168 - 1_608, 4_640 - 6_416]
    assert_deltas_add_up(d)


def test_a_wider_layer_is_followed_by_the_layers_that_read_it():
    d = diff_specs(f"{FIX}/mini.yaml", f"{FIX}/mini_wide.yaml")
    g = groups(d)
    stem = g["conv2d channels 16 -> 24"]
    assert (stem.locations, stem.params_delta) == (["stem.conv"], 8 * (27 + 1))
    assert stem.output_change() == "output [1, 16, 32, 32] -> [1, 24, 32, 32]"
    follow = g["conv2d in_channels 16 -> 24"]
    assert (follow.compact_locations(), follow.params_delta) == (["mix1.left.conv", "mix1.right.0.conv"], 2 * 8 * 8)
    assert_deltas_add_up(d)


def test_identical_networks_exit_0(capsys):
    code, out, _ = diff(capsys, f"{FIX}/mini.yaml", f"{FIX}/mini_same.yaml")
    assert code == 0
    assert "The two networks are identical (name mini -> mini_same)." in out
    code, out, _ = diff(capsys, f"{FIX}/mini.yaml", f"{FIX}/mini.yaml", "--format", "json")
    assert (code, json.loads(out)["identical"], json.loads(out)["groups"]) == (0, True, [])


def test_json_keeps_the_per_place_detail(capsys):
    code, out, _ = diff(capsys, f"{FIX}/mini.yaml", f"{FIX}/mini_modern.yaml", "--format", "json")
    data = json.loads(out)
    kernel = next(g for g in data["groups"] if g["summary"].startswith("conv2d kernel"))
    assert (kernel["count"], kernel["params_delta"], kernel["locations"]) == (2, -5_120, ["mix{1,2}.right.1.conv"])
    first = kernel["changes"][0]
    assert first["attrs"] == [{"name": "kernel_size", "a": 5, "b": 3}, {"name": "padding", "a": 2, "b": 1}]
    assert (first["a"][0]["params"], first["b"][0]["params"]) == (1_608, 576)  # the bias goes in its own change
    assert first["b"][0]["output_shape"] == [1, 8, 16, 16]
    mods = {m["path"]: m for m in data["modules"]}
    assert mods["mix2"]["params_delta"] == 2_768 - 6_824 and mods["classifier"]["a"] is None


def test_code_adds_a_unified_diff_of_the_generated_modules(capsys):
    code, out, _ = diff(capsys, f"{FIX}/mini.yaml", f"{FIX}/mini_modern.yaml", "--code")
    assert code == 1
    text = out[out.index("Generated code (unified diff):"):]
    assert "--- a/mini.py\n+++ b/mini_modern.py\n" in text
    assert "-        self.lrn = nn.LocalResponseNorm(3)\n" in text


@pytest.mark.parametrize("args,message", [
    ((f"{FIX}/mini.yaml", f"{FIX}/nothing.yaml"), "error: no such file: tests/golden/diff/specs/nothing.yaml"),
    ((f"{FIX}/broken.yaml", f"{FIX}/mini.yaml"), "tests/golden/diff/specs/broken.yaml:5:32: error: cannot parse call"),
])
def test_trouble_exits_2(capsys, args, message):
    code, out, err = diff(capsys, *args)
    assert (code, out) == (2, "")
    assert message in err and "Traceback" not in err


def test_exit_codes_of_the_process():
    same = run_cli("diff", f"{FIX}/mini.yaml", f"{FIX}/mini_same.yaml")
    differ = run_cli("diff", f"{FIX}/mini.yaml", f"{FIX}/mini_wide.yaml", "--format", "json")
    usage = run_cli("diff", f"{FIX}/mini.yaml", f"{FIX}/mini.yaml", "--format", "yaml")
    assert (same.returncode, differ.returncode, usage.returncode) == (0, 1, 2)
    assert json.loads(differ.stdout)["totals"]["params"]["delta"] == 352


def test_compact_folds_one_component_at_a_time():
    assert compact(["inception3a.branch3.1.conv", "inception3b.branch3.1.conv", "conv1.bn"]) == [
        "inception3{a,b}.branch3.1.conv", "conv1.bn"]
    paths = [f"m{i}.b{j}.{k}" for i in (1, 2) for j in (2, 3) for k in (0, 1)]
    assert compact(paths) == ["m{1,2}.b{2,3}.{0,1}"]
    assert compact(["a.x", "b.y"]) == ["a.x", "b.y"]  # no false cartesian product
    assert compact(["aux1/pool", "aux2/pool"]) == ["aux{1,2}/pool"]


def test_public_api_diff_survives_the_import_of_its_module():
    import archspec

    first = archspec.diff(f"{FIX}/mini.yaml", f"{FIX}/mini_wide.yaml")  # imports archspec.diff
    again = archspec.diff(f"{FIX}/mini.yaml", f"{FIX}/mini_wide.yaml")  # the name now holds the module
    assert first.totals() == again.totals() and not again.identical


def test_deltas_add_up_for_every_pair_of_shipped_specs(compiled):
    """Flat and nested layouts, different input sizes, residual and Inception blocks: every
    parameter and every eval MAC of the difference is in exactly one change."""
    import itertools

    from archspec.diff import diff_compiled
    from archspec.pipeline import spec_files

    specs = spec_files(str(ROOT / "specs"))
    assert len(specs) >= 2
    for a, b in itertools.permutations(specs, 2):
        d = diff_compiled(compiled(a), compiled(b))
        assert_deltas_add_up(d)
        assert d.text() and d.markdown() and json.dumps(d.to_json())


def test_specs_are_shown_as_given_and_ratios_one_way(capsys):
    """`diff googlenet_paper googlenet_factorized` names the stock specs as typed, not as installed
    files, and writes B/A once: params 13,665,464 / 13,378,280 = 1.02146..., 1.021 in the table,
    in words and in markdown (the table said 1.022x, from a ratio rounded twice)."""
    code, text, _ = diff(capsys, "googlenet_paper", "googlenet_factorized")
    assert code == 1
    assert text.startswith("A: googlenet_paper  (googlenet_paper)\nB: googlenet_factorized  (googlenet_factorized)\n")
    assert "  params (training)        13,378,280            13,665,464     +287,184  1.021\n" in text
    assert "googlenet_factorized/googlenet_paper = 1.021 (2.1% more)" in text
    code, md, _ = diff(capsys, "googlenet_paper", "googlenet_factorized", "--format", "markdown")
    assert "A: `googlenet_paper`, B: `googlenet_factorized`" in md
    assert "| params (training) | 13,378,280 | 13,665,464 | +287,184 | 1.021 |" in md
    assert "= 1.021 (2.1% more)" in md and "x |" not in md
    code, js, _ = diff(capsys, "googlenet_paper", PAPER, "--format", "json")
    j = json.loads(js)
    assert (j["a"]["spec"], j["b"]["spec"], j["totals"]["params"]["ratio"]) == ("googlenet_paper", PAPER, 1.0)
