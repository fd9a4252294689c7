"""`archspec check`: GoogLeNet against torchvision's measured facts, the CLI contract, and small
specs whose totals are worked out by hand in the comments (so a wrong rule cannot hide behind a
golden file).

MACs follow the conv+linear convention: a conv's MACs are out_C * out_H * out_W * (in_C / groups)
* kH * kW; a linear's are in_features * out_features; biases and every other op count zero.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

OK = "tests/specs/ok"
BROKEN = "tests/specs/broken"

GOOGLENET_TOP = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                 "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                 "inception5a", "inception5b", "aux1", "aux2", "avgpool", "dropout", "fc"]


@pytest.fixture
def cli_here(monkeypatch, capsys):
    """`archspec ARGS` run by archspec.cli.main in this process (no interpreter start-up), from the
    repository root; returns the exit status and both streams like a subprocess would."""
    from archspec.cli import main

    monkeypatch.chdir(ROOT)

    def run(*args) -> subprocess.CompletedProcess:
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out.out, out.err)

    return run


@pytest.fixture
def check_json(cli_here):
    def run(*args):
        proc = cli_here("check", *args, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


@pytest.fixture(scope="module")
def googlenet_json():
    """The contract itself: the installed command, in a subprocess."""
    proc = run_cli("check", "specs/googlenet.yaml", "--format", "json")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)


# --- GoogLeNet against torchvision 0.28 -------------------------------------------------------

def test_googlenet_totals(googlenet_json):
    j = googlenet_json
    assert j["name"] == "googlenet"
    assert j["spec"] == "specs/googlenet.yaml"
    assert j["input"] == [1, 3, 224, 224]
    assert j["output"] == [1, 1000]
    t = j["totals"]
    assert t["params"] == 13_004_888  # torchvision googlenet(aux_logits=True), every part
    assert t["params_eval"] == 6_624_904  # torchvision's meta num_params: without aux heads
    assert t["params_by_part"] == {"main": 6_624_904, "aux1": 3_188_968, "aux2": 3_191_016}
    assert t["macs"] == 1_498_376_192  # fvcore conv+linear; torchvision's _ops 1.498 GFLOPS
    assert t["flops"] == 2_996_752_384  # torch.utils.flop_counter
    assert t["flops"] == 2 * t["macs"]
    assert t["depth"] == 22  # the paper's count
    assert t["buffers"] == 15_131  # reference buffer_elements (BN stats + num_batches_tracked)


def test_googlenet_totals_match_reference(googlenet_json, reference):
    ref = reference["googlenet_aux"]
    t = googlenet_json["totals"]
    assert t["params"] == ref["params_total"]
    assert t["params_eval"] == reference["googlenet_noaux"]["params_total"]
    assert t["macs"] == ref["fvcore_conv_linear_macs"]
    assert t["flops"] == ref["flopcounter_total"]
    assert t["buffers"] == ref["buffer_elements"]
    assert googlenet_json["output"] == ref["eval_output_shape"]


def test_googlenet_module_shapes(googlenet_json, reference):
    ref = reference["googlenet_aux"]
    top = [m for m in googlenet_json["modules"] if "." not in m["path"]]
    assert [m["path"] for m in top] == GOOGLENET_TOP == list(ref["eval_child_output_shapes"])
    for m in top:
        want = ref["eval_child_output_shapes"][m["path"]]
        if want is None:  # aux1/aux2 do not run in eval; here they are the aux heads
            assert m["path"] in ref["eval_children_not_executed"]
            assert m["type"] == "InceptionAux" and m["part"] == m["path"]
            assert m["output_shape"] == [1, 1000]  # as in training (train_output_shapes)
        else:
            assert m["output_shape"] == want, m["path"]
        assert m["params"] == ref["child_param_counts"][m["path"]], m["path"]


def test_googlenet_aux_in_json(googlenet_json):
    assert googlenet_json["aux"] == {
        "aux1": {"from": "inception4a", "loss_weight": 0.3, "params": 3_188_968, "output": [1, 1000]},
        "aux2": {"from": "inception4d", "loss_weight": 0.3, "params": 3_191_016, "output": [1, 1000]},
    }


def _ref_state(ref):
    return [(key, tuple(shape)) for key, shape, *_ in ref["state_dict"]]


def test_googlenet_state_dict(compiled, reference):
    from archspec.analyse import state_dict_shapes

    graph = compiled("specs/googlenet.yaml").graph
    assert state_dict_shapes(graph) == _ref_state(reference["googlenet_aux"])  # 364 keys, in order
    assert state_dict_shapes(graph, aux=False) == _ref_state(reference["googlenet_noaux"])  # 344 keys


def test_googlenet_without_aux_variant(tmp_path, reference):
    """`aux: {name: null}` in a variant removes the heads; the result is googlenet(aux_logits=False)."""
    from archspec.analyse import state_dict_shapes
    from archspec.pipeline import compile_spec

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "basic.yaml").write_text((ROOT / "specs/lib/basic.yaml").read_text())
    (tmp_path / "googlenet.yaml").write_text((ROOT / "specs/googlenet.yaml").read_text())
    (tmp_path / "noaux.yaml").write_text("archspec: 1\nextends: googlenet.yaml\nname: googlenet_noaux\n"
                                         "aux: {aux1: null, aux2: null}\noutputs: null\nexpect: {params: 6624904}\n")
    c = compile_spec(str(tmp_path / "noaux.yaml"))
    assert c.analysis.totals.params == c.analysis.totals.params_eval == 6_624_904
    assert state_dict_shapes(c.graph) == _ref_state(reference["googlenet_noaux"])


# --- torch is never imported -------------------------------------------------------------------

def test_check_imports_no_torch():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "archspec", "check", "specs/googlenet.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "archspec.analyse" in imported and "pydantic" in imported  # the trace is real
    assert not [m for m in imported if m.split(".")[0] in ("torch", "torchvision")]


def test_compile_spec_leaves_torch_unimported():
    """In a fresh interpreter (this test process may have torch already), run every check stage."""
    code = ("import sys\n"
            "from archspec.pipeline import compile_spec\n"
            "from archspec.report import table, to_json\n"
            "c = compile_spec('specs/googlenet.yaml')\n"
            "table(c); to_json(c)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(c.analysis.totals.params)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "13004888"


# --- the command line --------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["check", "specs/googlenet.yaml", "--input", "3x224"],  # two sizes
    ["check", "specs/googlenet.yaml", "--input", "0x224x224"],  # a zero size
    ["check", "specs/googlenet.yaml", "--depth", "-1"],
    ["check", "specs/googlenet.yaml", "--num-classes", "0"],
    ["check", "specs/googlenet.yaml", "--format", "yaml"],
    ["check", "--frobnicate"],
    [],  # no subcommand
])
def test_usage_errors_exit_2(args, cli_here):
    proc = cli_here(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "usage: archspec" in proc.stderr


def test_version(cli_here):
    from archspec import __version__

    proc = cli_here("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"archspec {__version__}\n", "")


def test_num_classes_above_the_integer_bound_is_a_usage_error(cli_here):
    proc = cli_here("check", "specs/alexnet.yaml", "--num-classes", "99999999999999999")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == \
        "archspec: error: argument --num-classes: expected at most 10^15, got '99999999999999999'"
    assert cli_here("check", "specs/alexnet.yaml", "--num-classes", str(10**15), "--format", "json").returncode == 0


def test_usage_errors_through_the_command():
    proc = run_cli("check", "specs/googlenet.yaml", "--input", "3x224")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == \
        "archspec: error: argument --input: expected C x H x W such as 3x224x224, got '3x224'"
    proc = run_cli()  # no subcommand
    assert proc.returncode == 2 and "usage: archspec" in proc.stderr


def test_usage_error_messages(cli_here):
    proc = cli_here("check", "specs/googlenet.yaml", "--depth", "-1")
    assert proc.stderr.splitlines()[-1] == "archspec: error: argument --depth: expected a non-negative integer, got '-1'"


def test_exit_codes_ok_and_spec_error(cli_here):
    ok = cli_here("check", "specs/googlenet.yaml")
    assert ok.returncode == 0 and ok.stderr == ""
    bad = run_cli("check", f"{BROKEN}/unknown_op.yaml")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith(f"{BROKEN}/unknown_op.yaml:7:5: error: unknown op or block 'swish'")
    missing = cli_here("check", "no/such/spec.yaml")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "no/such/spec.yaml: error: no such file: no/such/spec.yaml"


def test_wrong_expect_is_an_error():
    proc = run_cli("check", f"{BROKEN}/wrong_expect.yaml")
    assert proc.returncode == 1
    # conv2d(8, 3) on 3x32x32: 8*3*3*3 + 8 = 224; fc on 8*30*30 = 7200 features: 7200*10 + 10 = 72010
    assert proc.stderr.splitlines()[:4] == [
        f"{BROKEN}/wrong_expect.yaml:10:11: error: expect.params is 72,354 but the network has 72,234",
        "  in expect.params",
        "   10 |   params: 72354",
        "      |           ^",
    ]


def _rows(table: str) -> list:
    """(level, name, type) of every module row of a check table."""
    out = []
    for line in table.splitlines():
        m = re.match(r"( *)(\w+) \((\w+)\)", line)
        if m and not line.startswith("Layer (type)"):
            out.append((len(m.group(1)) // 2 + 1, m.group(2), m.group(3)))
    return out


def test_depth_collapses_the_table(cli_here):
    shallow = cli_here("check", "specs/googlenet.yaml", "--depth", "1")
    deep = cli_here("check", "specs/googlenet.yaml", "--depth", "3")
    assert shallow.returncode == deep.returncode == 0
    rows1, rows3 = _rows(shallow.stdout), _rows(deep.stdout)
    assert [name for _, name, _ in rows1] == GOOGLENET_TOP
    assert {level for level, _, _ in rows1} == {1}
    assert (1, "inception3a", "Inception") in rows1 and (2, "branch2", "Sequential") not in rows1
    assert {level for level, _, _ in rows3} == {1, 2, 3}
    i = rows3.index((1, "inception3a", "Inception"))
    # inception3a, then branch1 (a BasicConv2d: conv, bn at level 3), then branch2's two entries
    assert rows3[i:i + 7] == [(1, "inception3a", "Inception"), (2, "branch1", "BasicConv2d"),
                              (3, "conv", "conv2d"), (3, "bn", "batchnorm2d"), (2, "branch2", "Sequential"),
                              (3, "0", "BasicConv2d"), (3, "1", "BasicConv2d")]
    # the aux heads are marked as training-only
    assert "aux1 (InceptionAux) [aux, training only]" in deep.stdout
    # totals and the MAC convention in words
    for line in ("Params (training, all parts): 13,004,888  = main 6,624,904 + aux1 3,188,968 + aux2 3,191,016",
                 "Params (eval, main network):  6,624,904",
                 "MACs (eval, batch 1):         1,498,376,192  (1.50 G)",
                 "FLOPs (2 x MACs):             2,996,752,384  (3.00 G)",
                 "Depth (weight layers on the longest path): 22"):
        assert line in shallow.stdout.splitlines()
    assert "multiply-adds of conv and linear layers at batch 1 in eval mode, bias not counted" in shallow.stdout


def test_depth_0_lists_every_module_as_draw_depth_0_draws_every_op(cli_here, compiled):
    every = _rows(cli_here("check", "specs/googlenet.yaml", "--depth", "0").stdout)
    modules = [p for p in compiled("specs/googlenet.yaml").analysis.modules if p]
    assert len(every) == len(modules) == 237  # one row a registered module, down to the op modules
    assert max(level for level, _, _ in every) == max(p.count(".") + 1 for p in modules) == 4
    assert every == _rows(cli_here("check", "specs/googlenet.yaml", "--depth", "4").stdout)


def test_the_spec_is_shown_as_given(cli_here):
    """A stock spec by name: the JSON's spec and the table's title say what was typed, not the
    installed file's absolute path."""
    j = json.loads(cli_here("check", "googlenet", "--format", "json").stdout)
    assert j["spec"] == "googlenet"
    assert cli_here("check", "inception_v3.yaml", "--depth", "1").stdout.splitlines()[1] == "inception_v3  (inception_v3.yaml)"
    assert json.loads(cli_here("check", "specs/alexnet.yaml", "--format", "json").stdout)["spec"] == "specs/alexnet.yaml"


def test_a_name_that_is_no_file_gets_the_stock_names(cli_here, tmp_path, monkeypatch):
    from archspec.pipeline import spec_files
    from archspec.resources import stock_dir

    monkeypatch.chdir(tmp_path)  # outside any project
    stock = ", ".join(sorted(os.path.splitext(os.path.basename(p))[0] for p in spec_files(stock_dir())))
    proc = cli_here("check", "inceptionv3")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == ("inceptionv3: error: no such file: inceptionv3, nor a stock spec; did you mean "
                                   f"inception_v3? (stock specs: {stock})")
    assert "inception_v3, inception_v4, mobilenet_v2, resnet152" in stock
    far = cli_here("check", "yolo")  # nothing close: the list alone
    assert far.stderr.strip() == f"yolo: error: no such file: yolo, nor a stock spec (stock specs: {stock})"


# --- reuse from any folder: stock specs and libraries (issue 11 item 4) ----------------------------

def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_a_variant_extends_a_stock_spec_by_name_from_any_folder(cli_here, tmp_path, monkeypatch):
    from archspec.pipeline import compile_spec
    from archspec.resources import stock_file

    monkeypatch.chdir(tmp_path)  # outside the repository
    _write(tmp_path, "my_v3.yaml", "archspec: 1\nextends: inception_v3\nname: my_v3\nnum_classes: 10\n")
    mine = compile_spec("my_v3.yaml").analysis.totals
    stock = compile_spec(stock_file("inception_v3"), num_classes=10).analysis.totals
    assert (mine.params, mine.macs) == (stock.params, stock.macs) == (24_371_444, 5_711_188_576)
    proc = cli_here("check", "my_v3.yaml")
    assert proc.returncode == 0 and "24,371,444" in proc.stdout


def test_a_spec_uses_a_stock_library_by_its_prefix(cli_here, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "mine.yaml", """archspec: 1
name: mine
input: [3, 16, 16]
num_classes: 10
use: [stock:lib/basic.yaml, stock:lib/resnet]
layers:
  - conv1: BasicConv2d(8, kernel_size=3)
  - block: Bottleneck(2)
  - avgpool: adaptive_avgpool2d(1)
  - flatten
  - fc: linear(num_classes)
""")
    proc = cli_here("check", "mine.yaml", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    # conv 3->8 3x3 no bias (216) + bn 16; Bottleneck(2): 8->2 1x1 (16) + bn 4, 2->2 3x3 (36) + bn 4,
    # 2->8 1x1 (16) + bn 16, the identity shortcut; fc 8*10 + 10
    assert json.loads(proc.stdout)["totals"]["params"] == 216 + 16 + 16 + 4 + 36 + 4 + 16 + 16 + 90


@pytest.mark.parametrize("ref, message", [
    ("stock:lib/basics.yaml", "'stock:lib/basics.yaml' is not a stock spec or library; did you mean stock:lib/basic.yaml?"),
    ("stock:../../etc/passwd", "'stock:../../etc/passwd' is not a stock spec or library"),
    ("stock:", "'stock:' is not a stock spec or library"),
])
def test_a_stock_reference_that_names_no_stock_file(tmp_path, ref, message):
    from archspec.errors import ArchspecError
    from archspec.pipeline import compile_spec

    spec = _write(tmp_path, "s.yaml", f"archspec: 1\nname: s\ninput: [3, 8, 8]\nuse: [{ref!r}]\nlayers: [relu]\n")
    with pytest.raises(ArchspecError) as info:
        compile_spec(str(spec))
    assert info.value.message.startswith(message + " (stock specs: alexnet, efficientnet_b0, googlenet")
    assert "libraries: lib/basic.yaml, lib/inception_v4.yaml, lib/paper.yaml, lib/resnet.yaml" in info.value.message
    assert (info.value.loc.line, info.value.loc.col) == (4, 7)


def test_a_bare_parent_name_that_is_no_stock_spec(tmp_path):
    from archspec.errors import ArchspecError
    from archspec.pipeline import compile_spec

    spec = _write(tmp_path, "v.yaml", "archspec: 1\nextends: inceptionv3\nname: v\n")
    with pytest.raises(ArchspecError) as info:
        compile_spec(str(spec))
    assert info.value.message.startswith("no such file: inceptionv3, nor a stock spec; did you mean inception_v3?")
    assert (info.value.loc.line, info.value.loc.col) == (2, 10)


def test_the_python_api_takes_what_the_command_line_takes(tmp_path, monkeypatch):
    import archspec
    from archspec.generate import generate
    from archspec.pipeline import compile_spec
    from archspec.resources import stock_file

    monkeypatch.chdir(tmp_path)
    assert archspec.check("googlenet").analysis.totals.params == 13_004_888
    assert archspec.check("specs/resnet18.yaml").analysis.totals.params == 11_689_512
    assert archspec.build("alexnet") == generate(compile_spec(stock_file("alexnet")))
    assert archspec.load("vgg16.yaml").name == "vgg16"
    assert archspec.diff("googlenet_paper", "googlenet").totals()["params"]["delta"] == -373_392
    with pytest.raises(archspec.ArchspecError, match="no such file: inceptionv3, nor a stock spec; did you mean"):
        archspec.load("inceptionv3")


def test_a_library_file_is_named_as_such(cli_here):
    proc = cli_here("check", "specs/lib/basic.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "specs/lib/basic.yaml:2:1: error: this is a library file (blocks only, no name, input or layers): a spec "
        "reads it with use:, so check a spec that uses it")
    assert "missing required field" not in proc.stderr


def test_overrides_say_that_expect_was_skipped_and_own_their_errors(cli_here):
    text = cli_here("check", "specs/alexnet.yaml", "--num-classes", "10", "--depth", "1").stdout
    assert "Note: expect: not checked: its totals are for the spec as written, not with --num-classes 10." in text
    assert "expect: not checked" not in cli_here("check", "specs/alexnet.yaml", "--depth", "1").stdout
    flags = ("--input", "3x16x16", "--num-classes", "10")
    j = json.loads(cli_here("check", "specs/googlenet.yaml", *flags[2:], "--format", "json").stdout)
    assert j["expect_checked"] is False
    assert json.loads(cli_here("check", "specs/googlenet.yaml", "--format", "json").stdout)["expect_checked"] is True
    assert json.loads(cli_here("check", f"{OK}/shapes.yaml", "--format", "json").stdout)["expect_checked"] is None
    # AlexNet's pools need more than 16 pixels: the error says the override caused it
    bad = cli_here("check", "specs/alexnet.yaml", *flags)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0] == (
        "specs/alexnet.yaml:28:9: error: features.5: maxpool2d kernel 3x3 is larger than the padded input 1x1 "
        "(with --input 3x16x16 --num-classes 10; the spec as written compiles)")
    # an error of the spec itself is not blamed on the override
    broken = cli_here("check", f"{BROKEN}/unknown_op.yaml", *flags)
    assert "unknown op or block 'swish'" in broken.stderr and "the spec as written compiles" not in broken.stderr


def test_draw_depth_auto_is_described_one_way(cli_here):
    from archspec.draw import AUTO_BOXES, AUTO_ROWS

    words = f"the shallowest depth that shows the most detail within {AUTO_BOXES} boxes and {AUTO_ROWS} rows"
    assert words in " ".join(cli_here("draw", "--help").stdout.split())
    assert words in " ".join((ROOT / "docs" / "draw.md").read_text().split())


def test_num_classes_override(check_json):
    j = check_json("specs/googlenet.yaml", "--num-classes", "10")
    t = j["totals"]
    assert j["output"] == [1, 10]
    # fc: 1024*1000 + 1000 = 1,025,000 becomes 1024*10 + 10 = 10,250; so does each aux fc2.
    saved = 1_025_000 - 10_250
    assert t["params_eval"] == 6_624_904 - saved == 5_610_154
    assert t["params"] == 13_004_888 - 3 * saved == 9_960_638
    assert t["params_by_part"]["aux1"] == 3_188_968 - saved
    # fc MACs: 1024*1000 -> 1024*10
    assert t["macs"] == 1_498_376_192 - 1_024_000 + 10_240


def test_input_override(check_json):
    j = check_json("specs/googlenet.yaml", "--input", "3x320x320")
    assert j["input"] == [1, 3, 320, 320]
    assert j["output"] == [1, 1000]  # adaptive pooling before the classifier
    shapes = {m["path"]: m["output_shape"] for m in j["modules"]}
    # 320 -> conv1 s2: 160 -> maxpool1 ceil((160-3)/2)+1 = 80 -> maxpool2 40 -> maxpool3 20 -> maxpool4 (2/2) 10
    assert shapes["conv1"] == [1, 64, 160, 160]
    assert shapes["maxpool1"] == [1, 64, 80, 80]
    assert shapes["maxpool2"] == [1, 192, 40, 40]
    assert shapes["maxpool3"] == [1, 480, 20, 20]
    assert shapes["inception5b"] == [1, 1024, 10, 10]
    t = j["totals"]
    assert t["params"] == 13_004_888  # no parameter depends on the spatial size
    # Every feature map grows from 112/56/28/14/7 to 160/80/40/20/10, i.e. by 10/7 per side, so conv
    # MACs grow by exactly 100/49: (1,498,376,192 - 1,024,000 fc) * 100 / 49 = 3,055,820,800.
    assert (1_498_376_192 - 1_024_000) * 100 % 49 == 0
    assert t["macs"] == (1_498_376_192 - 1_024_000) * 100 // 49 + 1_024_000 == 3_056_844_800


def test_overrides_on_a_small_spec_skip_expect(check_json):
    """small_cnn's expect: holds for 3x16x16 and 10 classes; with overrides it is not checked."""
    j = check_json(f"{OK}/small_cnn.yaml", "--input", "3x32x32", "--num-classes", "5")
    shapes = {m["path"]: m["output_shape"] for m in j["modules"]}
    assert shapes["pool1"] == [1, 8, 16, 16]
    # conv1: 8*3*9 + 8 = 224; conv2: 8*8*9 + 8 = 584; extra: 8*8 + 8 = 72; fc: 8*5 + 5 = 45
    assert j["totals"]["params"] == 224 + 584 + 72 + 45 == 925
    # conv1 8*32*32*27 + conv2 8*16*16*72 + extra 8*16*16*8 + fc 8*5
    assert j["totals"]["macs"] == 221_184 + 147_456 + 16_384 + 40 == 385_064
    assert j["output"] == [1, 5]


def test_several_specs_give_a_json_list(check_json):
    j = check_json("specs/googlenet.yaml", f"{OK}/shapes.yaml")
    assert isinstance(j, list) and [x["name"] for x in j] == ["googlenet", "shapes"]
    one = check_json(f"{OK}/shapes.yaml")
    assert isinstance(one, dict) and one == j[1]


def test_one_failing_spec_among_several(cli_here):
    proc = cli_here("check", f"{OK}/shapes.yaml", f"{BROKEN}/unknown_op.yaml", "--format", "json")
    assert proc.returncode == 1
    assert [x["name"] for x in json.loads(proc.stdout)] == ["shapes"]
    error = json.loads(proc.stderr.splitlines()[0])["error"]
    assert error == {"stage": "expand", "message": error["message"], "file": f"{BROKEN}/unknown_op.yaml",
                     "line": 7, "column": 5, "yaml_path": "layers[1]", "node": None}
    assert error["message"].startswith("unknown op or block 'swish'")


def test_no_argument_checks_every_spec(cli_here):
    from archspec.pipeline import spec_files

    proc = cli_here("check", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    wanted = spec_files(str(ROOT / "specs"))
    assert "specs/googlenet.yaml" in [x["spec"] for x in found]
    assert [x["spec"] for x in found] == [str(Path(p).relative_to(ROOT)) for p in wanted]
    assert not [x for x in found if x["spec"].startswith("specs/lib/")]


def test_json_object_keys(googlenet_json):
    j = googlenet_json
    assert {"name", "spec", "input", "output", "num_classes", "totals", "aux", "rewrites", "conventions",
            "modules", "layers"} <= set(j)
    assert set(j["totals"]) == {"params", "params_eval", "params_by_part", "buffers", "buffers_eval", "macs",
                                "macs_by_part", "flops", "depth"}
    layer = j["layers"][0]
    assert layer == {"path": "conv1.conv", "op": "conv2d", "output_shape": [1, 64, 112, 112], "params": 9408,
                     "buffers": 0, "macs": 118_013_952, "part": "main", "receptive_field": [7, 7]}
    # conv1.conv: 64*3*7*7 = 9,408 weights; MACs 64*112*112 * 3*7*7 = 118,013,952
    assert sum(x["params"] for x in j["layers"]) == j["totals"]["params"]
    assert sum(x["macs"] for x in j["layers"] if x["part"] == "main") == j["totals"]["macs"]


# --- small specs, totals by hand ---------------------------------------------------------------

def _shapes(c) -> dict:
    return {p: m["output_shape"] for p, m in c.analysis.modules.items() if p}


def _keys(c) -> list:
    from archspec.analyse import state_dict_shapes

    return state_dict_shapes(c.graph)


def test_every_ok_spec_checks(cli_here):
    """Each ok spec carries an expect: (or none); check verifies them all in one call."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / OK).glob("*.yaml"))
    proc = cli_here("check", *files, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == len(files) >= 9


def test_residual_add_with_identity(compiled):
    c = compiled(f"{OK}/residual.yaml")
    t = c.analysis.totals
    # stem: conv1 16*3*9 = 432, bn1 2*16 = 32
    # BasicBlock(16): conv1 16*16*9 = 2304, bn1 32, conv2 2304, bn2 32 -> 4672; layer1 has two: 9344
    # DownBlock(32) on 16 channels: conv1 32*16*9 = 4608, bn1 64, conv2 32*32*9 = 9216, bn2 64,
    #   downsample.0 32*16 = 512, downsample.1 64 -> 14528
    # BasicBlock(32): 9216 + 64 + 9216 + 64 = 18560; fc 32*10 + 10 = 330
    assert t.params == 432 + 32 + 9344 + 14528 + 18560 + 330 == 43_226
    # MACs: stem 16*32*32*27 = 442,368; BasicBlock(16) 2 * 16*32*32*16*9 = 4,718,592 (two of them)
    # DownBlock: conv1 32*16*16*16*9 = 1,179,648, conv2 32*16*16*32*9 = 2,359,296, downsample 32*16*16*16 = 131,072
    # BasicBlock(32): 2 * 2,359,296; fc 320
    assert t.macs == 442_368 + 2 * 4_718_592 + 1_179_648 + 2_359_296 + 131_072 + 2 * 2_359_296 + 320 == 18_268_480
    assert t.depth == 1 + 4 + 2 + 2 + 1  # stem, 2 blocks x 2 convs, down block's longer branch, block, fc
    shapes = _shapes(c)
    assert shapes["layer1.0"] == shapes["layer1.1"] == (16, 32, 32)
    assert shapes["layer2.0"] == shapes["layer2.0.downsample"] == (32, 16, 16)
    keys = [k for k, _ in _keys(c)]
    assert keys[:8] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked", "layer1.0.conv1.weight", "layer1.0.bn1.weight"]
    assert ("layer2.0.downsample.0.weight", (32, 16, 1, 1)) in _keys(c)
    assert ("layer2.0.downsample.1.running_var", (32,)) in _keys(c)
    assert "layer1.0.downsample.0.weight" not in keys
    # registration order inside the block: conv1 bn1 conv2 bn2 downsample
    block = [k for k in keys if k.startswith("layer2.0.") and k.endswith("weight")]
    assert block == ["layer2.0.conv1.weight", "layer2.0.bn1.weight", "layer2.0.conv2.weight", "layer2.0.bn2.weight",
                     "layer2.0.downsample.0.weight", "layer2.0.downsample.1.weight"]


def test_branch_that_splits_again(compiled):
    c = compiled(f"{OK}/split_again.yaml")
    t = c.analysis.totals
    # ConvBN = conv (no bias) + bn (2 * out); input 8 channels, 8x8
    # branch1x1 16*8 + 32 = 160; branch3x3_1 24*8 + 48 = 240; 2a 24*24*1*3 + 48 = 1776; 2b the same;
    # branch_pool 8*8 + 16 = 80; fc on 16 + 24 + 24 + 8 = 72 channels: 72*10 + 10 = 730
    assert t.params == 160 + 240 + 1776 + 1776 + 80 + 730 == 4_762
    # MACs at 8x8 = 64 positions: 16*64*8 + 24*64*8 + 2 * 24*64*24*3 + 8*64*8 + fc 72*10
    assert t.macs == 8_192 + 12_288 + 2 * 110_592 + 4_096 + 720 == 246_480
    assert t.depth == 3  # branch3x3_1 -> 2a (or 2b) -> fc
    shapes = _shapes(c)
    assert shapes["Mixed_7b"] == (16 + 2 * 24 + 8, 8, 8)
    assert shapes["Mixed_7b.branch3x3_2a"] == shapes["Mixed_7b.branch3x3_2b"] == (24, 8, 8)
    concats = [n for n in c.graph if n.op == "concat"]
    assert [n.meta["shape"] for n in concats] == [(48, 8, 8), (72, 8, 8)]  # inner first
    sd = dict(_keys(c))
    assert sd["Mixed_7b.branch3x3_2a.conv.weight"] == (24, 24, 1, 3)
    assert sd["Mixed_7b.branch3x3_2b.conv.weight"] == (24, 24, 3, 1)
    assert "Mixed_7b.branch_pool.bn.num_batches_tracked" in sd


def test_indexed_sequential_branches(compiled):
    c = compiled(f"{OK}/branches.yaml")
    # input 16 channels, 8x8. branch1 ConvBN(8): 8*16 + 16 = 144; branch2: ConvBN(4) 4*16 + 8 = 72 then
    # ConvBN(8, k=3) 8*4*9 + 16 = 304; branch3: pool, ConvBN(4) 4*16 + 8 = 72; fc (8+8+4)*10 + 10 = 210
    assert c.analysis.totals.params == 144 + 72 + 304 + 72 + 210 == 802
    # MACs: 8*64*16 + 4*64*16 + 8*64*4*9 + 4*64*16 + 20*10
    assert c.analysis.totals.macs == 8_192 + 4_096 + 18_432 + 4_096 + 200 == 35_016
    keys = [k for k, _ in _keys(c)]
    assert keys[:3] == ["inception3a.branch1.conv.weight", "inception3a.branch1.bn.weight", "inception3a.branch1.bn.bias"]
    assert "inception3a.branch2.0.conv.weight" in keys and "inception3a.branch2.1.bn.running_mean" in keys
    assert "inception3a.branch3.1.conv.weight" in keys  # branch3.0 is the max-pool: no state
    assert not [k for k in keys if k.startswith("inception3a.branch3.0")]


def test_sequential_stack_with_repeat(compiled):
    c = compiled(f"{OK}/features.yaml")
    # features: conv 8*3*9 + 8 = 224, then extra_convs = 2 repeats of conv 8*8*9 + 8 = 584 (+ relu);
    # classifier: linear 128 -> 32: 128*32 + 32 = 4128; linear 32 -> 10: 330
    assert c.analysis.totals.params == 224 + 2 * 584 + 4128 + 330 == 5_850
    # MACs: 8*64*27 + 2 * 8*64*72 + 128*32 + 32*10
    assert c.analysis.totals.macs == 13_824 + 2 * 36_864 + 4_096 + 320 == 91_968
    assert c.analysis.totals.depth == 5
    keys = [k for k, _ in _keys(c)]
    assert keys == ["features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
                    "features.4.weight", "features.4.bias", "classifier.1.weight", "classifier.1.bias",
                    "classifier.3.weight", "classifier.3.bias"]
    types = {p: m["type"] for p, m in c.analysis.modules.items()}
    assert [types[f"features.{i}"] for i in range(7)] == ["conv2d", "relu"] * 3 + ["maxpool2d"]
    assert _shapes(c)["features.6"] == (8, 4, 4) and _shapes(c)["classifier.0"] == (128,)


def test_if_false_is_identity(compiled):
    c = compiled(f"{OK}/conditional.yaml")
    keys = [k for k, _ in _keys(c)]
    # a: ConvAct(8) keeps its bn; b: ConvAct(8, bn=with_bn) with with_bn = false has none
    assert "a.bn.weight" in keys and not [k for k in keys if k.startswith("b.bn")]
    assert "b.bn" not in c.analysis.modules
    # a.conv 8*27 + 8 = 224, a.bn 16, b.conv 8*8*9 + 8 = 584, fc 8*8*8*10 + 10 = 5130
    assert c.analysis.totals.params == 224 + 16 + 584 + 5130 == 5_954
    assert c.analysis.totals.buffers == 8 + 8 + 1


def test_extends_variant_with_edits(compiled):
    parent = compiled(f"{OK}/small_cnn.yaml")
    child = compiled(f"{OK}/small_cnn_wide.yaml")
    # parent (width 8): conv1 224 + conv2 584 + extra 72 + fc 90
    assert parent.analysis.totals.params == 224 + 584 + 72 + 90 == 970
    # child: width 16; conv2 replaced by a 5x5; drop1 inserted after pool1; extra removed
    # conv1 16*27 + 16 = 448; conv2 16*16*25 + 16 = 6416; fc 16*10 + 10 = 170
    assert child.analysis.totals.params == 448 + 6416 + 170 == 7_034
    # conv1 16*16*16*27 + conv2 16*8*8*16*25 + fc 160
    assert child.analysis.totals.macs == 110_592 + 409_600 + 160 == 520_352
    top = [p for p in child.analysis.modules if p and "." not in p]
    assert top == ["conv1", "pool1", "drop1", "conv2", "avgpool", "fc"]
    assert child.name == "small_cnn_wide"
    assert child.expanded.model_args["width"] == 16


def test_ceil_mode_dilation_groups(compiled):
    c = compiled(f"{OK}/shapes.yaml")
    shapes = _shapes(c)
    # 14 -> maxpool 3/2 ceil: ceil((14-3)/2) + 1 = 7 (floor mode would give 6)
    assert shapes["pool1"] == (4, 7, 7)
    # dilation 2 makes the 3x3 kernel span 5: 7 - 5 + 1 = 3
    assert shapes["dilated"] == (8, 3, 3)
    assert shapes["grouped"] == (16, 3, 3)
    # 3 -> maxpool 2/2 pad 1 ceil: ceil((3+2-2)/2) + 1 = 3, but the third window would start at 4,
    # beyond input + left padding (3 + 1), so PyTorch drops it: 2
    assert shapes["pool2"] == (16, 2, 2)
    sd = dict(_keys(c))
    assert sd["dilated.weight"] == (8, 4, 3, 3)
    assert sd["grouped.weight"] == (16, 8 // 4, 3, 3)  # groups=4: each filter sees 2 channels
    # params: 8*4*9 + 8 = 296; 16*2*9 + 16 = 304; fc 16*2*2*10 + 10 = 650
    assert c.analysis.totals.params == 296 + 304 + 650 == 1_250
    # MACs: 8*3*3 * 4*9 = 2592; 16*3*3 * 2*9 = 2592; fc 64*10 = 640
    assert c.analysis.totals.macs == 2_592 + 2_592 + 640 == 5_824


def test_aux_heads(compiled):
    c = compiled(f"{OK}/aux_heads.yaml")
    t = c.analysis.totals
    # main: conv1 16*3*9 + 16 = 448 (16x16), conv2 32*16*9 + 32 = 4640 (8x8), fc 32*10 + 10 = 330
    # aux1 = Head: pool to 16x2x2 = 64, fc1 64*64 + 64 = 4160, fc2 64*10 + 10 = 650
    # aux2: pool to 32, linear 32*10 + 10 = 330
    assert t.params_by_part == {"main": 448 + 4640 + 330, "aux1": 4160 + 650, "aux2": 330}
    assert t.params == 5_418 + 4_810 + 330 == 10_558
    # eval MACs are the main network's: 16*16*16*27 + 32*8*8*144 + 320; aux heads apart
    assert t.macs == 110_592 + 294_912 + 320 == 405_824
    assert t.macs_by_part == {"main": 405_824, "aux1": 64 * 64 + 64 * 10, "aux2": 320}
    # registration: aux1 after conv1 (its from:), aux2 after fc
    top = [p for p in c.analysis.modules if p and "." not in p]
    assert top == ["conv1", "aux1", "conv2", "avgpool", "fc", "aux2"]
    keys = [k for k, _ in _keys(c)]
    assert keys == ["conv1.weight", "conv1.bias", "aux1.fc1.weight", "aux1.fc1.bias", "aux1.fc2.weight",
                    "aux1.fc2.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias", "aux2.2.weight",
                    "aux2.2.bias"]
    assert c.graph.loss_weights == {"aux1": 0.3, "aux2": 0.1}
    assert c.analysis.output == (10,)


def test_library_use(compiled):
    c = compiled(f"{OK}/split_again.yaml")
    assert "ConvBN" in c.resolved.blocks and c.resolved.blocks["ConvBN"].loc.file.endswith("lib/convbn.yaml")
    assert {p: m["type"] for p, m in c.analysis.modules.items()}["Mixed_7b.branch1x1"] == "ConvBN"


# --- the docs' examples are these files ---------------------------------------------------------

def test_docs_examples_are_the_fixture_files(cli_here):
    """docs/spec.md shows each example after `<!-- example: PATH -->`; the block must equal the file."""
    doc = (ROOT / "docs" / "spec.md").read_text()
    found = re.findall(r"<!-- example: (\S+) -->\s*```yaml\n(.*?)```", doc, flags=re.S)
    assert len(found) >= 6
    for path, text in found:
        assert text == (ROOT / path).read_text(), f"docs/spec.md example differs from {path}"
    proc = cli_here("check", *sorted({p for p, _ in found if "/lib/" not in p}), "--format", "json")
    assert proc.returncode == 0, proc.stderr


def _doc_table_rows(heading: str) -> list:
    """The rows of the first table after a '## heading' in docs/spec.md, as lists of cells."""
    doc = (ROOT / "docs" / "spec.md").read_text()
    section = doc.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]  # skip header, rule


def test_docs_op_catalog_matches_ops():
    from archspec.ops import OPS, REQUIRED, USER_OPS

    def shown(v):
        return "true" if v is True else "false" if v is False else "none" if v is None else repr(v)

    rows = {re.fullmatch(r"`(\w+)`", r[0]).group(1): r for r in _doc_table_rows("The op catalog")}
    assert list(rows) == list(USER_OPS)
    for name, row in rows.items():
        op = OPS[name]
        want = [f"{a.name}: {a.type}" + ("" if a.default is REQUIRED else f" = {shown(a.default)}") for a in op.attrs]
        assert re.findall(r"`([^`]+)`", row[1]) == want, name
        forms = [f for f, has in (("module", op.module), ("function", op.function)) if has]
        assert row[2] == ", ".join(forms), name
        assert row[3] == (f"`{op.inferred}`" if op.inferred else ""), name


def test_docs_limits_match_constants():
    from archspec import expand, exprs, load

    modules = {"load.py": load, "exprs.py": exprs, "expand.py": expand}
    rows = _doc_table_rows("Limits")
    assert len(rows) == 11
    for name, value, where, _ in rows:
        module = modules[where.strip("`")]
        assert getattr(module, name.strip("`")) == int(value.replace(",", "")), name


def test_docs_cli_table_is_current_output(cli_here):
    """docs/cli.md shows real output after `<!-- output: archspec check ARGS -->`."""
    doc = (ROOT / "docs" / "cli.md").read_text()
    found = re.findall(r"<!-- output: archspec check (.+?) -->\s*```\n(.*?)```", doc, flags=re.S)
    assert found
    for args, text in found:
        proc = cli_here("check", *args.split())
        assert proc.returncode == 0 and proc.stdout == text, f"docs/cli.md: output of check {args} changed"


def test_docs_cli_lists_every_json_key(googlenet_json):
    doc = (ROOT / "docs" / "cli.md").read_text()
    json_section = doc.split("## JSON\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", json_section, flags=re.M))
    assert set(googlenet_json) | set(googlenet_json["totals"]) == documented
    for key in (*googlenet_json["layers"][0], *googlenet_json["modules"][0], *googlenet_json["aux"]["aux1"]):
        assert f'"{key}"' in json_section, key


# --- one exit-status table for every command ----------------------------------------------------

def _status_table(path) -> str:
    text = path.read_text()
    start = text.index("| status | meaning |")
    return text[start:text.index("\n\n", start)]


def test_one_exit_status_table_in_the_readme_and_the_cli_docs():
    from archspec import errors

    table = _status_table(ROOT / "README.md")
    assert table == _status_table(ROOT / "docs" / "cli.md")
    rows = [int(line.split("|")[1]) for line in table.splitlines()[2:]]
    assert rows == [errors.EXIT_OK, errors.EXIT_SPEC, errors.EXIT_USAGE, errors.EXIT_INTERNAL, errors.EXIT_INTERRUPTED]
    assert (errors.EXIT_DIFFERENT, errors.EXIT_TROUBLE) == (1, 2)  # the table's diff rows


@pytest.mark.parametrize("args,status", [
    (["check", "specs/alexnet.yaml"], 0),
    (["check", f"{BROKEN}/unknown_op.yaml"], 1),
    (["check", "specs/alexnet.yaml", "--bogus"], 2),
    (["build", "--check", "specs/alexnet.yaml", "-o", "{tmp}"], 1),  # missing
    (["build", "--check", "specs/alexnet.yaml"], 0),
    (["diff", "specs/alexnet.yaml", "alexnet"], 0),
    (["diff", "specs/alexnet.yaml", "specs/vgg16.yaml"], 1),
    (["diff", "specs/alexnet.yaml", f"{BROKEN}/unknown_op.yaml"], 2),  # trouble, as diff(1)
    (["diff", "specs/alexnet.yaml", "no/such.yaml"], 2),
    (["diff", "specs/alexnet.yaml"], 2),
    (["draw", f"{BROKEN}/unknown_op.yaml", "-o", "{tmp}/x.dot"], 1),
    (["draw", "specs/alexnet.yaml", "-o", "{tmp}/x.png"], 2),
    (["schema"], 0),
    ([], 2),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_every_command_follows_the_table(cli_here, tmp_path, args, status):
    proc = cli_here(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
