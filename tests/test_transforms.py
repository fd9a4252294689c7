"""Factorization rewrites (archspec/transforms/) and the two specs they serve.

* googlenet_paper.yaml: totals from Table 1's channel counts by hand arithmetic; its state_dict
  is torchvision's with exactly the known deviations.
* googlenet_factorized.yaml: the same arithmetic for two 3x3 Conv-BN-ReLU per 5x5.
* Golden pairs: tests/golden/transforms/<case>.in.yaml -> <case>.out.yaml (the rewritten spec
  and what each rewrite changed). Regenerate deliberately with ARCHSPEC_ACCEPT=1; a missing or
  different golden file fails.
* Errors: exact message, line and column.
"""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from archspec.errors import ArchspecError, flatten
from archspec.load import load
from archspec.pipeline import analysed, compile_spec
from archspec.transforms import TransformError, apply_transforms
from archspec.transforms.dump import dump
from archspec.transforms.factorize import RuleError, asymmetric, stack3x3
from archspec.validate import validate
from conftest import ROOT, run_cli

GOLDEN = ROOT / "tests" / "golden" / "transforms"
CASES = sorted(p.name[: -len(".in.yaml")] for p in GOLDEN.glob("*.in.yaml"))

# Table 1 of Szegedy et al. 2014: (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, map size).
INCEPTION = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32, 28),
    "inception3b": (256, 128, 128, 192, 32, 96, 64, 28),
    "inception4a": (480, 192, 96, 208, 16, 48, 64, 14),
    "inception4b": (512, 160, 112, 224, 24, 64, 64, 14),
    "inception4c": (512, 128, 128, 256, 24, 64, 64, 14),
    "inception4d": (512, 112, 144, 288, 32, 64, 64, 14),
    "inception4e": (528, 256, 160, 320, 32, 128, 128, 14),
    "inception5a": (832, 256, 160, 320, 32, 128, 128, 7),
    "inception5b": (832, 384, 192, 384, 48, 128, 128, 7),
}


def conv(cin, cout, k, hw, bias=True):
    """(params, MACs) of a k x k convolution producing a hw x hw map."""
    return cin * cout * k * k + (cout if bias else 0), cin * cout * k * k * hw * hw


def paper_main() -> tuple:
    """GoogLeNet as published, main network: (params, MACs), from Table 1 alone."""
    parts = [conv(3, 64, 7, 112), conv(64, 64, 1, 56), conv(64, 192, 3, 56)]
    for cin, c1, r3, c3, r5, c5, pp, hw in INCEPTION.values():
        parts += [conv(cin, c1, 1, hw), conv(cin, r3, 1, hw), conv(r3, c3, 3, hw),
                  conv(cin, r5, 1, hw), conv(r5, c5, 5, hw), conv(cin, pp, 1, hw)]
    parts.append((1024 * 1000 + 1000, 1024 * 1000))  # the classifier
    return sum(p for p, _ in parts), sum(m for _, m in parts)


def paper_aux(cin: int) -> int:
    return (cin * 128 + 128) + (128 * 4 * 4 * 1024 + 1024) + (1024 * 1000 + 1000)


# --- googlenet_paper ------------------------------------------------------------------------------

def test_paper_totals_by_hand(compiled):
    params, macs = paper_main()
    assert (params, macs) == (6_998_552, 1_582_671_872)
    t = compiled("specs/googlenet_paper.yaml").analysis.totals
    assert t.params_eval == params and t.macs == macs
    assert t.params_by_part == {"main": params, "aux1": paper_aux(512), "aux2": paper_aux(528)}
    assert t.params == 13_378_280 and t.buffers == 0 and t.depth == 22
    # The paper's params column (K = 1024) sums to 6,797.7K = ~6.96M; the exact count differs by
    # its approximate rows (conv1 reads 2.7K for 9,408 weights) and the biases.
    weights_only = params - sum(out for out in _conv_outs()) - 1000
    assert weights_only == 6_990_272 and round(weights_only / 1024) == 6826


def _conv_outs():
    yield from (64, 64, 192)
    for _, c1, r3, c3, r5, c5, pp, _ in INCEPTION.values():
        yield from (c1, r3, c3, r5, c5, pp)


def test_paper_is_torchvision_with_its_known_deviations(compiled):
    from archspec.analyse import state_dict_shapes

    tv = state_dict_shapes(compiled("specs/googlenet.yaml").analysis.graph)
    paper = state_dict_shapes(compiled("specs/googlenet_paper.yaml").analysis.graph)
    expected = []
    for key, shape in tv:
        if ".bn." in key:
            continue  # no BatchNorm in the paper
        if key.endswith("branch3.1.conv.weight"):
            shape = (*shape[:2], 5, 5)  # the real 5x5 (torchvision: 3x3, vision#906)
        expected.append((key, shape))
        if key.endswith("conv.weight"):
            expected.append((key.replace(".weight", ".bias"), shape[:1]))  # convs have biases
    assert paper == expected
    model = compiled("specs/googlenet_paper.yaml").expanded.model
    children = {m.name: m for m in model.children}
    names = [m.name for m in model.children]
    assert names[:7] == ["conv1", "maxpool1", "norm1", "conv2", "conv3", "norm2", "maxpool2"]
    assert children["norm1"].args == children["norm2"].args == {"size": 5, "alpha": 0.0001, "beta": 0.75, "k": 1.0}
    assert children["maxpool4"].args == {"kernel_size": 3, "stride": 2, "padding": 0, "dilation": 1, "ceil_mode": True}
    assert children["dropout"].args == {"p": 0.4}
    aux1 = children["aux1"]
    assert [(s.op, s.attrs) for s in aux1.body if hasattr(s, "op")][0] == (
        "avgpool2d", {"kernel_size": 5, "stride": 3, "padding": 0, "ceil_mode": False, "count_include_pad": True})
    assert {m.name: m.args for m in aux1.children if m.type == "dropout"} == {"dropout": {"p": 0.7}}
    assert compiled("specs/googlenet_paper.yaml").analysis.graph.loss_weights == {"aux1": 0.3, "aux2": 0.3}


# --- googlenet_factorized -------------------------------------------------------------------------

def test_factorized_totals_by_hand(compiled):
    params, macs = paper_main()
    buffers = 0
    for cin, c1, r3, c3, r5, c5, pp, hw in INCEPTION.values():
        p5, m5 = conv(r5, c5, 5, hw)
        pa, ma = conv(r5, c5, 3, hw, bias=False)  # BasicConv2d: no bias, BN weight + bias
        pb, mb = conv(c5, c5, 3, hw, bias=False)
        params += pa + pb + 2 * (2 * c5) - p5
        macs += ma + mb - m5
        buffers += 2 * (2 * c5 + 1)  # running mean, var, num_batches_tracked per BN
    c = compiled("specs/googlenet_factorized.yaml")
    t = c.analysis.totals
    assert (t.params_eval, t.macs, t.buffers) == (params, macs, buffers) == (7_285_736, 1_639_721_984, 3026)
    assert t.params == params + paper_aux(512) + paper_aux(528) == 13_665_464
    assert t.depth == 31  # the 5x5 branch is now the longest path: one more layer in each of 9 blocks


def test_factorized_rewrite_record(compiled):
    (r,) = compiled("specs/googlenet_factorized.yaml").rewrites
    paper = compiled("specs/googlenet_paper.yaml").analysis.totals
    fact = compiled("specs/googlenet_factorized.yaml").analysis.totals
    assert (r.rule, r.kernel, r.weights) == ("stack3x3", 5, (25, 18))
    assert r.site == "blocks.Inception.layers[0].concat[2].branch3[1]"
    assert (Path(r.loc.file).name, r.loc.line, r.loc.col) == ("googlenet_paper.yaml", 36, 17)
    assert r.before == "ConvReLU(ch5x5, kernel_size=5, padding=2)"
    assert r.after == ("BasicConv2d(ch5x5, kernel_size=3, padding=1)", "BasicConv2d(ch5x5, kernel_size=3, padding=1)")
    assert r.paths == tuple(f"{name}.branch3.1" for name in INCEPTION)
    assert r.params == (595_952, 883_136) and r.macs == (131_712_000, 188_762_112)
    assert r.params[1] - r.params[0] == fact.params - paper.params
    assert r.macs[1] - r.macs[0] == fact.macs - paper.macs
    # The generated module is made from the rewritten block definition.
    modules = {m.path: m for m in compiled("specs/googlenet_factorized.yaml").expanded.model.walk()}
    branch3 = modules["inception3b.branch3"]
    assert [(m.name, m.type, m.args["kernel_size"]) for m in branch3.children] == [
        ("0", "ConvReLU", 1), ("1", "BasicConv2d", 3), ("2", "BasicConv2d", 3)]


def test_check_reports_rewrites_in_text_and_json():
    text = run_cli("check", "specs/googlenet_factorized.yaml", "--depth", "1")
    assert text.returncode == 0, text.stderr
    line = [x for x in text.stdout.splitlines() if x.startswith("Rewrite: ")]
    assert line == [
        "Rewrite: stack3x3 5x5 at blocks.Inception.layers[0].concat[2].branch3[1] (specs/googlenet_paper.yaml:36:17): "
        "ConvReLU(ch5x5, kernel_size=5, padding=2) => BasicConv2d(ch5x5, kernel_size=3, padding=1) -> BasicConv2d(ch5x5, kernel_size=3, padding=1); "
        "weights per channel pair 25 -> 18 (-28.0%); in 9 modules: inception3a.branch3.1 ... inception5b.branch3.1: "
        "params 595,952 -> 883,136 (+287,184, +48.2%), MACs (eval) 131,712,000 -> 188,762,112 (+57,050,112, +43.3%)"]
    js = run_cli("check", "specs/googlenet_factorized.yaml", "--format", "json")
    (rec,) = json.loads(js.stdout)["rewrites"]
    assert rec["weights_per_channel_pair"] == {"before": 25, "after": 18}
    assert rec["params"] == {"before": 595952, "after": 883136, "change": 287184}
    assert rec["macs"] == {"before": 131712000, "after": 188762112, "change": 57050112}
    assert (rec["file"], rec["line"], rec["column"], len(rec["modules"])) == ("specs/googlenet_paper.yaml", 36, 17, 9)


def test_transforms_leave_their_input_alone():
    path = str(ROOT / "specs" / "googlenet_factorized.yaml")
    resolved = validate(load(path), path)
    before = dump(resolved)
    after = apply_transforms(analysed(resolved), analysed)
    assert dump(resolved) == before and dump(after.resolved) != before and len(after.rewrites) == 1
    assert after.resolved.blocks["InceptionAux"] is resolved.blocks["InceptionAux"]  # untouched blocks are shared


# --- golden pairs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_golden(case):
    src = GOLDEN / f"{case}.in.yaml"
    c = compile_spec(str(src))
    text = dump(c.resolved, c.rewrites)
    golden = GOLDEN / f"{case}.out.yaml"
    if os.environ.get("ARCHSPEC_ACCEPT") == "1":
        golden.write_text(text)
    assert golden.exists(), f"no golden file {golden.name}: review the output and run with ARCHSPEC_ACCEPT=1"
    assert text == golden.read_text()
    # What the records say changed is what changed: they add up to the difference in totals.
    resolved = validate(load(str(src)), str(src))
    base = analysed(resolved).analysis  # the spec without its transforms
    assert sum(r.params[1] - r.params[0] for r in c.rewrites) == c.analysis.totals.params - base.totals.params
    assert sum(r.macs[1] - r.macs[0] for r in c.rewrites) == c.analysis.totals.macs - base.totals.macs


def test_golden_cases_exist():
    assert CASES == ["asymmetric", "chain", "stack3x3_conv2d", "stack3x3_unit", "unit_swap"]
    assert sorted(p.name for p in GOLDEN.glob("*.out.yaml")) == [f"{c}.out.yaml" for c in CASES]


# --- the rules keep output size, receptive field and alignment for every input ----------------

def _chain(h, layers):
    """Output size, receptive field, jump and the input position of output 0's window start."""
    rf, jump, start = 1, 1, 0
    for k, s, p in layers:
        h = (h + 2 * p - k) // s + 1
        if h < 1:
            return None
        start -= p * jump
        rf += (k - 1) * jump
        jump *= s
    return h, rf, jump, start


def test_rules_preserve_shape_receptive_field_and_alignment():
    for k in (5, 7, 9, 11):
        for p in range(0, (k - 1) // 2 + 1):
            for s in (1, 2, 3):
                pieces = stack3x3(k, p)
                assert len(pieces) == (k - 1) // 2
                layers = [(3, s if pc.strided else 1, pc.padding) for pc in pieces]
                for h in range(1, 40):
                    want = _chain(h, [(k, s, p)])
                    got = _chain(h, layers)
                    if want is not None:
                        assert got == want, (k, p, s, h)
    for n in (2, 3, 5, 7):
        for ph, pw in ((0, 0), (1, 2), (n // 2, n // 2)):
            a, b = asymmetric(n, (ph, pw))
            for s in (1, 2):
                for h in range(n, 30):
                    rows = _chain(h, [(a.kernel[0], 1, a.padding[0]), (b.kernel[0], s, b.padding[0])])
                    cols = _chain(h, [(a.kernel[1], 1, a.padding[1]), (b.kernel[1], s, b.padding[1])])
                    assert rows == _chain(h, [(n, s, ph)]) and cols == _chain(h, [(n, s, pw)])


def test_rule_shares_and_refusals():
    assert [p.padding for p in stack3x3(7, 3)] == [1, 1, 1]
    assert [p.padding for p in stack3x3(7, 1)] == [1, 0, 0]
    assert [p.padding for p in stack3x3(5, 3)] == [2, 1]
    assert [(p.kernel, p.padding) for p in asymmetric(3, (1, 2))] == [((1, 3), (0, 2)), ((3, 1), (1, 0))]
    with pytest.raises(RuleError, match=r"^cannot factorize a 6x6 convolution into 3x3 ones: a stack of 3x3 "
                                        r"convolutions covers only odd sizes \(5, 7, 9, \.\.\.\)$"):
        stack3x3(6, 2)
    with pytest.raises(RuleError, match=r"^stack3x3 needs the same padding on both axes, got \(1, 2\)$"):
        stack3x3(5, (1, 2))


# --- errors ----------------------------------------------------------------------------------------

HEAD = """\
archspec: 1
name: t
input: [3, 16, 16]
num_classes: 10
"""
TAIL = """\
  - pool: adaptive_avgpool2d(1)
  - flatten
  - fc: linear(num_classes)
"""
CONVRELU = """\
  ConvReLU:
    args: {out: int, k: size, s: size = 1, p: size = 0}
    layers:
      - conv: conv2d(out, k, stride=s, padding=p)
      - relu
"""


def error_of(tmp_path, body: str) -> list:
    f = tmp_path / "t.yaml"
    f.write_text(HEAD + textwrap.dedent(body))
    with pytest.raises(ArchspecError) as info:
        compile_spec(str(f))
    return [(e.stage, e.loc.line, e.loc.col, e.message) for e in flatten(info.value)]


ERRORS = {
    "kernel_not_static": (
        "blocks:\n" + CONVRELU + "  Stem:\n    args: {kk: int}\n    layers:\n      - c: ConvReLU(8, k=kk, p=2)\n"
        "layers:\n  - stem: Stem(5)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n",
        [("transform", 14, 12, "factorize stack3x3 (transforms[0]): cannot read the kernel of 'ConvReLU(8, k=kk, p=2)': "
                               "k is 'kk', not a literal size (write the kernel as a number where the conv is called)")]),
    "even_kernel": (
        "layers:\n  - c: conv2d(8, 4, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n",
        [("transform", 6, 8, "factorize stack3x3 (transforms[0]): cannot factorize a 4x4 convolution into 3x3 ones: "
                             "a stack of 3x3 convolutions covers only odd sizes (5, 7, 9, ...)")]),
    "kernel_3": (
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    kernel: 3\n",
        [("transform", 12, 13, "factorize stack3x3 (transforms[0]): stack3x3 needs a kernel of 5 or more "
                               "(3x3 convolutions are what it makes), got 3")]),
    "kernel_even": (
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    kernel: 6\n",
        [("transform", 12, 13, "factorize stack3x3 (transforms[0]): stack3x3 needs an odd kernel (5, 7, 9, ...), got 6")]),
    "asym_kernel_1": (
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: asymmetric\n    kernel: 1\n",
        [("transform", 12, 13, "factorize asymmetric (transforms[0]): asymmetric needs a kernel of 2 or more, got 1")]),
    "nothing_to_rewrite": (
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    kernel: 7\n",
        [("transform", 11, 5, "factorize stack3x3 (transforms[0]): no convolution with a 7x7 kernel to rewrite")]),
    "padding_not_static": (
        "blocks:\n  Stem:\n    args: {pp: int}\n    layers:\n      - c: conv2d(8, 5, padding=pp)\n"
        "layers:\n  - stem: Stem(2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n",
        [("transform", 9, 12, "factorize stack3x3 (transforms[0]): cannot factorize 'conv2d(8, 5, padding=pp)': "
                              "padding is 'pp', not a literal (the rewrite must split it over the new convolutions)")]),
    "grouped": (
        "layers:\n  - a: conv2d(8, 1)\n  - c: conv2d(8, 5, padding=2, groups=2)\n  - d: conv2d(8, 5, padding=2, dilation=2)\n" + TAIL
        + "transforms:\n  - factorize: stack3x3\n",
        [("transform", 7, 8, "factorize stack3x3 (transforms[0]): cannot factorize 'conv2d(8, 5, padding=2, groups=2)': "
                             "its groups is '2', not 1"),
         ("transform", 8, 8, "factorize stack3x3 (transforms[0]): cannot factorize 'conv2d(8, 5, padding=2, dilation=2)': "
                             "its dilation is '2', not 1")]),
    "uneven_padding": (
        "layers:\n  - c: conv2d(8, 5, padding=(2, 1))\n" + TAIL + "transforms:\n  - factorize: stack3x3\n",
        [("transform", 6, 8, "factorize stack3x3 (transforms[0]): stack3x3 needs the same padding on both axes, got (2, 1)")]),
    "unit_unknown": (
        "blocks:\n" + CONVRELU + "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL
        + "transforms:\n  - factorize: stack3x3\n    unit: BasicConv2d\n",
        [("transform", 18, 11, "factorize stack3x3 (transforms[0]): unit 'BasicConv2d' is not a block "
                               "(conv units here: ConvReLU)")]),
    "unit_not_a_unit": (
        "blocks:\n  Two:\n    args: {out: int, k: size}\n    layers:\n      - a: conv2d(out, k)\n      - b: conv2d(out, k)\n"
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    unit: Two\n",
        [("transform", 18, 11, "factorize stack3x3 (transforms[0]): unit 'Two' is not a conv unit: it has 2 conv2d calls, not one")]),
    "unit_required_arg": (
        "blocks:\n  G:\n    args: {out: int, k: size, s: size = 1, p: size = 0, eps: float}\n    layers:\n"
        "      - conv: conv2d(out, k, stride=s, padding=p)\n      - bn: batchnorm2d(eps=eps)\n"
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    unit: G\n",
        [("transform", 18, 11, "factorize stack3x3 (transforms[0]): unit 'G' has a required argument 'eps' "
                               "the rewrite cannot fill")]),
    "unit_changes_shape": (
        "blocks:\n  ConvPool:\n    args: {out: int, k: size, s: size = 1, p: size = 0}\n    layers:\n"
        "      - conv: conv2d(out, k, stride=s, padding=p)\n      - maxpool2d(2)\n"
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    unit: ConvPool\n",
        [("transform", 12, 8, "factorize stack3x3 (transforms[0]): rewriting 'conv2d(8, 5, padding=2)' is refused: "
                              "the output of c changes from 8 x 16 x 16 to 8 x 4 x 4")]),
    "unit_changes_receptive_field": (
        "blocks:\n  ConvBlur:\n    args: {out: int, k: size, s: size = 1, p: size = 0}\n    layers:\n"
        "      - conv: conv2d(out, k, stride=s, padding=p)\n      - avgpool2d(3, stride=1, padding=1)\n"
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    unit: ConvBlur\n",
        [("transform", 12, 8, "factorize stack3x3 (transforms[0]): rewriting 'conv2d(8, 5, padding=2)' is refused: "
                              "the receptive field of c changes from 5x5 to 9x9")]),
    "rewritten_network_fails": (
        "blocks:\n  ConvPool:\n    args: {out: int, k: size, s: size = 1, p: size = 0}\n    layers:\n"
        "      - conv: conv2d(out, k, stride=s, padding=p)\n      - maxpool2d(5)\n"
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    unit: ConvPool\n",
        [("transform", 10, 9, "factorize stack3x3 (transforms[0]): the rewritten network fails: "
                              "c.1 (maxpool2d): maxpool2d kernel 5x5 is larger than the padded input 3x3")]),
    "unknown_rule": (
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack5x5\n",
        [("validate", 11, 16, "'factorize': should be 'stack3x3' or 'asymmetric'")]),
    "unknown_transform_field": (
        "layers:\n  - c: conv2d(8, 5, padding=2)\n" + TAIL + "transforms:\n  - factorize: stack3x3\n    batchnorm: true\n",
        [("validate", 12, 5, "unknown field 'batchnorm'")]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors(tmp_path, case):
    body, expected = ERRORS[case]
    assert error_of(tmp_path, body) == expected


def test_error_on_the_command_line(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text(HEAD + ERRORS["even_kernel"][0])
    proc = run_cli("check", f, "--format", "json")
    assert proc.returncode == 1
    (err,) = [json.loads(line)["error"] for line in proc.stderr.splitlines()]
    assert (err["stage"], err["line"], err["column"]) == ("transform", 6, 8)
    text = run_cli("check", f)
    assert text.stderr.splitlines()[1:] == ["  in layers[0].c", "    6 |   - c: conv2d(8, 4, padding=2)", "      |        ^"]
