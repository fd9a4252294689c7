"""The corpus of broken specs (tests/specs/broken/): each gives one exact message at one exact place.

Every message is asserted in full, as the first line `file:line:col: error: message` that
`archspec check` prints; line and column come from PyYAML's node marks (1-based).
"""
from __future__ import annotations

import json

import pytest

from conftest import run_cli

B = "tests/specs/broken"
KNOWN_OPS = ("adaptive_avgpool2d, adaptive_maxpool2d, avgpool2d, batchnorm2d, channel_shuffle, conv2d, dropout, elu, "
             "flatten, gelu, groupnorm, hardsigmoid, hardswish, hardtanh, identity, layernorm, layernorm2d, leaky_relu, "
             "linear, local_response_norm, maxpool2d, mish, parameter, permute, relu, relu6, reshape, scale, sigmoid, "
             "silu, softmax, stochastic_depth, tanh")

# file -> "line:col: error: message" of its first (or only) error; the file is the spec itself unless noted.
CASES = {
    # --- loading: YAML, files, paths -------------------------------------------------------------
    "invalid_yaml": "4:7: error: invalid YAML: did not find expected ',' or ']' "
                    "(while parsing a flow sequence that starts at line 3, column 8)",
    "not_mapping": "1:1: error: the top level of a spec must be a mapping",
    "duplicate_key": "10:3: error: duplicate key 'Stem' (first defined at line 6)",
    "absolute_use": "4:7: error: absolute path '/etc/archspec/basic.yaml' is not allowed; use a path relative to the spec",
    "escaping_use": f"4:7: error: '../../../specs/lib/basic.yaml' leaves the spec's root directory {B} (from any "
                    "folder, a stock file is stock:lib/basic.yaml)",
    "flow_comma": "7:22: error: cannot parse call 'conv2d(8': '(' was never closed "
                  "(inside a YAML flow list [a, b] commas split items: quote the call or use a block list)",
    "flow_comma_mapping": "7:12: error: the call 'conv2d(8' is cut at a comma: inside YAML braces {a: b} commas "
                          "separate entries; write 'conv: ...' in block style or quote the call",
    # --- validation: the document's fields (pydantic) ----------------------------------------------
    "unknown_field": "9:1: error: unknown field 'returns'",
    "missing_field": "1:1: error: missing required field 'input'",
    "field_type": "3:8: error: 'input': should be a valid list, got str '3x224x224'",
    "bad_version": "1:11: error: unsupported spec version: expected 'archspec: 1'",
    "aux_unknown_field": "11:5: error: missing required field 'loss_weight'",
    # --- validation: items, names, argument declarations -------------------------------------------
    "bad_module_name": "6:5: error: '1conv' is not a valid module name "
                       "(letters, digits and _, not starting with a digit, not a Python keyword); such a name may "
                       "name only an entry of an nn.Sequential whose entries are named",
    "named_in_sequential": "8:9: error: 'act': the entries of an nn.Sequential are all numbered or all named (the "
                           "keys of an OrderedDict); entry 1 (line 7) is not named",
    "entries_mixed": "7:9: error: 'block1-0': the entries of an nn.Sequential are all numbered or all named (the "
                     "keys of an OrderedDict); entry 2 (line 8) is not named",
    "entry_in_repeat": "9:13: error: 'block1-0': a named nn.Sequential entry cannot be in the body of a repeat:, "
                       "for: or if: (write each named entry out)",
    "entry_name_outside": "6:5: error: 'block1-0' is not a valid module name (letters, digits and _, not starting "
                          "with a digit, not a Python keyword); such a name may name only an entry of an "
                          "nn.Sequential whose entries are named",
    "entry_name_dot": "7:9: error: 'a.b': a module name cannot contain '.' (PyTorch's add_module refuses it: '.' "
                      "separates the parts of a module path)",
    "entry_name_empty": "7:9: error: a module name cannot be empty (PyTorch's add_module refuses '')",
    "entry_name_chars": "7:9: error: 'block 1' is not a valid nn.Sequential entry name (letters, digits, _ and -)",
    "repeat_same_name": "8:9: error: duplicate module name 'conv' in the model: a loop names its modules by a "
                        "template over its variable, e.g. 'conv{i}' with as: i",
    "concat_one_branch": "7:7: error: concat needs a list of at least two branches",
    "block_named_op": "6:3: error: block 'relu' has the name of a built-in op",
    "bad_default": "9:12: error: unknown name 'fast' in the default of 'eps' (arguments in scope: none)",
    # --- expansion: calls, arguments, blocks -------------------------------------------------------
    "unknown_op": f"7:5: error: unknown op or block 'swish' (known: {KNOWN_OPS})",
    "unknown_block": f"6:11: error: unknown op or block 'ConvBNReLU' (known: {KNOWN_OPS})",
    "wrong_arg_type": "6:11: error: argument 'stride' of conv2d must be an int or a pair of ints, got float 1.5; "
                      "convert it explicitly: int(...), round(...), ceil(...) or make_divisible(..., 8)",
    "block_arg_type": "12:11: error: argument 'out' of block ConvBN must be an int, got float 32.5; convert it "
                      "explicitly: int(...), round(...), ceil(...) or make_divisible(..., 8)",
    "missing_arg": "12:11: error: block ConvBN is missing required argument 'k'",
    "too_many_positional": "6:11: error: conv2d takes at most 7 positional arguments "
                           "(out_channels, kernel_size, stride, padding, dilation, groups, bias), got 8",
    "unknown_keyword": "6:11: error: conv2d has no argument 'pad' "
                       "(expected out_channels, kernel_size, stride, padding, dilation, groups, bias)",
    "unknown_name": "9:15: error: unknown name 'width' in conv2d (arguments in scope: in_channels, in_h, in_w, out)",
    "divide_by_zero": "8:11: error: division by zero in '8 // groups'",
    "stateful_unnamed": "6:5: error: 'conv2d' has parameters or state and needs a name: write '- name: conv2d(8, 3)'",
    "block_recursion": "14:16: error: block 'Outer' uses itself: Outer -> Inner -> Outer",
    "named_functional": "7:21: error: 'scale' is a functional op only: write it without a name in a block's layers, "
                        "not as a named module or an nn.Sequential entry",
    "duplicate_module": "7:5: error: duplicate module name 'conv' in the model (first at line 6)",
    "if_not_bool": "10:9: error: if: of 'bn' must be a boolean, got int 1 (write a comparison: n != 0)",
    "aux_missing": "12:11: error: aux head 'aux1' reads from 'conv3', which is not a top-level layer",
    "aux_after_missing": "12:12: error: aux head 'aux1' is registered after 'head', which is not a top-level layer",
    "edit_missing": "5:14: error: edit: no top-level layer named 'conv9'",
    # --- analysis: shapes ----------------------------------------------------------------------------
    "concat_spatial": "10:9: error: concat in inception4a: branch1 gives 28x28, branch3 gives 26x26",
    "add_channels": "10:9: error: add in layer1: conv1 gives 16 channels, branch 2 (identity) gives 8",
    "kernel_too_large": "10:12: error: conv2: conv2d kernel 5x5 is larger than the padded input 1x1",
    "linear_no_flatten": "8:9: error: fc: linear needs a flat or channels-last input, got the feature map 8 x 1 x 1; "
                         "add flatten before it (or permute((0, 2, 3, 1)) before it for a linear over channels)",
    "pool_padding": "6:11: error: pool: maxpool2d padding 2 must be at most half the kernel size 3",
    "groups_mismatch": "6:11: error: conv: conv2d groups=2 must divide in_channels 3 and out_channels 8",
    "dropout_range": "7:14: error: dropout: dropout probability must be between 0 and 1, got 1.5",
    # --- expectations ---------------------------------------------------------------------------------
    "wrong_expect": "10:11: error: expect.params is 72,354 but the network has 72,234",
}

# Errors found in another file than the one checked: (file of the error, its message).
ELSEWHERE = {
    "use_cycle": (f"{B}/cycle/b.yaml", f"3:7: error: use cycle: {B}/cycle/a.yaml -> {B}/cycle/b.yaml -> {B}/cycle/a.yaml"),
    "extends_cycle": (f"{B}/extends_cycle_parent.yaml",
                      f"2:10: error: extends cycle: {B}/extends_cycle.yaml -> {B}/extends_cycle_parent.yaml -> "
                      f"{B}/extends_cycle.yaml"),
}

STAGES = {"invalid_yaml": "load", "duplicate_key": "load", "unknown_field": "validate", "unknown_op": "expand",
          "concat_spatial": "analyse", "wrong_expect": "expect"}


@pytest.fixture(autouse=True)
def _at_root(monkeypatch, root):
    monkeypatch.chdir(root)  # messages name files as given, relative to the working directory


def errors_of(name: str) -> list:
    from archspec.errors import ArchspecError, flatten
    from archspec.pipeline import compile_spec

    with pytest.raises(ArchspecError) as info:
        compile_spec(f"{B}/{name}.yaml")
    return flatten(info.value)


def test_corpus_is_large_and_every_file_is_covered(root):
    files = {p.stem for p in (root / B).glob("*.yaml")}
    covered = set(CASES) | set(ELSEWHERE) | {"extends_cycle_parent", "several_errors", "several_expand_errors"}
    assert files == covered
    assert len(CASES) + len(ELSEWHERE) >= 20


@pytest.mark.parametrize("name", sorted(CASES))
def test_message(name):
    first = errors_of(name)[0]
    assert first.format(with_source=False) == f"{B}/{name}.yaml:{CASES[name]}"


@pytest.mark.parametrize("name", sorted(ELSEWHERE))
def test_message_in_another_file(name):
    file, message = ELSEWHERE[name]
    assert errors_of(name)[0].format(with_source=False) == f"{file}:{message}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage(name):
    assert errors_of(name)[0].stage == STAGES[name]


def test_concat_error_names_block_branch_and_line():
    (err,) = errors_of("concat_spatial")
    assert (err.loc.line, err.loc.col, err.loc.path) == (10, 9, "blocks.Mixed.layers[0]")
    assert err.node == "inception4a/concat"


@pytest.mark.parametrize("name", ["unknown_op", "concat_spatial", "use_cycle", "duplicate_key", "invalid_yaml"])
def test_cli_exit_1_and_first_line(name):
    proc = run_cli("check", f"{B}/{name}.yaml")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    file, message = ELSEWHERE.get(name, (f"{B}/{name}.yaml", CASES.get(name)))
    assert proc.stderr.splitlines()[0] == f"{file}:{message}"


def test_cli_shows_yaml_path_and_source_line():
    proc = run_cli("check", f"{B}/concat_spatial.yaml")
    assert proc.stderr.splitlines() == [
        f"{B}/concat_spatial.yaml:10:9: error: concat in inception4a: branch1 gives 28x28, branch3 gives 26x26",
        "  in blocks.Mixed.layers[0]",
        "   10 |       - concat:",
        "      |         ^",
    ]


def test_cli_json_errors():
    proc = run_cli("check", f"{B}/kernel_too_large.yaml", "--format", "json")
    assert proc.returncode == 1 and json.loads(proc.stdout) == []
    assert [json.loads(line) for line in proc.stderr.splitlines()] == [{"error": {
        "stage": "analyse", "message": "conv2: conv2d kernel 5x5 is larger than the padded input 1x1",
        "file": f"{B}/kernel_too_large.yaml", "line": 10, "column": 12, "yaml_path": "layers[4].conv2",
        "node": "conv2"}}]


# --- several errors at once ----------------------------------------------------------------------

def test_validation_errors_are_reported_together():
    from archspec.errors import ErrorList
    from archspec.pipeline import compile_spec

    with pytest.raises(ErrorList) as info:
        compile_spec(f"{B}/several_errors.yaml")
    assert [e.format(with_source=False) for e in info.value.errors] == [
        f"{B}/several_errors.yaml:8:25: error: argument 'k' has unknown type 'sise' "
        "(expected one of int, float, bool, size, number, op)",
        f"{B}/several_errors.yaml:13:5: error: 'class' is not a valid module name "
        "(letters, digits and _, not starting with a digit, not a Python keyword); such a name may name only "
        "an entry of an nn.Sequential whose entries are named",
        f"{B}/several_errors.yaml:16:1: error: unknown field 'output_stride'",
    ]


def test_expansion_errors_are_reported_together():
    msgs = [e.format(with_source=False) for e in errors_of("several_expand_errors")]
    assert msgs == [
        f"{B}/several_expand_errors.yaml:7:12: error: conv2d has no argument 'pad' "
        "(expected out_channels, kernel_size, stride, padding, dilation, groups, bias)",
        f"{B}/several_expand_errors.yaml:8:10: error: unknown op or block 'gelus' (known: {KNOWN_OPS}); "
        "did you mean 'gelu'?",
        f"{B}/several_expand_errors.yaml:9:12: error: conv2d is missing required argument 'kernel_size'",
    ]


def test_pydantic_errors_are_reported_together():
    msgs = [e.format(with_source=False) for e in errors_of("aux_unknown_field")]
    assert msgs == [
        f"{B}/aux_unknown_field.yaml:11:5: error: missing required field 'loss_weight'",
        f"{B}/aux_unknown_field.yaml:12:5: error: unknown field 'weight'",
        f"{B}/aux_unknown_field.yaml:15:3: error: unknown field 'parameters'",
    ]


def test_flow_list_pitfall_reports_both_halves():
    msgs = [e.format(with_source=False) for e in errors_of("flow_comma")]
    assert msgs[1] == (f"{B}/flow_comma.yaml:7:27: error: cannot parse call '3)': unmatched ')' "
                       "(inside a YAML flow list [a, b] commas split items: quote the call or use a block list)")


def test_cli_prints_every_error():
    proc = run_cli("check", f"{B}/several_errors.yaml")
    assert proc.returncode == 1
    heads = [line for line in proc.stderr.splitlines() if ": error: " in line]
    assert [h.split(": error: ")[0] for h in heads] == [f"{B}/several_errors.yaml:{p}" for p in ("8:25", "13:5", "16:1")]


def test_unknown_op_suggests_a_close_name(tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text("archspec: 1\nname: typo\ninput: [3, 8, 8]\nlayers:\n  - flatten\n  - fc: lineer(10)\n")
    from archspec.errors import ArchspecError
    from archspec.pipeline import compile_spec

    with pytest.raises(ArchspecError) as info:
        compile_spec(str(spec))
    assert info.value.message.endswith("; did you mean 'linear'?")
    assert (info.value.loc.line, info.value.loc.col) == (6, 9)
